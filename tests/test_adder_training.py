"""A short seeded fit really learns to add, and is evaluated at many lengths in one process."""

import json
import random

import keras
import pytest

from kerasrnn import runs
from kerasrnn.export import writers
from kerasrnn.serving import prediction
from kerasrnn.tasks import get_task
from kerasrnn.training import fitting

adder = get_task("adder")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("adder") / "run"
    config = adder.make_config({"eval_samples": 200})  # the defaults: about 10 s of training
    metrics = fitting.fit(config, run_dir, verbose=0, log=lambda *_: None)
    return run_dir, metrics


def test_fit_writes_a_complete_run(trained_run):
    run_dir, metrics = trained_run
    for name in ("config.json", "model.keras", "history.csv", "iterations.csv", "metrics.json"):
        assert (run_dir / name).stat().st_size > 0
    for figure in ("loss_per_iteration.png", "epoch_curves.png", "accuracy_by_length.png"):
        assert (run_dir / "plots" / figure).read_bytes().startswith(b"\x89PNG")
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["task"] == "adder" and saved["epochs_run"] == 10
    assert saved["backend"] in ("tensorflow", "jax", "torch") and saved["device"]
    assert saved["train_samples_per_second"] > 0
    assert set(saved["by_length"]) == {str(n) for n in range(1, 65)}  # past the 32-bit training length
    assert len((run_dir / "history.csv").read_text().splitlines()) == 1 + 10
    # One row a call into the backend: several batches a call on TensorFlow and JAX (their mean loss), one on torch.
    per_call = saved["steps_per_execution"]
    assert 100 % per_call == 0 and (per_call > 1) == (saved["backend"] != "torch")
    iterations = [int(line.split(",")[0]) for line in (run_dir / "iterations.csv").read_text().splitlines()[1:]]
    assert iterations == list(range(per_call, 10 * 100 + 1, per_call))


def test_fit_learns_exact_sums(trained_run):
    _, metrics = trained_run
    assert metrics["test"]["exact_accuracy"] == 1.0
    for length in ("1", "5", "10", "20"):
        assert metrics["by_length"][length]["exact_accuracy"] == 1.0, length
        assert metrics["by_length"][length]["carry_chain_exact"]


def test_evaluate_many_lengths_in_one_process(trained_run):
    run_dir, _ = trained_run
    result = fitting.evaluate_run(run_dir, [3, 2, 40, 7, 64])
    assert set(result["by_length"]) == {"2", "3", "7", "40", "64"}
    assert result["by_length"]["2"]["samples"] == 16  # every pair of 2-bit numbers
    assert all(scores["exact_accuracy"] == 1.0 for scores in result["by_length"].values())


def test_predict_far_beyond_training_length(trained_run):
    run_dir, _ = trained_run
    a, b = 2**299 + 12345, 3**180
    result = prediction.predict_run(run_dir, [format(a, "b"), format(b, "b")])
    assert int(result["sum"], 2) == a + b and result["correct"]
    chain = prediction.predict_run(run_dir, ["1" * 64, "1"])
    assert chain["sum"] == "1" + "0" * 64 and chain["correct"]


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="exports run on TensorFlow")
@pytest.mark.parametrize("fmt", ["savedmodel", "tflite", "onnx"])
def test_exported_adder_adds_exactly_at_every_length(trained_run, fmt):
    """The export floor: through the artifact, exact sums at every length 1..64 and on the 64-bit carry chain."""
    run_dir, _ = trained_run
    artifact = writers.export_run(run_dir, fmt, log=lambda *_: None)["artifact_path"]
    task, config, model = prediction.load_predictor(artifact)
    rng = random.Random(7)
    for length in range(1, 65):
        for a, b in [(rng.getrandbits(length), rng.getrandbits(length)) for _ in range(3)]:
            result = prediction.predict_with(task, config, model, [format(a, f"0{length}b"), format(b, f"0{length}b")])
            assert result["correct"], (length, result)
    chain = prediction.predict_with(task, config, model, ["1" * 64, "1"])
    assert chain["sum"] == "1" + "0" * 64 and chain["correct"]


def test_refuses_to_overwrite_a_finished_run(trained_run):
    run_dir, _ = trained_run
    from kerasrnn.errors import UserError

    with pytest.raises(UserError, match="finished run"):
        runs.prepare_run_dir(run_dir, resume=False, overwrite=False)


def test_several_batches_a_call_train_what_one_batch_a_call_trains(tmp_path):
    """steps_per_execution is Keras' own loop over batches inside one call: the same steps, the same weights."""
    config = adder.make_config({"epochs": 2, "steps_per_epoch": 12, "train_length": 6, "eval_samples": 50})
    histories = {}
    for per_call in (1, "auto"):
        run_dir = tmp_path / str(per_call)
        metrics = fitting.fit({**config, "steps_per_execution": per_call}, run_dir, verbose=0, log=lambda *_: None)
        histories[per_call] = (run_dir / "history.csv").read_text(), metrics["steps_per_execution"]
    assert histories[1][1] == 1
    assert histories["auto"][1] == (6 if keras.backend.backend() != "torch" else 1)
    assert histories["auto"][0] == histories[1][0]  # every epoch's loss and metrics, to the last digit written


def test_steps_per_execution_auto_divides_the_epoch(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "tensorflow")
    auto = {"steps_per_execution": "auto"}
    chosen = {steps: fitting.steps_per_execution(auto, steps) for steps in (100, 300, 844, 7, 11, 1)}
    assert chosen == {100: 5, 300: 6, 844: 4, 7: 7, 11: 1, 1: 1}
    assert fitting.steps_per_execution(auto, None) == 1  # evaluation and prediction outside a fit
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    assert fitting.steps_per_execution(auto, 300) == 1  # the toolkit's own loop on torch
    assert fitting.steps_per_execution({"steps_per_execution": 4}, 300) == 4


def test_a_steps_per_execution_that_would_train_extra_steps_is_refused():
    with pytest.raises(fitting.UserError, match="must divide the 100 steps of an epoch"):
        fitting.steps_per_execution({"steps_per_execution": 8}, 100)
    for wrong in ("fast", 0, True):
        with pytest.raises(fitting.UserError, match="steps per execution must be auto or a whole number >= 1"):
            adder.make_config({"steps_per_execution": wrong})
