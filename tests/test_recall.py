"""recall: generator properties, option checks, a fit that learns K=0, evaluation beyond training lengths."""

import json

import numpy as np
import pytest

from kerasrnn.errors import UserError
from kerasrnn.tasks import get_task
from kerasrnn.tasks.base import seeded_rng
from kerasrnn.tasks.recall import (
    curriculum_max_length,
    mixed_length_dataset,
    parse_digit_sequence,
    random_recall_examples,
)
from kerasrnn.training import fitting

recall = get_task("recall")


def test_examples_are_one_hot_and_labelled_with_the_digit_at_k():
    x, y = random_recall_examples(seeded_rng(0, 0), 5000, 7, index=2)
    assert x.shape == (5000, 7, 10) and y.shape == (5000,)
    assert np.all(x.sum(axis=-1) == 1.0) and set(np.unique(x)) == {0.0, 1.0}
    assert np.array_equal(x[:, 2, :].argmax(axis=-1), y)
    assert set(x.argmax(axis=-1).ravel()) == set(range(10))  # 0..9 inclusive, 9 too
    counts = np.bincount(x.argmax(axis=-1).ravel(), minlength=10)
    assert counts.min() > 0.9 * counts.mean()  # uniform over the ten digits


def test_training_batches_have_one_length_each_within_range():
    config = recall.make_config({"min_length": 4, "max_length": 9, "index": 3, "batch_size": 32})
    lengths = set()
    for x, y in recall.training_dataset(config).take(60):
        x, y = x.numpy(), y.numpy()
        assert x.shape[0] == 32 and 4 <= x.shape[1] <= 9  # no padding: nothing to mask
        assert np.array_equal(x[:, 3].argmax(axis=-1), y)
        lengths.add(x.shape[1])
    assert lengths == set(range(4, 10))


def batch_lengths(dataset, count: int) -> list[int]:
    return [int(x.shape[1]) for x, _ in dataset.take(count)]


def test_curriculum_grows_the_longest_training_length_epoch_by_epoch():
    config = recall.make_config({"curriculum_epochs": 4, "steps_per_epoch": 30, "batch_size": 8})  # lengths 3..10
    assert [curriculum_max_length(config, epoch) for epoch in range(6)] == [4, 5, 7, 8, 10, 10]
    lengths = batch_lengths(recall.training_dataset(config), 6 * 30)
    for epoch in range(6):
        in_epoch = lengths[epoch * 30 : (epoch + 1) * 30]
        assert min(in_epoch) >= 3 and max(in_epoch) <= curriculum_max_length(config, epoch)
    assert max(lengths[:30]) == 4 and max(lengths[-30:]) == 10 and 3 in lengths[:30]
    plain = recall.make_config({"steps_per_epoch": 30})
    assert {curriculum_max_length(plain, epoch) for epoch in range(3)} == {10}  # off by default


def test_a_resumed_stream_continues_with_the_batches_an_uninterrupted_one_sees():
    config = recall.make_config({"curriculum_epochs": 3, "steps_per_epoch": 5, "batch_size": 4})
    whole = [(x.numpy(), y.numpy()) for x, y in recall.training_dataset(config).take(20)]
    resumed = [(x.numpy(), y.numpy()) for x, y in recall.training_dataset(config, first_epoch=2).take(10)]
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(whole[10:], resumed))


def test_mixed_length_dataset_covers_every_length():
    dataset = mixed_length_dataset(seeded_rng(1, 1), 300, [3, 5, 8], index=0)
    seen = {}
    for x, _ in dataset:
        seen[x.shape[1]] = seen.get(x.shape[1], 0) + x.shape[0]
    assert seen == {3: 100, 5: 100, 8: 100}


@pytest.mark.parametrize(
    "options,message",
    [
        ({"index": 3, "min_length": 3}, "smaller than the minimum length"),
        ({"index": -1}, "index"),
        ({"min_length": 8, "max_length": 5}, "must not exceed"),
        ({"min_length": 0}, "min length"),
        ({"loss": "mse"}, "applies to task adder, not"),
        ({"readout_units": -1}, "readout units"),
        ({"readout_units": 2.5}, "readout units"),
        ({"readout_units": True}, "readout units"),
        ({"curriculum_epochs": -2}, "curriculum epochs must be a whole number >= 0"),
        ({"curriculum_epochs": "5"}, "curriculum epochs"),
        ({"steps_per_epoch": True}, "steps per epoch"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(UserError, match=message):
        recall.make_config(options)


@pytest.mark.parametrize(
    "inputs,expected", [(["3", "1", "4"], [3, 1, 4]), (["31415"], [3, 1, 4, 1, 5]), (["3,1", "4"], [3, 1, 4])]
)
def test_parse_digit_sequence(inputs, expected):
    assert parse_digit_sequence(inputs) == expected


@pytest.mark.parametrize("inputs", [["3", "x"], ["-1"], [""], ["3.5"]])
def test_parse_digit_sequence_refuses_non_digits(inputs):
    with pytest.raises(UserError):
        parse_digit_sequence(inputs)


@pytest.fixture(scope="module")
def k0_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("recall") / "run"
    config = recall.make_config(
        {"index": 0, "min_length": 2, "max_length": 6, "epochs": 4, "steps_per_epoch": 60, "units": 10,
         "eval_samples": 300, "test_samples": 1000, "max_eval_length": 8, "seed": 4}
    )  # fmt: skip
    return run_dir, fitting.fit(config, run_dir, verbose=0, log=lambda *_: None)


def test_short_fit_learns_k0_perfectly(k0_run):
    _, metrics = k0_run
    assert metrics["test"]["accuracy"] == 1.0
    assert all(metrics["by_length"][str(n)]["exact_accuracy"] == 1.0 for n in range(1, 7))
    assert all(metrics["by_length"][str(n)]["exact_accuracy"] > 0.95 for n in (7, 8))  # beyond training
    assert set(metrics["by_length"]) == {str(n) for n in range(1, 9)}


def test_evaluation_beyond_training_lengths_in_one_process(k0_run):
    run_dir, _ = k0_run
    result = fitting.evaluate_run(run_dir, [1, 6, 25, 3, 60])
    assert set(result["by_length"]) == {"1", "3", "6", "25", "60"}
    assert result["by_length"]["6"]["exact_accuracy"] == 1.0
    assert result["by_length"]["60"]["samples"] == 300


def test_cli_round_trip(k0_run, capfd):
    from conftest import run_cli_here

    run_dir, _ = k0_run
    status, out, err = run_cli_here(capfd, "predict", str(run_dir), "7", "1", "4", "--json")
    assert status == 0, err
    result = json.loads(out)
    assert result["sequence"] == [7, 1, 4] and result["index"] == 0 and result["digit"] == 7
    assert 0.5 < result["confidence"] <= 1.0 and "note" not in result  # one digit per argument: nothing to say
    status, out, _ = run_cli_here(capfd, "predict", str(run_dir), "52")
    assert status == 0 and "[5] 2" in out and "is 5" in out
    assert out.splitlines()[-1] == "(each digit is one step of the sequence: 52 was read as 5 2)"
    status, _, err = run_cli_here(capfd, "predict", str(run_dir), "4", "a")
    assert status == 2 and err.strip().startswith("error:") and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    status, out, _ = run_cli_here(capfd, "evaluate", str(run_dir), "--lengths", "2-3", "--json")
    assert status == 0 and json.loads(out)["by_length"].keys() == {"2", "3"}


def test_readout_sits_between_the_state_and_the_softmax():
    model = recall.build_model(recall.make_config({"units": 2, "readout_units": 16}))
    readout = model.get_layer("readout")
    assert readout.kernel.shape == (2, 16)  # reads the 2-number final state
    assert model.get_layer("digit").kernel.shape == (16, 10)
    assert "readout" not in [layer.name for layer in recall.build_model(recall.make_config({})).layers]
