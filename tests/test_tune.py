"""`kerasrnn tune`: KerasTuner's search over a task's options, each trial a run; alone, and a chief with workers."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import BACKEND, run_cli

from kerasrnn import runs
from kerasrnn.backend import cli_command
from kerasrnn.serving.server import free_port

QUICK = ["-o", "steps_per_epoch=20", "--epochs", "2", "-o", "train_length=6", "-o", "eval_samples=50",
         "-o", "test_samples=200", "-o", "validation_samples=200"]  # fmt: skip


@pytest.mark.slow  # the default suite's time (docs/performance.md)
def test_a_search_starts_from_the_defaults_and_every_trial_is_a_run(tmp_path):
    out = tmp_path / "search"
    done = run_cli("tune", "adder", *QUICK, "--max-trials", "3", "--search", "lr,batch_size", "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    document = json.loads(done.stdout)
    assert [trial["id"] for trial in document["trials"]] == ["0", "1", "2"]
    assert document["trials"][0]["settings"] == {"lr": 1e-2, "batch_size": 64}  # the toolkit's adder defaults
    assert len({json.dumps(trial["settings"], sort_keys=True) for trial in document["trials"]}) == 3
    for trial in document["trials"]:
        config = runs.read_config(Path(trial["run"]))
        assert {key: config[key] for key in trial["settings"]} == trial["settings"]  # the run trained what was asked
        metrics = runs.read_metrics(Path(trial["run"]))
        assert metrics["validation"]["exact_accuracy"] == pytest.approx(trial["metric"])  # chosen on validation sums
        assert metrics["objective"] == {"name": "exact_accuracy", "value": pytest.approx(trial["metric"])}
    best = document["best"]
    assert best["metric"] == max(trial["metric"] for trial in document["trials"])
    assert document["objective"] == "validation exact accuracy" and document["chosen_on"] == "validation"
    tested = [trial for trial in document["trials"] if runs.read_metrics(Path(trial["run"]))["test"] is not None]
    assert [trial["id"] for trial in tested] == [best["id"]]  # the test set read once, for the chosen trial
    assert best["test"] == runs.read_metrics(Path(best["run"]))["test"]
    assert (out / "best").resolve() == Path(best["run"]).resolve()
    assert run_cli("evaluate", str(out / "best")).returncode == 0  # any command works on a trial
    assert (out / "tune.md").read_text().count("\n") == 2 + 3 and (out / "tune.csv").exists()

    again = run_cli("tune", "adder", *QUICK, "--max-trials", "4", "--search", "lr,batch_size", "--out", str(out))
    assert again.returncode == 2 and "pass --resume" in again.stderr
    resumed = run_cli("tune", "adder", *QUICK, "--max-trials", "4", "--search", "lr,batch_size", "--out", str(out),
                      "--resume", "--json")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    trials = json.loads(resumed.stdout)["trials"]
    assert len(trials) == 4 and trials[:3] == document["trials"]  # the finished trials kept, one more run


@pytest.mark.slow
def test_hyperband_gives_the_best_of_a_round_more_epochs(tmp_path):
    """KerasTuner's Hyperband over at most 3 epochs (factor 3): a round of three 1-epoch trials, the best of them
    again with 3 epochs, then a bracket of two 3-epoch trials; every trial a fit of the epochs it was given."""
    out = tmp_path / "search"
    done = run_cli("tune", "adder", *QUICK, "--epochs", "3", "--max-trials", "6", "--search", "lr,batch_size",
                   "--algorithm", "hyperband", "--out", str(out), "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    trials = json.loads(done.stdout)["trials"]
    assert [trial["settings"]["epochs"] for trial in trials] == [1, 1, 1, 3, 3, 3]
    assert {key: trials[0]["settings"][key] for key in ("lr", "batch_size")} == {"lr": 1e-2, "batch_size": 64}
    first_round = max(trials[:3], key=lambda trial: trial["metric"])
    assert {**first_round["settings"], "epochs": 3} == trials[3]["settings"]  # the round's best, promoted
    for trial in trials:
        assert runs.read_metrics(Path(trial["run"]))["epochs_run"] == trial["settings"]["epochs"]
    assert "| epochs |" in (out / "tune.md").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--search", "lr,units_x"], "no search space for 'units_x'"),
        (["--search", "readout_units"], "'readout_units' is not an option of adder"),
        (["--algorithm", "grid"], "--algorithm is one of random, bayesian, hyperband"),
        (["--algorithm", "hyperband", "--search", "lr,epochs"], "hyperband chooses each trial's epochs"),
        (["--max-trials", "0"], "--max-trials must be a whole number >= 1"),
        (["--worker", "127.0.0.1:9"], "--worker needs --worker-id"),
        (["--chief", "nowhere"], "--chief takes HOST:PORT"),
    ],
)
def test_bad_search_options_are_one_line(args, message, tmp_path):
    done = run_cli("tune", "adder", *QUICK, "--out", str(tmp_path / "s"), *args)
    assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1, done.stderr


def start(args: list[str], log: Path) -> subprocess.Popen:
    handle = log.open("w")
    return subprocess.Popen(
        cli_command(*args), stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, "KERAS_BACKEND": BACKEND}
    )


@pytest.mark.slow  # three processes and the chief's 20 s exit poll (KerasTuner's): about a minute
def test_a_chief_and_two_workers_run_every_trial_once_even_when_a_worker_dies(tmp_path):
    out, address = tmp_path / "search", f"127.0.0.1:{free_port()}"
    common = ["tune", "adder", *QUICK, "--max-trials", "6", "--out", str(out)]
    chief = start([*common, "--chief", address], tmp_path / "chief.log")
    time.sleep(3)
    first = start([*common, "--worker", address, "--worker-id", "worker-1"], tmp_path / "worker-1.log")
    second = start([*common, "--worker", address, "--worker-id", "worker-2"], tmp_path / "worker-2.log")
    deadline = time.monotonic() + 300
    while "-> " not in (tmp_path / "worker-1.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.2)  # worker-1 has its first trial
    time.sleep(1.0)
    first.send_signal(signal.SIGKILL)  # mid-trial
    first.wait(timeout=60)
    again = start([*common, "--worker", address, "--worker-id", "worker-1"], tmp_path / "worker-1-again.log")
    try:
        assert again.wait(timeout=400) == 0 and second.wait(timeout=400) == 0, (tmp_path / "worker-1-again.log").read_text()
        assert chief.wait(timeout=120) == 0, (tmp_path / "chief.log").read_text()[-2000:]
    finally:
        for process in (chief, second, again):
            if process.poll() is None:
                process.kill()
    document = json.loads((out / "tune.json").read_text())
    assert sorted(trial["id"] for trial in document["trials"]) == [str(n) for n in range(6)]
    assert all(trial["status"] == "COMPLETED" and trial["metric"] is not None for trial in document["trials"])
    for trial in document["trials"]:
        assert runs.read_metrics(Path(trial["run"]))["epochs_run"] == 2  # the taken-over trial resumed, not doubled
    logs = "".join((tmp_path / name).read_text() for name in ("worker-1.log", "worker-2.log", "worker-1-again.log"))
    started = [line.split()[3] for line in logs.splitlines() if line.startswith("kerasrnn tune: trial") and "->" in line]
    assert sorted(set(started)) == [str(n) for n in range(6)]
    assert run_cli("evaluate", str(out / "best")).returncode == 0


@pytest.mark.slow  # three processes and the chief's 20 s exit poll (KerasTuner's)
def test_a_sweep_spreads_over_workers_and_its_table_is_the_one_a_sweep_alone_writes(tmp_path):
    out, address = tmp_path / "sweep", f"127.0.0.1:{free_port()}"
    common = ["sweep", "adder", "--cells", "rnn,gru", "--units", "2,3", *QUICK, "--out", str(out), "-q"]
    chief = start([*common, "--chief", address], tmp_path / "chief.log")
    time.sleep(3)
    workers = [start([*common, "--worker", address, "--worker-id", f"w{n}"], tmp_path / f"w{n}.log") for n in (1, 2)]
    try:
        for number, worker in enumerate(workers, 1):
            assert worker.wait(timeout=400) == 0, (tmp_path / f"w{number}.log").read_text()[-2000:]
        assert chief.wait(timeout=120) == 0, (tmp_path / "chief.log").read_text()[-2000:]
    finally:
        for process in (chief, *workers):
            if process.poll() is None:
                process.kill()
    logs = [(tmp_path / f"w{n}.log").read_text() for n in (1, 2)]
    fitted = [line.split()[3].rstrip(":") for log in logs for line in log.splitlines() if line.endswith(": fitting")]
    assert sorted(fitted) == ["gru-u2-l1-uni-mse", "gru-u3-l1-uni-mse", "rnn-u2-l1-uni-mse", "rnn-u3-l1-uni-mse"]
    assert all(": fitting" in log for log in logs)  # both workers had work
    table = (out / "sweep.md").read_text()
    alone = run_cli(*common)  # the same sweep alone reuses every run and writes the same table
    assert alone.returncode == 0 and alone.stderr.count("reused") == 4 and (out / "sweep.md").read_text() == table
