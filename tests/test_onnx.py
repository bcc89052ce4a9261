"""ONNX: every task, cell, stacked and bidirectional model, trained on any backend, answers as Keras does
through onnxruntime at lengths the export's own check never tried; `predict` through the artifact answers as
the run does; without the packages, one line names the extra."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from kerasrnn import runs
from kerasrnn.errors import RunError, UserError
from kerasrnn.export import artifacts, writers
from kerasrnn.tasks import get_task

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="exports run on TensorFlow")
ort = pytest.importorskip("onnxruntime")

FRESH_LENGTHS = (3, 17, 120)  # none of the export's own PARITY_LENGTHS
VARIANTS = {"one": {}, "stacked": {"layers": 2}, "bidirectional": {"bidirectional": True}}
# The default suite: each task, each cell, stacking and both directions once; the rest of the grid is `slow`.
DEFAULT_CASES = {
    ("adder", "lstm", "stacked"),
    ("recall", "gru", "bidirectional"),
    ("mnist", "rnn", "one"),
}
GRID = [
    pytest.param(task, cell, variant, id=f"{task}-{cell}-{variant}",
                 marks=() if (task, cell, variant) in DEFAULT_CASES else pytest.mark.slow)
    for task in ("adder", "recall", "mnist") for cell in ("rnn", "lstm", "gru") for variant in VARIANTS
]  # fmt: skip


def seeded_run(directory, task_name: str, **overrides):
    """A run directory with a seeded, untrained model (parity needs weights, not learning)."""
    task = get_task(task_name)
    config = task.make_config({"units": 6, **overrides})
    keras.utils.set_random_seed(config["seed"])
    directory.mkdir(parents=True)
    runs.write_json_atomic(directory / runs.CONFIG_FILE, config)
    runs.save_model_atomic(task.build_model(config), directory / runs.MODEL_FILE)
    return directory


def onnx_against_keras(run_dir, artifact) -> dict:
    """{steps: largest |onnxruntime - Keras|} on fresh task-like inputs, the artifact read by onnxruntime alone."""
    model, config = runs.load_model(run_dir), runs.read_config(run_dir)
    task, rng = get_task(config["task"]), np.random.default_rng(123)
    session = ort.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
    name, steps = session.get_inputs()[0].name, model.input_shape[1]
    differences = {}
    for length in FRESH_LENGTHS if steps is None else (steps,):
        x = task.sample_inputs(rng, 5, (length, *model.input_shape[2:]))
        differences[length] = float(np.max(np.abs(session.run(None, {name: x})[0] - model.predict(x, verbose=0))))
    return differences


@pytest.mark.parametrize("task_name, cell, variant", GRID)
def test_onnx_matches_keras_for_every_task_and_cell(task_name, cell, variant, tmp_path):
    run_dir = seeded_run(tmp_path / "run", task_name, cell=cell, **VARIANTS[variant])
    metadata = writers.export_run(run_dir, "onnx", tmp_path / "model.onnx", log=lambda line: None)
    assert metadata["parity"]["max_abs_difference"] <= writers.PARITY_TOLERANCE
    assert metadata["interface"]["input"] == "sequence" and metadata["interface"]["input_shape"][0] is None
    differences = onnx_against_keras(run_dir, tmp_path / "model.onnx")
    assert max(differences.values()) <= 1e-5, differences
    if task_name != "mnist":  # batch and length both free in the graph itself
        assert [
            dim if isinstance(dim, int) else None
            for dim in ort.InferenceSession(str(tmp_path / "model.onnx")).get_inputs()[0].shape
        ] == [None, None, metadata["interface"]["input_shape"][2]]


TRAINED = {  # runs trained on the other backends, briefly: their .keras files export on TensorFlow
    "torch-adder-gru": ("torch", ["adder", "--cell", "gru", "--units", "4", "-o", "steps_per_epoch=5"]),
    "jax-recall-lstm-stacked": ("jax", ["recall", "--cell", "lstm", "--units", "4", "--layers", "2", "-o", "steps_per_epoch=5"]),
    "torch-mnist-rnn-bidirectional": ("torch", ["mnist", "--cell", "rnn", "--units", "4", "--bidirectional", "--limit", "640"]),
    "jax-adder-rnn": ("jax", ["adder", "--cell", "rnn", "--units", "4", "-o", "steps_per_epoch=5"]),
}
TRAINED_DEFAULT = set()  # all with -m slow: the default suite's time (the sequences tests export ONNX by default)


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=() if name in TRAINED_DEFAULT else pytest.mark.slow) for name in TRAINED]
)
def test_runs_trained_on_other_backends_export_to_onnx(name, tmp_path, cli):
    backend, args = TRAINED[name]
    pytest.importorskip(backend)
    run_dir = tmp_path / "run"
    done = cli("fit", *args, "--epochs", "1", "--backend", backend, "--out", str(run_dir), "-q")
    assert done.returncode == 0, done.stderr
    assert runs.read_metrics(run_dir)["backend"] == backend
    metadata = writers.export_run(run_dir, "onnx", tmp_path / "model.onnx", log=lambda line: None)
    assert metadata["parity"]["max_abs_difference"] <= writers.PARITY_TOLERANCE
    assert max(onnx_against_keras(run_dir, tmp_path / "model.onnx").values()) <= 1e-5


@pytest.mark.slow
def test_predict_through_onnx_answers_as_the_run_does(tmp_path, cli):
    """From the command line for the adder; in one process for recall and mnist (the same code behind the command)."""
    import kerasrnn

    for task_name, inputs in {"recall": ["3", "1", "4", "1", "5"], "mnist": [str(digit_file(tmp_path))]}.items():
        run_dir = seeded_run(tmp_path / task_name, task_name)
        artifact = kerasrnn.load(run_dir).export("onnx", out=tmp_path / f"{task_name}.onnx")
        from_run, from_onnx = kerasrnn.load(run_dir).predict(inputs), kerasrnn.load(artifact).predict(inputs)
        key = "digit" if task_name == "recall" else "predictions"
        if task_name == "recall":
            assert from_onnx["digit"] == from_run["digit"]
            assert from_onnx["confidence"] == pytest.approx(from_run["confidence"], abs=1e-5)
        else:
            assert [p["label"] for p in from_onnx[key]] == [p["label"] for p in from_run[key]]
            assert from_onnx[key][0]["confidence"] == pytest.approx(from_run[key][0]["confidence"], abs=1e-5)
    for task_name, inputs in {"adder": ["1011", "110"]}.items():
        run_dir = seeded_run(tmp_path / task_name, task_name)
        artifact = tmp_path / f"{task_name}.onnx"
        export = cli("export", str(run_dir), "--format", "onnx", "--out", str(artifact), "--json")
        assert export.returncode == 0, export.stderr
        assert json.loads(export.stdout)["format"] == "onnx" and artifacts.artifact_format(artifact) == "onnx"
        from_run, from_onnx = (cli("predict", str(path), *inputs, "--json") for path in (run_dir, artifact))
        assert from_run.returncode == from_onnx.returncode == 0, from_onnx.stderr
        answer_run, answer_onnx = json.loads(from_run.stdout), json.loads(from_onnx.stdout)
        if task_name == "adder":
            assert answer_onnx["sum"] == answer_run["sum"]
        else:
            assert answer_onnx["digit"] == answer_run["digit"]
            assert answer_onnx["confidence"] == pytest.approx(answer_run["confidence"], abs=1e-5)


def test_missing_packages_and_wrong_paths_are_one_line(tmp_path, monkeypatch):
    run_dir = seeded_run(tmp_path / "run", "adder")
    with pytest.raises(UserError, match=r"an onnx export is a \.onnx file"):
        writers.export_run(run_dir, "onnx", tmp_path / "model.tflite", log=lambda line: None)
    real_find_spec = artifacts.importlib.util.find_spec
    monkeypatch.setattr(artifacts.importlib.util, "find_spec", lambda name: None if name == "tf2onnx" else real_find_spec(name))
    with pytest.raises(UserError, match=r'an ONNX export needs tf2onnx: pip install "kerasrnn\[onnx\]"'):
        writers.export_run(run_dir, "onnx", tmp_path / "model.onnx", log=lambda line: None)
    assert not (tmp_path / "model.onnx").exists() and not (tmp_path / "model.onnx.json").exists()
    monkeypatch.setattr(
        artifacts.importlib.util, "find_spec", lambda name: None if name == "onnxruntime" else real_find_spec(name)
    )
    with pytest.raises(UserError, match=r'running an \.onnx artifact needs onnxruntime: pip install "kerasrnn\[onnx\]"'):
        artifacts.OnnxRunner(tmp_path / "anything.onnx")


def test_a_damaged_onnx_file_is_refused_and_a_mismatch_is_not_kept(tmp_path, monkeypatch):
    run_dir = seeded_run(tmp_path / "run", "adder")
    artifact = tmp_path / "model.onnx"
    writers.export_run(run_dir, "onnx", artifact, log=lambda line: None)
    artifact.write_bytes(artifact.read_bytes()[:100])
    with pytest.raises(UserError, match="could not be loaded as an ONNX model"):
        artifacts.load_artifact(artifact)
    monkeypatch.setattr(
        writers, "check_parity", lambda model, config, artifact, window=None: {"max_abs_difference": 0.5, "by_length": {}}
    )
    with pytest.raises(RunError, match="differs from Keras by 0.5"):
        writers.export_run(run_dir, "onnx", tmp_path / "other.onnx", log=lambda line: None)
    assert not (tmp_path / "other.onnx").exists() and not (tmp_path / "other.onnx.json").exists()


def test_the_client_in_the_docs_needs_no_toolkit(tmp_path):
    """docs/export.md's onnxruntime client runs with kerasrnn made unimportable (its answer: tests/test_adder_training.py)."""
    client = docs_client(tmp_path)
    run_dir = seeded_run(tmp_path / "run", "adder")
    writers.export_run(run_dir, "onnx", tmp_path / "adder.onnx", log=lambda line: None)
    done = run_client(client, tmp_path / "adder.onnx", 11, 6)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[1] == "17"  # the true sum beside the model's


def digit_file(tmp_path):
    from PIL import Image, ImageDraw

    image = Image.new("L", (56, 56), 255)
    ImageDraw.Draw(image).line([(28, 8), (28, 48)], fill=0, width=5)
    image.save(tmp_path / "one.png")
    return tmp_path / "one.png"


def docs_client(tmp_path):
    from pathlib import Path

    page = Path(__file__).resolve().parents[1].joinpath("docs", "export.md").read_text()
    code = page.split("<!-- onnx client -->", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    path = tmp_path / "client.py"
    path.write_text(code)
    return path


def run_client(client, artifact, a: int, b: int) -> subprocess.CompletedProcess:
    blocked = f"import sys; sys.modules['kerasrnn'] = None; sys.argv = ['client', {str(artifact)!r}, '{a}', '{b}']; exec(open({str(client)!r}).read())"
    return subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=60)
