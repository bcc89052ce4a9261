"""Exported artifacts read back: which kind a path is, its metadata, and a `predict(x)` for each kind.

Every artifact carries a small metadata document (`kerasrnn.json`) that names its task and the run's
config, so `kerasrnn predict ARTIFACT ...` knows how to encode inputs and decode outputs. A SavedModel
directory holds it inside; a `.keras`, `.tflite` or `.onnx` file has it beside it, as `FILE.json`.
kerasrnn.export.writers writes them.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np

from kerasrnn import runs
from kerasrnn.backend import native_stderr_silenced
from kerasrnn.errors import RunError, UserError, require

METADATA_FILE = "kerasrnn.json"
ONNX_EXTRA = 'pip install "kerasrnn[onnx]"'
SAVED_MODEL_MARKER = "saved_model.pb"


def metadata_path(artifact: Path) -> Path:
    artifact = Path(artifact)
    return artifact / METADATA_FILE if artifact.is_dir() else artifact.with_name(artifact.name + ".json")


def artifact_format(path: Path) -> str | None:
    """'run', 'savedmodel', 'tflite', 'keras' or 'onnx' for a path predict may be given; None if none of them."""
    path = Path(path)
    if path.is_dir() and (path / runs.CONFIG_FILE).exists():
        return "run"
    if path.is_dir() and (path / SAVED_MODEL_MARKER).exists():
        return "savedmodel"
    if path.is_file() and path.suffix == ".tflite":
        return "tflite"
    if path.is_file() and path.suffix == ".keras":
        return "keras"
    if path.is_file() and path.suffix == ".onnx":
        return "onnx"
    return None


def read_metadata(artifact: Path) -> dict:
    path = metadata_path(artifact)
    if not path.exists():
        raise UserError(f"{artifact} has no {path.name} beside it: copy it along with the artifact (kerasrnn export writes both)")
    metadata = runs.read_json(path, "the artifact's metadata")
    require("task" in metadata and "config" in metadata, f"the artifact's metadata names no task: {path}")
    return metadata


def loading_failure(path: Path, kind: str, error: Exception) -> Exception:
    """Whose fault a failed load is: a file that does not parse is the user's (exit 2), anything else the environment's.

    The loaders report unreadable or damaged files as OSError, ValueError or a TensorFlow OpError; an op the installed
    TensorFlow does not know (NotFoundError "Op type not registered") and every other exception (an ImportError of a
    half-installed library, a RuntimeError, MemoryError) mean the installation cannot load a file that may be fine.
    """
    message = str(error)
    environment = "not registered" in message or not isinstance(error, OSError | ValueError | op_error_type())
    if environment:
        first_line = message.strip().splitlines()[0] if message.strip() else ""
        return RunError(f"{path} could not be loaded as {kind} by this installation ({type(error).__name__}: {first_line[:200]})")
    return UserError(f"{path} could not be loaded as {kind} ({type(error).__name__}): it is corrupt")


def op_error_type() -> type:
    """TensorFlow's error base class, or a class nothing raises where TensorFlow is not imported."""
    import sys

    tf = sys.modules.get("tensorflow")
    return tf.errors.OpError if tf is not None else type("NoOpError", (Exception,), {})


class SavedModelRunner:
    """A SavedModel's `serve` endpoint behind the `predict(x)` the tasks call."""

    def __init__(self, path: Path):
        import tensorflow as tf

        try:
            with native_stderr_silenced():
                self.loaded = tf.saved_model.load(str(path))  # keep it: the endpoint needs its variables alive
            self.endpoint = self.loaded.serve
        except Exception as error:
            raise loading_failure(path, "a SavedModel", error) from None

    def predict(self, x, verbose=0, batch_size=None):
        return np.asarray(self.endpoint(np.asarray(x, dtype=np.float32)))


class LiteRTRunner:
    """A LiteRT flatbuffer behind `predict(x)`: streams each sequence step by step, pads it to a fixed window,
    or runs fixed inputs one by one."""

    def __init__(self, path: Path, interface: dict):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise UserError(
                "running a .tflite artifact needs LiteRT: pip install ai-edge-litert (no Windows build exists)"
            ) from None
        try:
            with native_stderr_silenced():  # the interpreter announces its CPU delegate on fd 2
                self.interpreter = Interpreter(model_path=str(path))
                self.interpreter.allocate_tensors()
                self.runner = self.interpreter.get_signature_runner(interface["signature"])
        except Exception as error:
            raise loading_failure(path, "a LiteRT model", error) from None
        self.interface = interface

    def predict(self, x, verbose=0, batch_size=None):
        x = np.asarray(x, dtype=np.float32)
        if self.interface["mode"] == "fixed":
            return np.concatenate([self.runner(x=sample[None])["y"] for sample in x])
        if self.interface["mode"] == "window":
            return np.concatenate([self.windowed(sequence) for sequence in x])
        return np.concatenate([self.stream(sequence[None]) for sequence in x])

    def windowed(self, sequence: np.ndarray) -> np.ndarray:
        """One NaN-padded sequence through a fixed window of steps (its model masks steps of NaN)."""
        window, steps = self.interface["window"], sequence.shape[0]
        present = np.flatnonzero(~np.all(np.isnan(sequence), axis=-1))
        used = int(present[-1]) + 1 if present.size else 0
        require(used <= window, f"a sequence of {used} steps is longer than this LiteRT artifact's window of {window} "
                                f"steps: export the run again with --window {used} or more")  # fmt: skip
        padded = np.full((1, window, *sequence.shape[1:]), np.nan, dtype=np.float32)
        padded[0, : min(steps, window)] = sequence[:window]
        y = self.runner(x=padded)["y"]
        if not self.interface["returns_sequences"]:
            return y
        if steps <= window:
            return y[:, :steps]
        return np.concatenate([y, np.zeros((1, steps - window, *y.shape[2:]), y.dtype)], axis=1)  # padding's steps

    def stream(self, sequence: np.ndarray) -> np.ndarray:
        state = np.zeros((1, self.interface["state_size"]), dtype=np.float32)
        outputs = []
        for step in range(sequence.shape[1]):
            result = self.runner(x=sequence[:, step], state=state)
            state = result["state"]
            outputs.append(result["y"])
        return np.stack(outputs, axis=1) if self.interface["returns_sequences"] else outputs[-1]


def require_packages(packages: tuple[str, ...], what: str) -> None:
    """One line naming the `onnx` extra when one of `packages` is not installed."""
    missing = [name for name in packages if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"{what} needs {', '.join(missing)}: {ONNX_EXTRA}")


class OnnxRunner:
    """An ONNX file behind `predict(x)`, run by onnxruntime on the CPU (the whole sequence in one call)."""

    def __init__(self, path: Path):
        require_packages(("onnxruntime",), "running an .onnx artifact")
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings about unused initialisers are not the user's
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime's own exception types: a file that does not parse
            raise loading_failure(path, "an ONNX model", ValueError(str(error))) from None
        self.input = self.session.get_inputs()[0].name

    def predict(self, x, verbose=0, batch_size=None):
        return self.session.run(None, {self.input: np.asarray(x, dtype=np.float32)})[0]


def load_artifact(path: Path, metadata: dict | None = None):
    """Something with `predict(x)` for an exported artifact."""
    path = Path(path)
    fmt = artifact_format(path)
    metadata = metadata or read_metadata(path)
    if fmt == "savedmodel":
        return SavedModelRunner(path)
    if fmt == "tflite":
        return LiteRTRunner(path, metadata["interface"])
    if fmt == "keras":
        return runs.load_model_file(path)
    if fmt == "onnx":
        return OnnxRunner(path)
    raise UserError(f"{path} is not a run directory, a SavedModel directory, a .keras, .tflite or .onnx file")


def measure_speed(artifact, x: np.ndarray, repeats: int = 20) -> dict:
    """One-sample latency (median, ms) and batch throughput (samples/s) of `artifact.predict`."""
    artifact.predict(x[:1], verbose=0, batch_size=len(x))  # warm up: the first call traces or allocates
    latencies = []
    for _ in range(repeats):
        started = time.perf_counter()
        artifact.predict(x[:1], verbose=0)
        latencies.append(time.perf_counter() - started)
    started = time.perf_counter()
    artifact.predict(x, verbose=0, batch_size=len(x))  # one batch: Keras would split it into 32s
    batch_seconds = time.perf_counter() - started
    return {"latency_ms": round(1000 * float(np.median(latencies)), 3), "samples_per_second": round(len(x) / batch_seconds, 1)}
