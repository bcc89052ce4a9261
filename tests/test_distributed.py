"""Data-parallel fits: each in processes of their own, since device counts are fixed when a backend starts."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_command, run_cli, run_cli_here

from kerasrnn import runs
from kerasrnn.backend import backend_installed
from kerasrnn.errors import UserError
from kerasrnn.serving.server import free_port
from kerasrnn.training import distribution

TESTS = Path(__file__).parent
# A short adder fit: enough steps to move every weight, few enough for the default suite.
SHORT_ADDER = ["-o", "steps_per_epoch=12", "--epochs", "2", "-o", "train_length=4", "-o", "validation_samples=200",
               "-o", "test_samples=100", "-o", "eval_samples=20", "--quiet"]  # fmt: skip


def needs(backend: str):
    if not backend_installed(backend):
        pytest.skip(f"{backend} is not installed (pip install 'kerasrnn[{backend}]')")


@pytest.mark.slow  # the default suite's time (docs/performance.md)
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_one_step_on_two_devices_equals_one_step_on_one(backend):
    needs(backend)
    done = subprocess.run(
        [sys.executable, str(TESTS / "distributed_step.py"), backend], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for name, result in json.loads(done.stdout.splitlines()[-1]).items():
        assert result["start_difference"] == 0.0, name
        assert result["step_size"] > 1e-3, name  # the step moved the weights: their equality means something
        assert result["step_difference"] <= 1e-5, (name, result)


def history(run_dir: Path) -> np.ndarray:
    """history.csv as epochs x columns (the epoch number left out)."""
    columns = runs.read_history(run_dir)
    return np.array([columns[key] for key in sorted(columns) if key != "epoch"]).T


def jax_fit_on_two_devices(run_dir: Path) -> dict:
    done = run_cli("fit", "adder", "--backend", "jax", "--devices", "2", "--out", str(run_dir), *SHORT_ADDER)
    assert done.returncode == 0, done.stderr
    assert "2 logical CPU devices" in done.stdout and "not a speed-up" in done.stdout
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow
def test_jax_fit_on_two_devices_records_its_distribution(tmp_path):
    needs("jax")
    metrics = jax_fit_on_two_devices(tmp_path / "two-devices")
    assert metrics["distribution"] == {
        "strategy": "DataParallel", "devices": ["cpu:0", "cpu:1"], "processes": 1, "logical_cpu_devices": True
    }  # fmt: skip
    assert history(tmp_path / "two-devices").shape[0] == 2  # both epochs ran


@pytest.mark.slow  # three processes at once on 2 cores: about a minute
def test_two_jax_processes_train_as_two_devices_in_one(tmp_path):
    # A fit by 2 JAX processes on 127.0.0.1 with a device each and a fit on 2 devices in one process: the
    # same seed and global batch give the same epochs (losses, validation) to float rounding (and one step
    # on 2 devices is one step on 1: test_one_step_on_two_devices_equals_one_step_on_one).
    needs("jax")
    two = tmp_path / "two-devices"
    one_process = jax_fit_on_two_devices(two)
    processes = tmp_path / "two-processes"
    port = free_port()
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    children = [
        subprocess.Popen(
            cli_command(
                "fit",
                "adder",
                "--out",
                str(processes),
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(index),
                *SHORT_ADDER,
            ),  # fmt: skip
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )  # fmt: skip
        for index in (0, 1)
    ]
    outputs = [child.communicate(timeout=600) for child in children]
    assert [child.returncode for child in children] == [0, 0], [err[-1500:] for _, err in outputs]
    assert "process 0 writes the run" in outputs[1][0]
    metrics = json.loads((processes / "metrics.json").read_text())  # written last: the run is complete
    assert metrics["distribution"]["processes"] == 2 and len(metrics["distribution"]["devices"]) == 2
    assert not metrics["distribution"]["logical_cpu_devices"]  # one device per process: each its own CPU
    assert (processes / "model.keras").is_file()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["two-devices", "two-processes"]  # no stray folders

    np.testing.assert_allclose(history(processes), history(two), rtol=1e-4, atol=1e-6)
    assert metrics["test"]["loss"] == pytest.approx(one_process["test"]["loss"], rel=1e-4)


@pytest.mark.slow
def test_tensorflow_fit_on_two_devices_records_its_strategy(tmp_path, capfd):
    run_dir = tmp_path / "run"
    # 201 validation examples: the uneven last batch is cut to what 2 devices share.
    done = run_cli("fit", "adder", "--backend", "tensorflow", "--devices", "2", "--out", str(run_dir), *SHORT_ADDER,
                   "-o", "validation_samples=201")  # fmt: skip
    assert done.returncode == 0, done.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["distribution"]["strategy"] == "MirroredStrategy"
    assert metrics["distribution"]["devices"] == ["/device:CPU:0", "/device:CPU:1"]
    # Everything after the fit runs on one device, as after any other fit (here: this process's backend).
    status, out, err = run_cli_here(capfd, "evaluate", str(run_dir), "--lengths", "3", "--json")
    assert status == 0, err
    assert json.loads(out)["test"]["loss"] == pytest.approx(metrics["test"]["loss"], rel=1e-5)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--devices", "2", "--batch-size", "63"], "--batch-size 63 does not split over 2 devices"),
        (
            ["--devices", "2", "--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "0", "--batch-size", "66"],
            "does not split over 4 devices",
        ),  # fmt: skip
        (["--devices", "0"], "--devices takes a positive number or 'all'"),
        (
            ["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "0", "--backend", "tensorflow"],
            "MultiWorkerMirroredStrategy",
        ),  # fmt: skip
        (["--coordinator", "nowhere", "--num-processes", "2", "--process-id", "0"], "--coordinator takes HOST:PORT"),
        (["--num-processes", "2"], "needs all of --coordinator"),
    ],
)
def test_bad_distribution_options_are_refused_before_anything_starts(arguments, message, tmp_path, capfd):
    run_dir = tmp_path / "run"
    status, _, err = run_cli_here(capfd, "fit", "adder", "--out", str(run_dir), *arguments, *SHORT_ADDER)
    assert status != 0 and message in err and len(err.strip().splitlines()) == 1, err
    assert not run_dir.exists()


def test_torch_is_refused_in_one_line():
    with pytest.raises(UserError, match="need backend='tensorflow' or jax"):  # in Python, the argument's name
        distribution.start_devices("torch", 2)
    distribution.start_devices("torch", 1)  # one device: nothing to start


def test_parsing_devices_and_clusters():
    assert distribution.parse_devices("all") == "all" and distribution.parse_devices(" 3 ") == 3
    assert distribution.parse_devices(None) == 1
    for bad in ("two", "-1", "1.5"):
        with pytest.raises(UserError, match="positive number"):
            distribution.parse_devices(bad)
    assert distribution.parse_cluster(None, None, None) is None
    assert distribution.parse_cluster("host:80", 3, 2) == distribution.Cluster("host:80", 3, 2)
    with pytest.raises(UserError, match=r"0\.\.2"):
        distribution.parse_cluster("host:80", 3, 3)
    with pytest.raises(UserError, match="HOST:PORT"):
        distribution.parse_cluster("host:99999", 2, 0)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_default_adder_on_two_devices_adds_exactly_at_every_length(backend, tmp_path):
    needs(backend)
    run_dir = tmp_path / backend
    done = run_cli("fit", "adder", "--backend", backend, "--devices", "2", "--out", str(run_dir), "--quiet")
    assert done.returncode == 0, done.stderr
    done = run_cli("evaluate", str(run_dir), "--lengths", "1-64", "--json")
    by_length = json.loads(done.stdout)["by_length"]
    assert sorted(map(int, by_length)) == list(range(1, 65))
    assert all(scores["exact_accuracy"] == 1.0 for scores in by_length.values()), by_length
