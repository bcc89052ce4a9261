"""A fit killed with SIGKILL (no handler runs) at the dangerous moments, then `kerasrnn fit --resume`: the run
finishes as if nothing had happened, with the same history and test results as an uninterrupted fit."""

import json
import os
import signal
import subprocess
import time

import pytest
from conftest import run_cli

from kerasrnn import runs
from kerasrnn.backend import cli_command

SMALL_ADDER = ["fit", "adder", "--loss", "mse", "--epochs", "4", "-o", "train_length=6", "-o", "steps_per_epoch=20",
               "-o", "eval_samples=50", "-o", "test_samples=200", "-o", "validation_samples=200", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("kills") / "whole"
    assert run_cli(*SMALL_ADDER, "--out", str(run_dir)).returncode == 0
    return run_dir


def assert_same_run(resumed, whole):
    assert (resumed / runs.HISTORY_FILE).read_bytes() == (whole / runs.HISTORY_FILE).read_bytes()  # no row lost or doubled
    assert (resumed / runs.ITERATIONS_FILE).read_bytes() == (whole / runs.ITERATIONS_FILE).read_bytes()
    got, expected = runs.read_metrics(resumed), runs.read_metrics(whole)
    assert got["epochs_run"] == expected["epochs_run"] == 4
    assert got["test"] == expected["test"] and got["by_length"] == expected["by_length"]
    assert not list(resumed.rglob(".tmp-*")) and not runs.backup_dir(resumed).exists()


@pytest.mark.parametrize(
    "point",
    [
        # One point in the default suite, four more with -m slow (time: docs/performance.md).
        pytest.param("epoch-begin:1", marks=pytest.mark.slow),  # the first epoch: history.csv opened, nothing in it yet
        # epoch 2's weights written, its record not yet: resumes from epoch 1's
        pytest.param("backup-weights-written:2", marks=pytest.mark.slow),
        # mid-epoch-end: the best weights renamed in, history and backup not yet
        pytest.param("best-weights-written:3", marks=pytest.mark.slow),
        pytest.param("model-saved", marks=pytest.mark.slow),  # training done, model.keras written, nothing evaluated
        "evaluated",  # during the final evaluation, before the figures and metrics.json
    ],
)
def test_a_fit_killed_at_a_dangerous_moment_resumes_to_the_same_run(point, uninterrupted, tmp_path):
    run_dir = tmp_path / "run"
    killed = run_cli(*SMALL_ADDER, "--out", str(run_dir), env={**os.environ, "KERASRNN_KILL_AT": point})
    assert killed.returncode == -signal.SIGKILL
    assert not runs.is_complete(run_dir)  # no metrics.json for an unfinished run
    resumed = run_cli("fit", "--resume", "--out", str(run_dir), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(run_dir, uninterrupted)


def test_a_fit_killed_mid_epoch_by_another_process_resumes_to_the_same_run(uninterrupted, tmp_path):
    run_dir = tmp_path / "run"
    fit = subprocess.Popen(cli_command(*SMALL_ADDER, "--out", str(run_dir)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    iterations = run_dir / runs.ITERATIONS_FILE
    deadline = time.monotonic() + 300
    while fit.poll() is None and time.monotonic() < deadline:  # kill once epoch 1 is on disk: epoch 2 is running
        if iterations.exists() and any(line.split(",")[1] == "1" for line in iterations.read_text().splitlines()[1:]):
            break
        time.sleep(0.02)
    fit.send_signal(signal.SIGKILL)
    assert fit.wait(timeout=60) == -signal.SIGKILL
    resumed = run_cli("fit", "--resume", "--out", str(run_dir), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(run_dir, uninterrupted)


@pytest.mark.slow  # the default suite's time; a sweep's run killed before it saved: tests/test_bench_sweep.py
def test_the_same_command_with_resume_starts_a_fit_killed_before_it_saved_anything(uninterrupted, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".tmp-123-config.json").write_text('{"half": ')  # what a kill mid-write leaves
    started = run_cli(*SMALL_ADDER, "--out", str(run_dir), "--resume")
    assert started.returncode == 0, started.stderr
    assert "nothing saved in" in started.stdout and "starting it" in started.stdout
    assert_same_run(run_dir, uninterrupted)
    nothing = run_cli("fit", "--resume", "--out", str(tmp_path / "empty"))  # no task: nothing to start
    assert nothing.returncode == 2 and nothing.stderr.count("\n") == 1


@pytest.mark.slow
def test_resuming_a_run_killed_after_it_finished_says_so(tmp_path):
    run_dir = tmp_path / "run"
    run_cli(*SMALL_ADDER, "--out", str(run_dir), env={**os.environ, "KERASRNN_KILL_AT": "metrics-written"})
    assert json.loads((run_dir / runs.METRICS_FILE).read_text())["epochs_run"] == 4
    again = run_cli("fit", "--resume", "--out", str(run_dir))
    assert again.returncode == 2 and "holds a finished run; nothing to resume" in again.stderr


def test_a_disk_that_fills_during_a_fit_is_one_line_and_resume_finishes_once_there_is_space(
    uninterrupted, tmp_path, monkeypatch, capfd
):
    import errno

    import keras
    from conftest import run_cli_here

    real_save, calls = keras.Model.save_weights, []

    def save_until_the_disk_fills(self, filepath, *args, **kwargs):
        calls.append(filepath)
        if len(calls) >= 4:  # a few epochs in: half a file, then no space
            with open(filepath, "wb") as handle:
                handle.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device", str(filepath))
        return real_save(self, filepath, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save_weights", save_until_the_disk_fills)
    run_dir = tmp_path / "run"
    status, _, stderr = run_cli_here(capfd, *SMALL_ADDER, "--out", str(run_dir))
    assert status == 1 and stderr.startswith("error: no space left on device") and stderr.count("\n") == 1, stderr
    assert not runs.is_complete(run_dir) and not list(run_dir.rglob(".tmp-*"))  # nothing half-written kept
    saved = runs.completed_epochs(run_dir)
    assert saved >= 1 and runs.best_weights(run_dir).stat().st_size > 1000  # the previous checkpoint, whole

    monkeypatch.setattr(keras.Model, "save_weights", real_save)  # space again
    resumed = run_cli("fit", "--resume", "--out", str(run_dir), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(run_dir, uninterrupted)
