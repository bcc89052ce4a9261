"""Export a run as .keras, SavedModel or LiteRT (TFLite), each checked against Keras.

Every artifact carries a small metadata document beside it or inside it
(kerasrnn.export.artifacts reads it and the artifact back).

Exports always run on TensorFlow: the `.keras` file is backend-neutral, so a
run trained on JAX or PyTorch reloads under TensorFlow and exports the same way.

LiteRT and sequences of any length. A converted recurrent layer with a
dynamic time dimension returns a wrong shape when resized (silently), so the
sequence tasks (adder, recall) export a *streaming* model instead: one time
step per call, the recurrent state passed in and handed back explicitly
(inputs `x` (1, features) and `state` (1, S); outputs `y` and `state`). Any
length streams through one artifact; the cost is one interpreter call per
step. A bidirectional layer reads the sequence backwards from its end, so it
cannot stream: those models export to SavedModel and .keras only. MNIST's
input is fixed at (1, 28, 28) and is converted whole.

A model of a person's own sequences that cannot stream (bidirectional, the
convolution branch, a folded series) is converted whole at a fixed *window* of
steps instead: its first layer masks NaN padding, so a shorter sequence padded
with NaN to the window answers as it does alone (no resize: the shape is
fixed). The window is twice the longest training sequence, rounded up to a
power of two (at least 64), or `window=`; a longer sequence is refused.

ONNX. Keras' own `model.export(path, format="onnx")`, on TensorFlow whichever backend trained the run: traced
on torch, Keras' ONNX export gave outputs 0.007-0.02 away from Keras, and on JAX it failed (docs/export.md).
The graph keeps batch and length free; tf2onnx writes Keras' recurrent layers as ONNX's own LSTM, GRU and RNN
operators, which take any length in one call, so ONNX needs no streaming variant. One whose check fails is
not kept: programs outside the toolkit read it, and would not see the metadata's warning.

Each export checks itself: it runs the artifact and the Keras model on the
same random inputs (several lengths for sequence tasks) and records the
largest absolute difference in the metadata; above 1e-5 it refuses.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from kerasrnn import runs
from kerasrnn.backend import native_stderr_silenced
from kerasrnn.errors import RunError, UserError, require
from kerasrnn.export.artifacts import (
    METADATA_FILE,
    SAVED_MODEL_MARKER,
    OnnxRunner,
    load_artifact,
    metadata_path,
    require_packages,
)

FORMATS = ("keras", "savedmodel", "tflite", "onnx")
FILE_SUFFIXES = (".keras", ".tflite", ".onnx")  # the formats that are one file
PARITY_TOLERANCE = 1e-5
PARITY_LENGTHS = (1, 5, 21, 65)  # time steps tried for sequence tasks
SMALLEST_WINDOW = 64  # a windowed LiteRT artifact's steps at least (docstring)


def default_artifact_path(run_dir: Path, fmt: str) -> Path:
    names = {"keras": "model.keras", "savedmodel": "savedmodel", "tflite": "model.tflite", "onnx": "model.onnx"}
    return runs.output_dir(run_dir, "export") / names[fmt]


def recurrent_layers_and_head(model):
    """(the per-step layers before the recurrent ones (a file task's mask and standardisation), recurrent layers
    in order, the per-step head layers in order) of a toolkit model; refuses what cannot stream."""
    import keras

    front, recurrent, head = [], [], []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.layers.Bidirectional):
            raise UserError(
                "a bidirectional model reads each sequence backwards from its end, so it cannot stream one step "
                "at a time through LiteRT: export it as savedmodel or keras instead"
            )
        if isinstance(layer, keras.layers.Conv1D):
            raise UserError(
                f"this model's convolutions (layer {layer.name}) read the steps around each step, so it cannot stream one "
                "step at a time through LiteRT: export it as savedmodel or onnx instead (or fit it with -o conv_filters=[])"
            )
        if isinstance(layer, keras.layers.GlobalAveragePooling1D | keras.layers.Average):
            raise UserError(
                f"this model's answer reads all its steps at once (layer {layer.name}), so it cannot stream one step "
                "at a time through LiteRT: export it as savedmodel or onnx instead"
            )
        if isinstance(layer, keras.layers.RNN):
            require(not head, f"layer {layer.name} follows the head: this model is not a toolkit sequence model")
            recurrent.append(layer)
        elif not recurrent:
            if type(layer).__name__ == "FoldSteps":
                raise UserError(
                    f"this model reads its series as rows of {layer.width} values a step, so it cannot stream one value "
                    "at a time through LiteRT: export it as savedmodel or onnx instead (or fit it with -o fold=1)"
                )
            front.append(layer)  # acts on each step alone (a file task's SequenceInput)
        else:
            # Dense layers (a readout, the output) act on one step at a time, wrapped or not.
            head.append(layer.layer if isinstance(layer, keras.layers.TimeDistributed) else layer)
    require(recurrent and head, "the model has no recurrent layer and head to stream")
    return front, recurrent, head


def state_sizes(layer) -> list[int]:
    sizes = layer.cell.state_size
    return list(sizes) if isinstance(sizes, (list, tuple)) else [sizes]


def streaming_step(model):
    """(step function, features, total state size): one time step of `model` with explicit state."""
    import tensorflow as tf

    front, recurrent, head = recurrent_layers_and_head(model)
    sizes = [size for layer in recurrent for size in state_sizes(layer)]

    def step(x, state):
        parts = tf.split(state, sizes, axis=-1)
        features, new_states, start = x, [], 0
        for layer in front:
            features = layer(features[:, None, :])[:, 0, :]  # one step as a sequence of one: the layer's own shapes
        for layer in recurrent:
            count = len(state_sizes(layer))
            features, states = layer.cell(features, list(parts[start : start + count]), training=False)
            new_states.extend(states if isinstance(states, (list, tuple)) else [states])
            start += count
        for layer in head:
            features = layer(features)
        return {"y": features, "state": tf.concat(new_states, axis=-1)}

    return step, int(model.input_shape[-1]), int(sum(sizes))


# ---- writing artifacts ---------------------------------------------------------
def export_run(run_dir: Path, fmt: str, out: Path | None = None, log=print, window: int | None = None) -> dict:
    """Write `run_dir`'s model as `fmt` to `out` (default RUN/export/...), check parity; return the metadata.
    `window`: a LiteRT artifact's fixed steps, for a sequences model that cannot stream (docstring)."""
    require(fmt in FORMATS, f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    require(window is None or fmt == "tflite", "--window sets a LiteRT artifact's steps: use it with --format tflite")
    require(window is None or window >= 1, f"--window must be 1 or more steps, got {window}")
    run_dir = Path(run_dir)
    out = Path(out) if out else default_artifact_path(run_dir, fmt)
    require(not (fmt == "keras" and out.suffix != ".keras"), f"a keras export is a .keras file, got {out}")
    require(not (fmt == "tflite" and out.suffix != ".tflite"), f"a tflite export is a .tflite file, got {out}")
    require(not (fmt == "onnx" and out.suffix != ".onnx"), f"an onnx export is a .onnx file, got {out}")
    require(not (fmt == "savedmodel" and out.suffix in FILE_SUFFIXES), f"a savedmodel export is a directory, got {out}")
    require(
        not out.is_dir() or (out / SAVED_MODEL_MARKER).exists(),
        f"{out} is a directory that is not a SavedModel export: choose another --out (nothing there is replaced)",
    )
    config = runs.read_config(run_dir)
    model = runs.load_model(run_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "artifact": "kerasrnn",
        "artifact_path": str(out),
        "format": fmt,
        "task": config["task"],
        "config": config,
        "source_run": str(run_dir),
    }
    if fmt == "tflite":
        metadata["interface"] = write_tflite(model, out, lite_window(model, config, window))
    else:
        metadata["interface"] = {"keras": write_keras, "savedmodel": write_saved_model, "onnx": write_onnx}[fmt](model, out)
    log(f"kerasrnn: wrote {out}; checking it against the Keras model")
    try:
        metadata["parity"] = check_parity(model, config, load_artifact(out, metadata), metadata["interface"].get("window"))
    except BaseException:
        remove_artifact(out)  # an artifact that could not be checked is not left behind without its metadata
        raise
    metadata["size_bytes"] = artifact_size(out)
    runs.write_json_atomic(metadata_path(out), metadata)
    if metadata["parity"]["max_abs_difference"] > PARITY_TOLERANCE:
        if fmt == "onnx":  # read by programs outside the toolkit, which would not see the metadata's warning
            remove_artifact(out)
            raise RunError(
                f"the exported onnx model differs from Keras by {metadata['parity']['max_abs_difference']:.3g} "
                f"(> {PARITY_TOLERANCE}): not kept"
            )
        raise RunError(
            f"the exported {fmt} model differs from Keras by {metadata['parity']['max_abs_difference']:.3g} "
            f"(> {PARITY_TOLERANCE}); the artifact is in {out}, but do not trust it"
        )
    return metadata


def remove_artifact(out: Path) -> None:
    remove_path(out, ignore_errors=True)  # during another error: that one is what the user needs to see
    metadata_path(out).unlink(missing_ok=True)


def remove_path(path: Path, ignore_errors: bool = False) -> None:
    """A file or a directory gone (nothing to do where there is none)."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=ignore_errors)
    else:
        path.unlink(missing_ok=True)


def write_keras(model, out: Path) -> dict:
    runs.save_model_atomic(model, out)
    return {"input_shape": list(model.input_shape)}


def replace_directory(build, out: Path) -> None:
    """Build a directory next to `out`, then swap it in: a failed export never leaves half an artifact."""
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        build(staging)
        remove_path(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_saved_model(model, out: Path) -> dict:
    """A SavedModel with a `serve` endpoint; batch and time dimensions left free."""
    import keras
    import tensorflow as tf

    def build(directory: Path):
        archive = keras.export.ExportArchive()
        archive.track(model)
        spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="inputs")
        archive.add_endpoint("serve", lambda inputs: model(inputs, training=False), input_signature=[spec])
        with native_stderr_silenced():
            archive.write_out(str(directory), verbose=False)

    replace_directory(build, out)
    return {"endpoint": "serve", "input_shape": [None, *model.input_shape[1:]]}


def masks_nan_padding(model) -> bool:
    """Whether the model's first layer masks steps of NaN (a sequences model's SequenceInput)."""
    return any(type(layer).__name__ == "SequenceInput" for layer in model.layers)


def lite_window(model, config: dict, window: int | None) -> int | None:
    """The fixed steps of a windowed LiteRT artifact, or None where the model streams (or has a fixed input)."""
    if model.input_shape[1] is not None:
        require(window is None, "this model's input has a fixed length: --window does not apply")
        return None
    if window is None:
        try:
            recurrent_layers_and_head(model)
            return None  # it streams: any length through one artifact
        except UserError:
            if not masks_nan_padding(model):
                raise
    require(masks_nan_padding(model), "--window needs a model that masks NaN padding (a sequences run's)")
    if window is not None:
        return window
    longest = config.get("longest") or SMALLEST_WINDOW // 2  # runs fitted before the config held it
    return max(SMALLEST_WINDOW, 1 << (2 * longest - 1).bit_length())


def write_tflite(model, out: Path, window: int | None = None) -> dict:
    """A LiteRT flatbuffer: streaming (one step, explicit state) for sequence inputs, a fixed `window` of
    NaN-padded steps for a sequences model that cannot stream, else the model's fixed input."""
    import keras
    import tensorflow as tf

    streaming = model.input_shape[1] is None and window is None
    archive = keras.export.ExportArchive()
    archive.track(model)
    if window is not None:
        shape = (1, window, *model.input_shape[2:])
        archive.add_endpoint("serve", lambda x: {"y": model(x, training=False)},
                             input_signature=[tf.TensorSpec(shape, tf.float32, name="x")])  # fmt: skip
        interface = {"mode": "window", "signature": "serve", "window": window, "input_shape": list(shape),
                     "returns_sequences": len(model.output_shape) == 3}  # fmt: skip
    elif streaming:
        step, features, state_size = streaming_step(model)
        signature = [tf.TensorSpec((1, features), tf.float32, name="x"), tf.TensorSpec((1, state_size), tf.float32, name="state")]
        archive.add_endpoint("step", step, input_signature=signature)
        interface = {"mode": "streaming", "signature": "step", "features": features, "state_size": state_size,
                     "returns_sequences": len(model.output_shape) == 3}  # fmt: skip
    else:
        archive.add_endpoint("serve", lambda x: {"y": model(x, training=False)},
                             input_signature=[tf.TensorSpec((1, *model.input_shape[1:]), tf.float32, name="x")])  # fmt: skip
        interface = {"mode": "fixed", "signature": "serve", "input_shape": [1, *model.input_shape[1:]]}
    with tempfile.TemporaryDirectory() as directory, native_stderr_silenced():
        archive.write_out(directory, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(directory, signature_keys=[interface["signature"]])
        flatbuffer = converter.convert()
    with runs.atomic_path(out) as temporary:
        temporary.write_bytes(flatbuffer)
    return interface


def write_onnx(model, out: Path) -> dict:
    """`model` as ONNX by Keras' own `model.export(format="onnx")`, batch and time dimensions free."""
    require_packages(("tf2onnx", "onnx"), "an ONNX export")  # what Keras' ONNX export imports
    steps = model.input_shape[1] or 2
    model.predict(np.zeros((1, steps, *model.input_shape[2:]), dtype=np.float32), verbose=0)  # Keras: "never called"
    quiet = logging.getLogger("tf2onnx")  # it logs every rewrite, and Keras prints the path: not the user's business
    level, quiet.level = quiet.level, logging.ERROR
    try:
        with runs.atomic_path(out) as temporary, native_stderr_silenced(), contextlib.redirect_stdout(io.StringIO()):
            model.export(str(temporary), format="onnx", verbose=False)
    finally:
        quiet.setLevel(level)
    session = OnnxRunner(out).session
    return {
        "input": session.get_inputs()[0].name,
        "output": session.get_outputs()[0].name,
        "input_shape": [None, *model.input_shape[1:]],
        "opset": onnx_opset(out),
    }


def onnx_opset(path: Path) -> int:
    import onnx

    versions = [entry.version for entry in onnx.load(str(path)).opset_import if entry.domain in ("", "ai.onnx")]
    return int(max(versions))


def artifact_size(path: Path) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(file.stat().st_size for file in path.rglob("*") if file.is_file() and file.name != METADATA_FILE)
    return path.stat().st_size


def parity_inputs(model, config: dict, samples: int = 4, window: int | None = None) -> list[np.ndarray]:
    """Random inputs like the task's own (bits, one-hot digits, pixels), at several lengths where time is free
    (those that fit a `window`, and the window's own)."""
    from kerasrnn.tasks import task_of

    task, rng = task_of(config), np.random.default_rng(config["seed"])
    shape = model.input_shape[1:]
    lengths = PARITY_LENGTHS if shape[0] is None else (shape[0],)
    if window is not None:
        lengths = sorted({length for length in lengths if length < window} | {window})
    return [task.sample_inputs(rng, samples, (length, *shape[1:])) for length in lengths]


def check_parity(model, config: dict, artifact, window: int | None = None) -> dict:
    """The largest |artifact - Keras| over random inputs at each length."""
    differences = {}
    for x in parity_inputs(model, config, window=window):
        expected = model.predict(x, verbose=0)
        differences[str(x.shape[1])] = float(np.max(np.abs(artifact.predict(x, verbose=0) - expected)))
    return {"max_abs_difference": max(differences.values()), "by_length": differences}
