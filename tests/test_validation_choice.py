"""Searches and sweeps choose on validation data only: a task whose test set raises until the report shows that
neither `tune` nor `sweep` reads it before every choice is made, and that the chosen one is the best on validation."""

import pytest

import kerasrnn
from kerasrnn import runs
from kerasrnn.studies import sweep
from kerasrnn.tasks.adder import AdderTask
from kerasrnn.training import fitting

QUICK = {"epochs": 1, "steps_per_epoch": 8, "train_length": 4, "eval_samples": 20, "test_samples": 50, "validation_samples": 100}


class GuardedAdder(AdderTask):
    """The adder, whose test set cannot be read until `opened` (the report) and which logs every read."""

    name = "guarded_adder"

    def __init__(self):
        self.opened, self.reads = False, []

    def validation_scores(self, model, config, validation):
        self.reads.append("validation")
        return super().validation_scores(model, config, validation)

    def evaluate(self, model, config, lengths=None):
        if not self.opened:
            raise RuntimeError("the test set was read before the search ended")
        self.reads.append("test")
        return super().evaluate(model, config, lengths)


@pytest.fixture
def guarded(monkeypatch):
    task = GuardedAdder()
    real = fitting.score_test_set

    def report(run_dir, lengths=None):  # the one place that reads the test set, after the choice
        task.opened = True
        try:
            return real(run_dir, lengths)
        finally:
            task.opened = False

    monkeypatch.setattr(fitting, "score_test_set", report)
    return task


def test_tune_reads_the_test_set_once_after_choosing_on_validation(guarded, tmp_path):
    document = kerasrnn.tune(
        guarded, out=tmp_path / "search", search="lr", max_trials=3, log=lambda line: None, verbose=0, **QUICK
    )
    assert guarded.reads == ["validation"] * 3 + ["test"]
    scores = {trial["id"]: runs.read_metrics(trial["run"])["validation"]["exact_accuracy"] for trial in document["trials"]}
    assert document["best"]["id"] == max(scores, key=scores.get)  # the best on validation, whatever its test score
    assert document["best"]["metric"] == scores[document["best"]["id"]] and document["chosen_on"] == "validation"
    assert document["best"]["test"]["samples"] == QUICK["test_samples"]


def test_sweep_reads_every_test_set_only_after_every_fit(guarded, tmp_path):
    kerasrnn.tasks.get_task(guarded)  # found by its name in this process, as kerasrnn.fit(task) does
    document = sweep.sweep("guarded_adder", {"units": [2, 3, 4]}, QUICK, tmp_path, log=lambda line: None)
    assert guarded.reads == ["validation"] * 3 + ["test"] * 3
    best = max(document["rows"], key=lambda row: row["validation"])
    assert document["best"] == best["run"] and [row["best"] for row in document["rows"]].count("best") == 1
    assert document["chosen_on"] == "validation exact accuracy"


def test_a_fit_that_skips_the_test_set_records_validation_and_scores_test_later(tmp_path):
    run = kerasrnn.fit("adder", out=tmp_path / "run", score_test=False, verbose=0, log=lambda line: None, **QUICK)
    metrics = run.metrics
    assert metrics["test"] is None and "by_length" not in metrics
    assert metrics["objective"]["name"] == "exact_accuracy" and 0.0 <= metrics["validation"]["exact_accuracy"] <= 1.0
    scored = run.score_test()
    assert scored["test"]["samples"] == QUICK["test_samples"] and scored["by_length"]
    assert run.metrics == scored and run.score_test() == scored  # read once, kept
