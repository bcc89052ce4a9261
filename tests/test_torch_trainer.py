"""The toolkit's own training step on torch: what Keras' train_step computes, where it applies; Keras' otherwise."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from kerasrnn.backend import backend_installed

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.skipif(not backend_installed("torch"), reason="torch is not installed (pip install 'kerasrnn[torch]')")

CASES = [
    "mnist lstm",
    "mnist gru bidirectional stacked",
    "mnist rnn dropout",
    "mnist lstm constant rate, no clipping",
    "mnist gru clipped hard",
    "adder mse",
    "adder bce bidirectional",
    "adder bce gru stacked cosine clipped",
    "adder rnn",
    "recall lstm readout",
    "recall gru",
    "mnist lstm bfloat16",
    "mnist gru bidirectional bfloat16",
    "sequences masked bidirectional gru",
    "sequences masked stacked lstm",
    "sequences masked rnn regression",
    "sequences masked folded gru",
]


def result_of(parity, case: str, steps: int) -> dict:
    """The case's result; a bfloat16 case is skipped on a CPU without bfloat16 units."""
    if "bfloat16" in case and not parity["bfloat16 units"]:
        pytest.skip("this CPU has no bfloat16 units")
    result = parity[f"{case} {steps}"]
    if "bfloat16" in case:
        assert result["kernel_precisions"] == ["bfloat16"]  # the steps ran in it
    else:
        assert result["kernel_precisions"] in ([], ["float32"])  # [] : a SimpleRNN, no LSTM or GRU layer
    return result


@pytest.fixture(scope="module")
def parity():
    done = subprocess.run([sys.executable, str(HERE / "torch_trainer_parity.py")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", CASES)
def test_one_step_equals_keras_train_step(parity, case):
    """Weights, Adam's slots, the loss and every metric after one step: float32 rounding apart (in bfloat16 too:
    both sides run the same bfloat16 kernel on the same rounded inputs)."""
    result = result_of(parity, case, 1)
    assert result["names"]  # the same logs, by name
    assert result["weights"] < 1e-6 and result["optimizer"] < 1e-6
    assert result["logs"] < 1e-6 and result["metric_variables"] < 1e-6


@pytest.mark.parametrize("case", CASES)
def test_twenty_steps_stay_with_keras(parity, case):
    """Rounding grows with the steps; after 20 it stays far below the weights' own change. In bfloat16 it grows
    faster: a float32 difference that moves a weight across a bfloat16 rounding boundary changes the kernel's
    input by a whole bfloat16 step (about 0.3% apart after 20 steps, measured)."""
    result = result_of(parity, case, 20)
    bound = 1e-3 if "bfloat16" in case else 1e-5
    assert result["weights_relative_to_change"] < (1e-2 if "bfloat16" in case else 1e-4)
    assert result["optimizer"] < bound and result["logs"] < bound and result["metric_variables"] < bound


@pytest.mark.parametrize("case", CASES)
def test_the_toolkit_evaluates_as_keras_evaluate_does(parity, case):
    """Validation in the toolkit's fit: Keras' evaluate's results, names, metric variables and callback hooks."""
    result = result_of(parity, case, 20)
    assert result["evaluate_names"] and result["evaluate_hooks"]
    assert result["evaluate"] < 1e-6 and result["evaluate_metric_variables"] < 1e-6 and result["evaluate_hook_logs"] < 1e-6


@pytest.mark.parametrize("case", CASES)
def test_the_toolkit_predicts_as_keras_predict_does(parity, case):
    """Batch prediction on torch (scoring, the bench's predict samples/s): Keras' predict within float32 rounding."""
    assert result_of(parity, case, 20)["predict"] < 1e-6


def test_what_the_forward_pass_does_not_reproduce_is_predicted_by_keras(parity):
    refused = parity["inference refused"]
    assert refused["recurrent dropout"] and refused["unroll"]  # the models the step refuses for their layers
    assert not refused["train_step=keras"] and not refused["jit_compile"]  # refused for training only


def test_kernels_are_kept_in_torch_order_without_copies_and_save_as_keras_weights(parity):
    layout = parity["layout"]
    assert layout["kernels_in_torch_order"]
    assert layout["copies_seen"] > 0 and layout["kernel_sized_copies"] == 0  # the profiler saw the step's copies
    assert layout["loaded_weights"] == 0.0 and layout["loaded_outputs"] < 1e-6


def test_what_the_step_does_not_reproduce_stays_with_keras(parity):
    refused = parity["refused"]
    assert "lstm_1" in refused["recurrent dropout"] and "lstm_1" in refused["unroll"]
    assert refused["candidates"] == "side-by-side candidates"
    assert refused["train_step=keras"] == "asked for with train_step=keras"
    assert refused["jit_compile"] == "jit_compile" and refused["distributed"] == "a distributed fit"
    assert refused["another Keras"].startswith("Keras ") and "tested with Keras 3.0-3.1" in refused["another Keras"]


def fit_adder(tmp_path, name: str, *options: str) -> tuple[dict, str]:
    run_dir = tmp_path / name
    small = ["--train-length", "6", "--units", "6", "--epochs", "4", "-o", "eval_samples=200"]
    done = run_cli("fit", "adder", "--backend", "torch", "--out", str(run_dir), "--quiet", *small, *options)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads((run_dir / "metrics.json").read_text()), done.stdout + done.stderr


@pytest.mark.slow  # the default suite's time (docs/performance.md)
def test_a_fit_on_each_path_learns_alike_and_says_which_step_ran(tmp_path):
    toolkit, toolkit_log = fit_adder(tmp_path, "toolkit")
    keras_step, keras_log = fit_adder(tmp_path, "keras", "-o", "train_step=keras")
    assert "training step: the toolkit's own on torch" in toolkit_log
    assert "training step: Keras' train_step (asked for with train_step=keras)" in keras_log
    assert "Warning" not in toolkit_log  # e.g. torch's about read-only arrays from tf.data
    # The adder learns to add 6-bit numbers within 4 epochs on both paths (the same model, the same data).
    for metrics in (toolkit, keras_step):
        assert metrics["test"]["accuracy"] > 0.97, metrics["test"]
    assert abs(toolkit["test"]["accuracy"] - keras_step["test"]["accuracy"]) < 0.03
    # The run directory is the same on both: every epoch in history.csv, every batch in iterations.csv.
    for name in ("toolkit", "keras"):
        history = (tmp_path / name / "history.csv").read_text().splitlines()
        iterations = (tmp_path / name / "iterations.csv").read_text().splitlines()
        assert len(history) == 1 + 4 and len(iterations) == 1 + 4 * 100
        assert "val_loss" in history[0] and "exact_accuracy" in history[0]


class FakeClock:
    """Steps that take `step_seconds[threads]` each; `load` adds a busy process beside them."""

    def __init__(self, monkeypatch, threads):
        self.now, self.threads, self.load, self.counts = 0.0, 2, False, []
        self.heavy_load = None  # ms a step by thread count, for a load other than one busy Python process
        monkeypatch.setattr(threads.time, "perf_counter", lambda: self.now)
        monkeypatch.setattr(threads.torch, "get_num_threads", lambda: 2)
        monkeypatch.setattr(threads.torch, "set_num_threads", self.set_threads)
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)

    def set_threads(self, count):
        self.threads = count
        self.counts.append(count)

    def step(self, governor):
        # Measured on the build machine (docs/performance.md): 2 threads 4.3 ms quiet, 21 ms beside a busy
        # process; 1 thread 6.9 and 6.3 ms.
        if self.heavy_load:
            self.now += self.heavy_load[self.threads] / 1000
        else:
            self.now += {(2, False): 4.3, (2, True): 21.0, (1, False): 6.9, (1, True): 6.3}[self.threads, self.load] / 1000
        governor.tick()


def test_threads_follow_the_load(monkeypatch):
    from kerasrnn.torch import threads

    clock = FakeClock(monkeypatch, threads)
    governor = threads.ThreadGovernor(window=10)

    def share_on_one_thread(steps: int) -> float:
        on_one = 0
        for _ in range(steps):
            on_one += clock.threads == 1
            clock.step(governor)
        return on_one / steps

    # Quiet: one window tried with one thread at the start, then all threads and no further checks.
    assert share_on_one_thread(400) <= 10 / 400 and clock.counts == [1, 2] and clock.threads == 2
    clock.load = True  # a busy process arrives: one slower window, then one thread
    assert share_on_one_thread(2000) > 0.95
    assert len(clock.counts) - 2 <= 2 + 2 * 6  # re-checks of two threads, ever more rarely
    clock.load = False  # it leaves: a re-check finds two threads faster, and they stay
    share_on_one_thread(700)
    assert share_on_one_thread(500) == 0.0


def test_a_single_slow_window_on_a_quiet_machine_tries_no_other_count(monkeypatch):
    """This VM's hiccups: one window in five 1.5x slower; no probe of one thread after the first."""
    from kerasrnn.torch import threads

    clock = FakeClock(monkeypatch, threads)
    governor = threads.ThreadGovernor(window=10)
    for index in range(1000):
        clock.step(governor)
        if index % 50 == 45 and clock.threads == 2:  # half of one window's steps take 2x: the window 1.5x
            for _ in range(5):
                clock.now += 4.3 / 1000
                clock.step(governor)
    assert clock.counts == [1, 2]


def test_a_lasting_heavy_load_keeps_one_thread_between_ever_rarer_checks(monkeypatch):
    """Beside a second PyTorch process (two spinning thread pools on two cores) all threads take 35x as long as on a
    quiet machine and one thread about twice as long (measured: 161 and 7.4 ms against 4.3 and 5.6): one thread's
    windows stay slower than their quiet best, which must not send the fit back to all threads every few windows."""
    from kerasrnn.torch import threads

    clock = FakeClock(monkeypatch, threads)
    governor = threads.ThreadGovernor(window=10)
    for _ in range(400):
        clock.step(governor)
    clock.heavy_load = {2: 150.0, 1: 12.0}
    started = clock.now
    for _ in range(6000):
        clock.step(governor)
    ms_a_step = 1000 * (clock.now - started) / 6000
    assert ms_a_step < 1.4 * 12.0  # the re-checks of all threads cost a little; every third window would cost 4x
    assert clock.threads == 1


def test_a_fit_that_starts_beside_a_second_pytorch_process_loses_single_steps_not_windows(monkeypatch):
    """Measured beside a second PyTorch loop: windows on all threads at 600-1,600 ms a step against 4-7 ms on one
    thread. The fit's first window on all threads, and each later re-check, ends after its first such step."""
    from kerasrnn.torch import threads

    clock = FakeClock(monkeypatch, threads)
    clock.heavy_load = {2: 1000.0, 1: 6.0}
    governor = threads.ThreadGovernor(window=10)
    on_all_threads = 0
    for _ in range(3000):
        on_all_threads += clock.threads == 2
        clock.step(governor)
    assert on_all_threads <= 12  # one step a re-check: 4, 8, 16 ... windows apart
    assert 1000 * clock.now / 3000 < 2 * 6.0


def test_threads_the_user_set_are_kept(monkeypatch):
    from kerasrnn.torch import threads

    clock = FakeClock(monkeypatch, threads)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    governor = threads.ThreadGovernor(window=10)
    clock.load = True
    for _ in range(300):
        clock.step(governor)
    assert clock.counts == []


@pytest.mark.slow
def test_augmented_digits_train_on_torch(tmp_path):
    """GRU's defaults augment the images in tf.data: on torch the toolkit's step reads that pipeline's batches."""
    from kerasrnn.digits import mnist_data
    from kerasrnn.errors import RunError

    try:
        mnist_data.load_mnist()
    except RunError as error:
        pytest.skip(f"MNIST unavailable here: {error}")
    run_dir = tmp_path / "gru"
    done = run_cli("fit", "mnist", "--cell", "gru", "--units", "8", "--limit", "640", "--epochs", "2", "--backend", "torch",
                   "--out", str(run_dir), "--quiet")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "augmented images (augment=true)" in done.stdout + done.stderr
    assert "training step: the toolkit's own on torch" in done.stdout + done.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and len((run_dir / "iterations.csv").read_text().splitlines()) == 1 + 2 * 10
    assert metrics["test"]["accuracy"] > 0.12  # above the largest class (11%) after 20 steps of 64 augmented digits


def test_a_masked_sequences_fit_runs_the_toolkits_step_and_learns(tmp_path):
    """Sequences of mixed lengths (NaN-padded, masked): the toolkit's step on torch, not Keras' fallback."""
    rng = np.random.default_rng(0)
    xs = [rng.normal(0, 0.2, (int(rng.integers(4, 15)), 2)).astype(np.float32) for _ in range(160)]
    ys = np.array([int(x[:, 0].sum() > x[:, 1].sum()) for x in xs])
    np.savez(tmp_path / "train.npz", x=np.array(xs, dtype=object), y=np.where(ys == 1, "more", "less"))
    done = run_cli("fit", "sequences", "--train", str(tmp_path / "train.npz"), "-o", "units=8", "-o", "epochs=25",
                   "--backend", "torch", "--out", str(tmp_path / "run"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    log = done.stdout + done.stderr
    assert "training step: the toolkit's own on torch" in log
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["validation"]["accuracy"] > 0.8  # chance: about 1/2
