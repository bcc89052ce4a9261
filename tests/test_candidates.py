"""Side-by-side candidates: each starts as an ordinary model would, trains on its own, and the best one is kept."""

import keras
import numpy as np
import pytest

from kerasrnn.errors import UserError
from kerasrnn.tasks import get_task
from kerasrnn.tasks.base import VALIDATION_STREAM, seeded_rng
from kerasrnn.tasks.recall import mixed_length_dataset, random_recall_examples
from kerasrnn.training import candidates, fitting

recall = get_task("recall")


def small_pool(cell: str, count: int = 3, readout: int = 4):
    config = recall.make_config({"cell": cell, "units": 2, "readout_units": readout, "candidates": count})
    build_single = lambda: recall.build_model(config)  # noqa: E731
    pool = candidates.build_pool(build_single(), count)
    candidates.initialize_pool(pool, build_single, seed=7, candidates=count)
    return pool, build_single


def batch(seed: int, length: int = 6, count: int = 32):
    return random_recall_examples(np.random.default_rng(seed), count, length, index=2)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_each_candidate_starts_as_the_ordinary_model_with_its_seed(cell):
    pool, build_single = small_pool(cell)
    x, _ = batch(0)
    together = pool.predict(x, verbose=0)
    assert together.shape == (32, 3, 10)
    for index in range(3):
        keras.utils.set_random_seed(candidates.candidate_seed(7, index))
        alone = build_single().predict(x, verbose=0)
        np.testing.assert_allclose(together[:, index], alone, atol=1e-6)
    assert candidates.candidate_seed(7, 0) == 7  # candidate 0 starts where a plain fit with seed 7 starts
    assert not np.allclose(together[:, 0], together[:, 1])


def test_candidates_train_as_independent_restarts():
    """Five steps of the pool move candidate 1 exactly as five steps of that model alone would.

    The pool's loss is the mean over its 3 candidates, so each candidate's gradient is a third of its own;
    plain gradient descent at 3x the rate makes the two comparable to float precision.
    """
    pool, build_single = small_pool("lstm")
    keras.utils.set_random_seed(candidates.candidate_seed(7, 1))
    alone = build_single()
    start = alone.get_weights()
    pool.compile(optimizer=keras.optimizers.SGD(0.3), loss=candidates.CandidateLoss(keras.losses.SparseCategoricalCrossentropy()))
    alone.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy())
    for step in range(5):
        x, y = batch(step, length=3 + step)
        pool.train_on_batch(x, y)
        alone.train_on_batch(x, y)
    extracted = build_single()
    candidates.copy_candidate(pool, 1, extracted, into_pool=False)
    for got, want in zip(extracted.get_weights(), alone.get_weights()):
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(extracted.get_weights()[0], start[0], atol=1e-3)  # it did move
    # ... and no weight has grown between candidates
    recurrent = pool.get_layer("lstm_1").cell.recurrent_kernel.numpy()
    assert np.all(recurrent[:2, 2:4] == 0) and np.all(recurrent[2:4, :2] == 0) and np.any(recurrent[:2, :2] != 0)


def test_best_candidate_accuracy_is_the_best_candidates_over_all_batches():
    rng = np.random.default_rng(1)
    metric = candidates.BestCandidateAccuracy(4)
    hits = np.zeros(4)
    for _ in range(3):
        y = rng.integers(0, 10, 50)
        scores = rng.random((50, 4, 10)).astype("float32")
        metric.update_state(y, scores)
        hits += (scores.argmax(-1) == y[:, None]).sum(0)
    assert float(metric.result()) == pytest.approx(hits.max() / 150)
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_fit_keeps_the_best_candidate_as_an_ordinary_model(tmp_path):
    config = recall.make_config(
        {"units": 2, "candidates": 3, "epochs": 2, "steps_per_epoch": 20, "batch_size": 64, "validation_samples": 400,
         "test_samples": 400, "eval_samples": 100, "max_eval_length": 11, "seed": 3}
    )  # fmt: skip
    metrics = fitting.fit(config, tmp_path / "run", verbose=0, log=lambda *_: None)
    chosen = metrics["candidates"]
    assert chosen["count"] == 3 and len(chosen["validation_accuracy"]) == 3
    assert chosen["chosen"] == int(np.argmax(chosen["validation_accuracy"]))

    _, _, model = fitting.load_compiled_run(tmp_path / "run")
    assert model.output_shape == (None, 10)  # the saved model is one ordinary LSTM 2, not the pool
    assert model.get_layer("lstm_1").cell.units == 2
    validation = mixed_length_dataset(seeded_rng(3, VALIDATION_STREAM), 400, list(range(3, 11)), 2)
    accuracy = model.evaluate(validation, verbose=0, return_dict=True)["accuracy"]
    assert accuracy == pytest.approx(chosen["validation_accuracy"][chosen["chosen"]], abs=1e-3)


@pytest.mark.parametrize(
    "options,message",
    [
        ({"candidates": 0}, "candidates"),
        ({"candidates": True}, "candidates"),
        ({"candidates": 2.5}, "candidates"),
        ({"candidates": 4, "layers": 2}, "one unidirectional"),
        ({"candidates": 4, "bidirectional": True}, "one unidirectional"),
    ],
)
def test_bad_candidate_options_are_refused(options, message):
    with pytest.raises(UserError, match=message):
        recall.make_config(options)
