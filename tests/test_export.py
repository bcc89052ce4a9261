"""Export: every task and format gives the answers Keras gives, at several lengths; bad artifacts are refused."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from kerasrnn import runs
from kerasrnn.errors import RunError, UserError
from kerasrnn.export import artifacts, writers
from kerasrnn.serving import prediction
from kerasrnn.tasks import get_task

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="exports run on TensorFlow")


def untrained_run(directory, task_name: str, **overrides):
    """A run directory holding a freshly initialised (seeded) model: parity needs weights, not learning."""
    task = get_task(task_name)
    config = task.make_config(overrides)
    keras.utils.set_random_seed(config["seed"])
    directory.mkdir(parents=True)
    runs.write_json_atomic(directory / runs.CONFIG_FILE, config)
    runs.save_model_atomic(task.build_model(config), directory / runs.MODEL_FILE)
    return directory


MODELS = {
    "adder-lstm-2-layers": ("adder", {"cell": "lstm", "layers": 2}),
    "adder-gru": ("adder", {"cell": "gru", "units": 6}),
    "recall-rnn": ("recall", {"cell": "rnn", "units": 5}),
    "recall-lstm-readout": ("recall", {"cell": "lstm", "units": 2, "readout_units": 8}),
    "recall-lstm-2-layers": ("recall", {"cell": "lstm", "layers": 2}),
    "mnist-gru": ("mnist", {"cell": "gru", "units": 16}),
    "mnist-bidirectional-lstm": ("mnist", {"cell": "lstm", "units": 8, "bidirectional": True}),
}


# The default suite covers each task, each format and stacking; every other pair is `slow`.
DEFAULT_CASES = {
    ("adder-lstm-2-layers", "savedmodel"), ("adder-lstm-2-layers", "tflite"), ("adder-gru", "keras"),
    ("recall-rnn", "tflite"), ("recall-lstm-readout", "tflite"), ("mnist-bidirectional-lstm", "tflite"), ("mnist-gru", "savedmodel"),
}  # fmt: skip
CASES = [
    pytest.param(name, fmt, id=f"{name}-{fmt}", marks=() if (name, fmt) in DEFAULT_CASES else pytest.mark.slow)
    for name in MODELS
    for fmt in ("savedmodel", "tflite", "keras")
]


@pytest.mark.parametrize("name, fmt", CASES)
def test_artifact_matches_keras(name, fmt, tmp_path):
    task_name, overrides = MODELS[name]
    run_dir = untrained_run(tmp_path / name, task_name, **overrides)
    metadata = writers.export_run(run_dir, fmt, log=lambda *_: None)
    parity = metadata["parity"]
    assert parity["max_abs_difference"] <= writers.PARITY_TOLERANCE
    expected_lengths = {"28"} if task_name == "mnist" else {str(n) for n in writers.PARITY_LENGTHS}
    assert set(parity["by_length"]) == expected_lengths

    # Independently of the export's own check: the artifact, reloaded from disk, on fresh inputs.
    artifact_path = writers.default_artifact_path(run_dir, fmt)
    assert json.loads(artifacts.metadata_path(artifact_path).read_text())["task"] == task_name
    task, _, artifact = prediction.load_predictor(artifact_path)
    model = runs.load_model(run_dir)
    for length in (28,) if task_name == "mnist" else (3, 12):
        x = task.sample_inputs(np.random.default_rng(length), 3, (length, model.input_shape[-1]))
        np.testing.assert_allclose(artifact.predict(x), model.predict(x, verbose=0), atol=writers.PARITY_TOLERANCE)


def test_saved_model_serves_any_length_without_the_toolkit(tmp_path):
    run_dir = untrained_run(tmp_path / "run", "adder", units=4)
    artifact = writers.export_run(run_dir, "savedmodel", log=lambda *_: None)["artifact_path"]
    model = runs.load_model(run_dir)
    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        "served = tf.saved_model.load(sys.argv[1])\n"
        "for n in (5, 21, 65):\n"
        "    x = np.load(f'{sys.argv[2]}/x{n}.npy')\n"
        "    np.save(f'{sys.argv[2]}/y{n}.npy', served.serve(x).numpy())\n"
        "assert 'kerasrnn' not in sys.modules\n"
    )
    for n in (5, 21, 65):
        np.save(tmp_path / f"x{n}.npy", get_task("adder").sample_inputs(np.random.default_rng(n), 2, (n, 2)))
    done = subprocess.run([sys.executable, "-c", script, artifact, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for n in (5, 21, 65):
        served = np.load(tmp_path / f"y{n}.npy")
        assert served.shape == (2, n, 1)
        np.testing.assert_allclose(served, model.predict(np.load(tmp_path / f"x{n}.npy"), verbose=0), atol=1e-6)


def test_bidirectional_sequence_model_cannot_stream(tmp_path):
    run_dir = untrained_run(tmp_path / "run", "recall", bidirectional=True)
    with pytest.raises(UserError, match="bidirectional.*savedmodel"):
        writers.export_run(run_dir, "tflite", log=lambda *_: None)
    assert not writers.default_artifact_path(run_dir, "tflite").exists()


def test_streaming_tflite_carries_state_across_steps(tmp_path):
    run_dir = untrained_run(tmp_path / "run", "adder", cell="lstm", units=3, layers=2)
    metadata = writers.export_run(run_dir, "tflite", log=lambda *_: None)
    assert metadata["interface"]["mode"] == "streaming"
    assert metadata["interface"]["state_size"] == 2 * 2 * 3  # h and c for each of two layers


def test_predict_through_artifacts_gives_the_runs_answer(tmp_path, cli_here):
    run_dir = untrained_run(tmp_path / "run", "recall", cell="gru", units=4)
    expected = prediction.predict_run(run_dir, ["3", "1", "4", "1", "5"])
    saved_model = writers.export_run(run_dir, "savedmodel", log=lambda *_: None)["artifact_path"]
    assert prediction.predict_run(saved_model, ["31415"])["confidence"] == pytest.approx(expected["confidence"], abs=1e-5)

    tflite = writers.export_run(run_dir, "tflite", log=lambda *_: None)["artifact_path"]
    done = cli_here("predict", tflite, "3", "1", "4", "1", "5", "--json")  # as a user runs it
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["digit"] == expected["digit"]
    assert result["confidence"] == pytest.approx(expected["confidence"], abs=1e-5)
    assert done.stderr == ""  # no interpreter or TensorFlow chatter


@pytest.mark.parametrize(
    "damage, message",
    [
        ("truncate-tflite", "could not be loaded as a LiteRT model"),
        ("garbage-savedmodel", "could not be loaded as a SavedModel"),
        ("lose-metadata", "copy it along with the artifact"),
    ],
)
def test_damaged_artifacts_are_refused_clearly(damage, message, tmp_path):
    run_dir = untrained_run(tmp_path / "run", "adder", units=3)
    fmt = "tflite" if damage == "truncate-tflite" or damage == "lose-metadata" else "savedmodel"
    artifact = writers.default_artifact_path(run_dir, fmt)
    writers.export_run(run_dir, fmt, log=lambda *_: None)
    if damage == "truncate-tflite":
        artifact.write_bytes(artifact.read_bytes()[:500])
    elif damage == "garbage-savedmodel":
        (artifact / "saved_model.pb").write_bytes(b"not a protobuf")
    else:
        artifacts.metadata_path(artifact).unlink()
    with pytest.raises(UserError, match=message):
        prediction.predict_run(artifact, ["101", "1"])


@pytest.mark.parametrize("fmt", ["savedmodel", "tflite"])
def test_an_installation_that_cannot_load_a_sound_artifact_is_not_called_corrupt(fmt, tmp_path, monkeypatch):
    import tensorflow as tf
    from ai_edge_litert import interpreter

    run_dir = untrained_run(tmp_path / "run", "adder", units=3)
    artifact = writers.default_artifact_path(run_dir, fmt)
    writers.export_run(run_dir, fmt, log=lambda *_: None)

    def broken_library(*args, **kwargs):
        raise ImportError("libtensorflow_framework.so.2: cannot open shared object file")

    monkeypatch.setattr(tf.saved_model, "load", broken_library)
    monkeypatch.setattr(interpreter, "Interpreter", broken_library)
    with pytest.raises(RunError, match="by this installation .ImportError: libtensorflow_framework") as raised:
        prediction.predict_run(artifact, ["101", "1"])
    assert "corrupt" not in str(raised.value)


def test_export_refuses_unknown_format_and_missing_run(tmp_path):
    with pytest.raises(UserError, match="unknown export format 'pb'"):
        writers.export_run(tmp_path, "pb")
    with pytest.raises(UserError, match="no such run directory"):
        writers.export_run(tmp_path / "missing", "savedmodel")
    run_dir = untrained_run(tmp_path / "run", "adder", units=3)
    with pytest.raises(UserError, match="is a .tflite file"):
        writers.export_run(run_dir, "tflite", tmp_path / "model.bin")
    with pytest.raises(UserError, match="not a SavedModel export"):  # never rmtree a run directory
        writers.export_run(run_dir, "savedmodel", run_dir)
    assert (run_dir / "model.keras").exists()


def test_an_export_that_cannot_be_checked_leaves_nothing_behind(tmp_path, monkeypatch):
    run_dir = untrained_run(tmp_path / "run", "adder", units=3)

    def no_runtime(path, metadata):
        raise UserError("running a .tflite artifact needs LiteRT: pip install ai-edge-litert")

    monkeypatch.setattr(writers, "load_artifact", no_runtime)
    for fmt, out in (("tflite", tmp_path / "adder.tflite"), ("savedmodel", tmp_path / "adder-savedmodel")):
        with pytest.raises(UserError, match="needs LiteRT"):
            writers.export_run(run_dir, fmt, out, log=lambda line: None)
        assert not out.exists() and not artifacts.metadata_path(out).exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run"]
