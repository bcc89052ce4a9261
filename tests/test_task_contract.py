"""Every hook of the Task contract: a task without it either works, or is refused in one line before the run
directory is made. The task here is a plain `Task` (not a SequenceTask) of fixed arrays of free length."""

import numpy as np
import pytest

import kerasrnn
from kerasrnn import runs
from kerasrnn.tasks import get_task
from kerasrnn.tasks.base import Task

QUICK = {"epochs": 1, "units": 4, "batch_size": 32}


def peaks(rng: np.random.Generator, count: int, steps: int = 10):
    """Which of two channels peaks first: needs memory of the first peak until the end."""
    x = rng.normal(0.0, 0.1, (count, steps, 2)).astype(np.float32)
    first = rng.integers(0, 2, count)
    at = rng.integers(0, steps // 2, count)
    x[np.arange(count), at, first] += 2.0
    x[np.arange(count), at + steps // 2, 1 - first] += 2.0
    return x, first.astype(np.int32)


class Peaks(Task):
    name = "contract_peaks"
    probes = {"first": "which channel peaked first"}

    def build_model(self, config):
        import keras

        from kerasrnn.modeling.models import build_model
        from kerasrnn.modeling.spec import RecurrentSpec

        def head(features):
            return keras.layers.Dense(2, activation="softmax")(features)

        return build_model("peaks", (None, 2), RecurrentSpec.from_config(config), head, return_sequences=False)

    def loss_and_metrics(self, config):
        import keras

        return keras.losses.SparseCategoricalCrossentropy(), [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def training_data(self, config, first_epoch=0):
        import tensorflow as tf

        x, y = peaks(np.random.default_rng(1), 256)
        train = tf.data.Dataset.from_tensor_slices((x, y)).batch(config["batch_size"]).repeat()
        validation = tf.data.Dataset.from_tensor_slices(peaks(np.random.default_rng(2), 64)).batch(64)
        return train, validation, 8

    def evaluate(self, model, config, lengths=None):
        x, y = peaks(np.random.default_rng(3), 64)
        scores = model.evaluate(x, y, verbose=0, return_dict=True)
        return {"test": {"loss": float(scores["loss"]), "accuracy": float(scores["accuracy"]), "samples": 64}}

    def model_input(self, config, inputs):
        values = np.array([float(value) for value in inputs], dtype=np.float32)
        return values.reshape(1, -1, 2), {"steps": len(values) // 2}

    def inspection_examples(self, config, count, length):
        x, y = peaks(np.random.default_rng(4), count)
        return x, {"first": np.repeat(y[:, None], x.shape[1], axis=1)}


REQUIRED = ("build_model", "loss_and_metrics", "training_data", "evaluate")
# Hooks a fit calls that have a default that works: the fit completes without them.
FIT_DEFAULTS = ("validate", "training_batches", "candidates", "validation_scores", "plot", "sample_inputs", "typical_steps")


def without(hook: str):
    """Peaks as a task that does not define `hook` (it inherits Task's)."""
    members = {name: value for name, value in vars(Peaks).items() if name != hook}
    return type(f"PeaksWithout_{hook}", (Task,), members)()


@pytest.mark.parametrize("hook", REQUIRED)
def test_a_task_without_a_required_hook_is_refused_before_the_run_directory(hook, tmp_path):
    with pytest.raises(
        kerasrnn.UserError, match=rf"task 'contract_peaks' cannot train: it defines no {hook} \(docs/add-a-task.md"
    ):
        kerasrnn.fit(without(hook), out=tmp_path / "run", verbose=0, log=lambda line: None, **QUICK)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("hook", FIT_DEFAULTS)
def test_a_task_without_an_optional_fit_hook_trains(hook, tmp_path):
    run = kerasrnn.fit(without(hook), out=tmp_path / "run", verbose=0, log=lambda line: None, **QUICK)
    metrics = run.metrics
    assert metrics["test"]["samples"] == 64 and metrics["predict_samples_per_second"] > 0
    assert metrics["objective"]["name"] == "accuracy"  # the default objective: validation accuracy


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One fit of the whole task; the commands below use it through tasks that lack one hook each."""
    run_dir = tmp_path_factory.mktemp("peaks") / "run"
    kerasrnn.fit(Peaks(), out=run_dir, verbose=0, log=lambda line: None, **QUICK)
    return run_dir


INPUT = ["0", "0", "2", "0", "0", "0", "0", "2"]


@pytest.mark.parametrize("hook", ["predict", "describe_prediction", "check_inputs"])
def test_predict_works_without_its_optional_hooks(hook, fitted):
    get_task(without(hook))  # registered under the run's task name: the run finds this one
    run = kerasrnn.load(fitted)
    result = run.predict(INPUT)
    assert result["steps"] == 4 and np.asarray(result["outputs"]).shape == (1, 2)
    assert run.describe_prediction(result)


def test_predict_without_model_input_is_one_line_before_the_model_loads(fitted, monkeypatch):
    get_task(without("model_input"))
    monkeypatch.setattr(runs, "load_model", lambda path: pytest.fail("the model was loaded"))
    with pytest.raises(kerasrnn.UserError, match="does not read a person's inputs"):
        kerasrnn.load(fitted).predict(INPUT)


@pytest.mark.parametrize(
    "hook", ["probes", "describe_inspection_input", "step_labels", "inspection_extras", "inspection_figures"]
)
def test_inspect_works_without_its_optional_hooks(hook, fitted, tmp_path):
    get_task(without(hook))
    result = kerasrnn.load(fitted).inspect(out=tmp_path / "inspect")
    assert result["steps"] == 10 and result["figures"]
    assert ("first" in result["probes"]) == (hook != "probes")


def test_inspect_of_given_inputs_needs_nothing_beyond_the_model(fitted, tmp_path):
    get_task(without("inspection_examples"))
    with pytest.raises(kerasrnn.UserError, match="makes no examples of its own to inspect: give inputs"):
        kerasrnn.load(fitted).inspect(out=tmp_path / "none")
    get_task(type("Bare", (Peaks,), {"probes": {}, "inspection_examples": Task.inspection_examples})())
    result = kerasrnn.load(fitted).inspect(INPUT, out=tmp_path / "given")
    assert result["steps"] == 4 and result["probes"] == {}


def test_probes_shuffle_examples_that_come_sorted_by_class(fitted, tmp_path):
    """A task whose examples come sorted by their label: unshuffled halves would fit on one class, score another."""

    class Sorted(Peaks):
        def inspection_examples(self, config, count, length):
            x, targets = super().inspection_examples(config, count, length)
            order = np.argsort(targets["first"][:, 0], kind="stable")
            return x[order], {"first": targets["first"][order]}

    get_task(Sorted())
    probe = kerasrnn.load(fitted).inspect(out=tmp_path / "sorted")["probes"]["first"]
    assert min(probe["chance_by_step"]) > 0.3  # both classes on both sides: the commonest value scores about half
