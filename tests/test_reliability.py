"""Interrupted fits resume to the right epoch count; one seed gives one result."""

import json
import signal
import subprocess
import time

import pytest
from conftest import cli_command

from kerasrnn import runs
from kerasrnn.tasks import get_task
from kerasrnn.training import callbacks, fitting

SMALL_ADDER = {"epochs": 6, "steps_per_epoch": 60, "eval_samples": 50, "validation_samples": 200, "test_samples": 200}


def history_rows(run_dir) -> int:
    path = run_dir / "history.csv"
    return max(0, len(path.read_text().splitlines()) - 1) if path.exists() else 0


@pytest.mark.slow  # the default suite's time (docs/performance.md)
def test_fit_interrupted_by_a_signal_resumes_to_the_same_epoch_count(tmp_path):
    run_dir = tmp_path / "run"
    options = [part for key, value in SMALL_ADDER.items() for part in ("-o", f"{key}={value}")]
    command = cli_command("fit", "adder", "--out", str(run_dir), "--quiet", *options)
    # A shell starting a job in the background (as CI may run us) sets SIGINT to "ignore", and a
    # child inherits that: restore the default so the fit meets Ctrl-C as a person's terminal sends it.
    restore_ctrl_c = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=restore_ctrl_c)
    deadline = time.time() + 300
    while history_rows(run_dir) < 2 and child.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert child.poll() is None, "the fit ended before it could be interrupted"
    child.send_signal(signal.SIGINT)  # Ctrl-C, mid-fit
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    assert not (run_dir / "metrics.json").exists()  # not reported as done
    finished_before = history_rows(run_dir)
    assert 2 <= finished_before < 6
    assert runs.completed_epochs(run_dir) == finished_before  # stopped between epochs' ends, never inside one

    refused = subprocess.run(command, capture_output=True, text=True)  # without --resume: refused, run kept
    assert refused.returncode == 2 and "unfinished run" in refused.stderr
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs_run"] == 6
    epochs = [line.split(",")[0] for line in (run_dir / "history.csv").read_text().splitlines()[1:]]
    assert epochs == [str(n) for n in range(6)]  # each epoch once: resumed after the last finished one


@pytest.fixture
def python_ctrl_c_handling():
    """Python's own SIGINT handler and SIGINT not blocked, as in the CLI's process (code run earlier in
    this test process may have changed either)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    yield
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    signal.signal(signal.SIGINT, previous)


def press_ctrl_c():
    signal.raise_signal(signal.SIGINT)  # to this thread (os.kill may hand it to any thread of the process)
    time.sleep(0.01)


def test_ctrl_c_during_a_fit_waits_for_the_next_step_and_a_second_one_stops_at_once(python_ctrl_c_handling):
    ctrl_c = callbacks.StopOnCtrlC()
    with ctrl_c.handling_ctrl_c():
        press_ctrl_c()  # only a request
        assert ctrl_c.requested, (signal.getsignal(signal.SIGINT), signal.pthread_sigmask(signal.SIG_BLOCK, []))
        with pytest.raises(KeyboardInterrupt):
            ctrl_c.on_train_batch_end(3, {})  # where the fit stops
        with pytest.raises(KeyboardInterrupt):
            press_ctrl_c()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Python's own handling is back
    idle = callbacks.StopOnCtrlC()
    idle.on_epoch_begin(0)  # nothing requested: the fit goes on


def test_two_fits_with_one_seed_agree_exactly(tmp_path):
    adder = get_task("adder")
    config = adder.make_config({**SMALL_ADDER, "epochs": 2, "steps_per_epoch": 40, "seed": 5})
    first = fitting.fit(config, tmp_path / "first", verbose=0, log=lambda *_: None, lengths=[3, 12])
    second = fitting.fit(config, tmp_path / "second", verbose=0, log=lambda *_: None, lengths=[3, 12])
    assert first["test"] == second["test"] and first["by_length"] == second["by_length"]
    assert (tmp_path / "first" / "history.csv").read_text() == (tmp_path / "second" / "history.csv").read_text()
    other = fitting.fit({**config, "seed": 6}, tmp_path / "other", verbose=0, log=lambda *_: None, lengths=[3])
    assert other["test"]["loss"] != first["test"]["loss"]  # the seed matters
