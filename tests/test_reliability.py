"""Interrupted fits resume to the right epoch count; one seed gives one result."""

import json
import signal
import subprocess
import sys
import time

from kerasrnn import training
from kerasrnn.tasks import get_task

SMALL_ADDER = {"epochs": 12, "steps_per_epoch": 60, "eval_samples": 50, "validation_samples": 200, "test_samples": 200}


def history_rows(run_dir) -> int:
    path = run_dir / "history.csv"
    return max(0, len(path.read_text().splitlines()) - 1) if path.exists() else 0


def test_fit_interrupted_by_a_signal_resumes_to_the_same_epoch_count(tmp_path):
    run_dir = tmp_path / "run"
    options = [part for key, value in SMALL_ADDER.items() for part in ("-o", f"{key}={value}")]
    command = [sys.executable, "-m", "kerasrnn_cli.main", "fit", "adder", "--out", str(run_dir), "--quiet", *options]
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
    assert 2 <= finished_before < 12
    assert (run_dir / "checkpoints" / "backup").is_dir()

    refused = subprocess.run(command, capture_output=True, text=True)  # without --resume: refused, run kept
    assert refused.returncode == 2 and "unfinished run" in refused.stderr
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs_run"] == 12
    epochs = [line.split(",")[0] for line in (run_dir / "history.csv").read_text().splitlines()[1:]]
    assert epochs == [str(n) for n in range(12)]  # each epoch once: resumed after the last finished one


def test_two_fits_with_one_seed_agree_exactly(tmp_path):
    adder = get_task("adder")
    config = adder.make_config({**SMALL_ADDER, "epochs": 2, "steps_per_epoch": 40, "seed": 5})
    first = training.fit(config, tmp_path / "first", verbose=0, log=lambda *_: None, lengths=[3, 12])
    second = training.fit(config, tmp_path / "second", verbose=0, log=lambda *_: None, lengths=[3, 12])
    assert first["test"] == second["test"] and first["by_length"] == second["by_length"]
    assert (tmp_path / "first" / "history.csv").read_text() == (tmp_path / "second" / "history.csv").read_text()
    other = training.fit({**config, "seed": 6}, tmp_path / "other", verbose=0, log=lambda *_: None, lengths=[3])
    assert other["test"]["loss"] != first["test"]["loss"]  # the seed matters
