"""The Python API: fit, load, Run; the same answers as the command line; reproducing a run from its config."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BACKEND, run_cli_here

import kerasrnn
from kerasrnn.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
# 10-bit sums (a third of the default steps): seed 0 still adds exactly far beyond them (tests/test_backends.py).
QUICK_ADDER = {"train_length": 10, "eval_samples": 100, "validation_samples": 200, "test_samples": 200}


@pytest.fixture(scope="module")
def adder_run(tmp_path_factory):
    return kerasrnn.fit("adder", out=tmp_path_factory.mktemp("api") / "adder", verbose=0, log=lambda line: None, **QUICK_ADDER)


def test_fit_returns_a_run_with_its_records(adder_run):
    assert isinstance(adder_run, kerasrnn.Run) and adder_run.task == "adder"
    assert adder_run.config["train_length"] == 10 and adder_run.config["backend"] == BACKEND
    assert adder_run.metrics["epochs_run"] == 10
    assert len(adder_run.history["loss"]) == 10 and adder_run.history["loss"][-1] < adder_run.history["loss"][0]
    assert {path.name for path in adder_run.figures} >= {"epoch_curves.png", "accuracy_by_length.png"}
    assert set(adder_run.metrics["by_length"]) == {str(n) for n in range(1, 21)}  # past the training length
    assert "<img" in adder_run._repr_html_()  # a notebook shows the figures inline


def test_evaluate_and_predict_answer_what_the_command_line_prints(adder_run, capfd):
    evaluated = adder_run.evaluate(lengths="3-5,30")
    status, out, err = run_cli_here(capfd, "evaluate", str(adder_run.path), "--lengths", "3-5,30", "--json")
    assert status == 0, err
    assert json.loads(out) == json.loads(json.dumps(evaluated))
    assert evaluated["by_length"]["30"]["exact_accuracy"] == 1.0  # learned to carry, far beyond its 10 bits
    assert adder_run.evaluate(lengths=[4, 3]) == kerasrnn.load(adder_run.path).evaluate("3-4")

    predicted = adder_run.predict(["1011", "110"])
    status, out, err = run_cli_here(capfd, "predict", str(adder_run.path), "1011", "110", "--json")
    assert status == 0, err
    assert json.loads(out) == predicted and predicted["sum"] == "10001"


def test_export_returns_the_artifact_which_loads_and_predicts_alike(adder_run, tmp_path):
    if BACKEND != "tensorflow":
        pytest.skip("exports run under TensorFlow")
    artifact = adder_run.export("savedmodel", out=tmp_path / "adder-savedmodel")
    assert artifact == tmp_path / "adder-savedmodel" and (artifact / "saved_model.pb").exists()
    loaded = kerasrnn.load(artifact)
    assert loaded.is_artifact and loaded.task == "adder" and loaded.metrics["parity"]["max_abs_difference"] <= 1e-5
    assert loaded.predict(["111111", "1"])["sum"] == adder_run.predict(["111111", "1"])["sum"] == "1000000"
    with pytest.raises(UserError, match="needs a run directory"):
        loaded.evaluate()


def test_loading_what_is_not_a_run_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="no such run directory"):
        kerasrnn.load(tmp_path / "nothing")


def test_errors_in_python_name_the_arguments_and_on_the_command_line_the_flags(adder_run, capfd):
    with pytest.raises(UserError, match=r"choose another out=\.\.\., or pass overwrite=True"):
        kerasrnn.fit("adder", out=adder_run.path, epochs=1, **QUICK_ADDER)
    with pytest.raises(UserError, match="task 'adder' has no option 'untis': did you mean 'units'"):
        kerasrnn.fit("adder", untis=3)
    status, _, err = run_cli_here(capfd, "fit", "adder", "--out", str(adder_run.path), "--epochs", "1")
    assert status == 2 and "choose another --out, or pass --overwrite" in err
    # A folder of runs where one run was meant: its runs named.
    with pytest.raises(UserError, match=rf"{adder_run.path.parent} is a folder of runs, not a run: pick one of them \(adder\)"):
        kerasrnn.load(adder_run.path.parent)


def test_another_backend_after_keras_started_is_refused_with_what_to_do():
    other = "jax" if BACKEND != "jax" else "torch"
    with pytest.raises(UserError, match="restart"):
        kerasrnn.fit("adder", backend=other, epochs=1)


def test_a_saved_model_loads_compiled_with_plain_keras(adder_run):
    """In a fresh process: `import kerasrnn`, then plain Keras loads model.keras with its loss and metrics."""
    script = f"""
import kerasrnn, keras, numpy as np
model = keras.models.load_model({str(adder_run.path / "model.keras")!r})
x = np.zeros((4, 6, 2), "float32"); y = np.zeros((4, 6, 1), "float32")
scores = model.evaluate(x, y, verbose=0, return_dict=True)
print(sorted(scores))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "['bit_accuracy', 'exact_accuracy', 'loss']"


@pytest.mark.slow  # the default suite's time (docs/performance.md)
def test_a_run_config_reproduces_the_run(adder_run, capfd, tmp_path):
    again = tmp_path / "again"
    status, _, err = run_cli_here(capfd, "fit", "--config", str(adder_run.path / "config.json"), "--out", str(again), "--quiet")
    assert status == 0, err
    assert json.loads((again / "config.json").read_text()) == adder_run.config
    if BACKEND == "tensorflow":  # deterministic kernels: the same numbers, not only the same settings
        metrics = json.loads((again / "metrics.json").read_text())
        assert metrics["test"] == adder_run.metrics["test"] and metrics["by_length"] == adder_run.metrics["by_length"]
        assert (again / "history.csv").read_text() == (adder_run.path / "history.csv").read_text()


def test_tensorboard_logs_hold_epochs_learning_rate_and_every_iteration(adder_run):
    import tensorflow as tf

    def scalars(folder: str) -> dict[str, list[int]]:
        steps = {}
        for events in sorted((adder_run.path / "tensorboard" / folder).glob("events.out.tfevents.*")):
            for event in tf.compat.v1.train.summary_iterator(str(events)):
                for value in event.summary.value:
                    steps.setdefault(value.tag, []).append(event.step)
        return steps

    train, validation = scalars("train"), scalars("validation")
    epochs = list(range(10))
    assert train["epoch_loss"] == epochs and train["epoch_learning_rate"] == epochs
    assert train["epoch_exact_accuracy"] == epochs and validation["epoch_loss"] == epochs
    iterations = adder_run.config["epochs"] * adder_run.config["steps_per_epoch"]
    per_call = adder_run.metrics["steps_per_execution"]
    assert train["iteration_loss"] == list(range(per_call, iterations + 1, per_call))


@pytest.mark.skipif(BACKEND != "tensorflow", reason="the example notebook runs on the default backend")
def test_the_example_notebook_runs(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]
    assert not [output for output in outputs if output.get("output_type") == "error"]
    shown = [output for output in outputs if "text/html" in output.get("data", {}) or "image/png" in output.get("data", {})]
    assert shown, "the notebook showed no figure"
    texts = "".join(output.get("text", "") + output.get("data", {}).get("text/plain", "") for output in outputs)
    assert "'sum': '10001'" in texts


def test_resume_needs_no_task_the_run_names_it(tmp_path, capfd):
    tiny = ["-o", "steps_per_epoch=5", "-o", "eval_samples=20", "-o", "train_length=4", "--epochs", "1", "--quiet"]
    status, _, err = run_cli_here(capfd, "fit", "adder", "--out", str(tmp_path / "run"), *tiny)
    assert status == 0, err
    (tmp_path / "run" / "metrics.json").unlink()  # as if the fit had stopped before its end
    status, out, err = run_cli_here(capfd, "fit", "--resume", "--out", str(tmp_path / "run"), "--quiet")
    assert status == 0, err
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["config"]["train_length"] == 4
