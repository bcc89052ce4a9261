"""The same fit on every backend: each in its own process, since Keras fixes the backend at import."""

import json

import pytest
from conftest import BACKEND, run_cli

from kerasrnn.backend import backend_installed, select_backend
from kerasrnn.errors import UserError


# tensorflow: tests/test_adder_training.py; torch under -m slow for time (its fused layers' fits and
# parity: tests/test_torch_kernels.py).
@pytest.mark.parametrize("backend", ["jax", pytest.param("torch", marks=pytest.mark.slow)])
def test_adder_fits_on_each_backend(backend, tmp_path, cli_here):
    # Trains on 10-bit sums (a third of the default's time steps) to keep the default suite short; seed 0
    # still adds exactly at length 20 on every backend.
    if not backend_installed(backend):
        pytest.skip(f"{backend} is not installed (pip install 'kerasrnn[{backend}]')")
    run_dir = tmp_path / backend
    done = run_cli(
        "fit", "adder", "--backend", backend, "-o", "eval_samples=100", "-o", "train_length=10", "--out", str(run_dir), "--quiet",
        env={"KERAS_BACKEND": "tensorflow"},  # --backend must win over the environment
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"backend {backend}, device" in done.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["backend"] == backend and metrics["device"].startswith(("CPU", "GPU"))
    assert metrics["by_length"]["20"]["exact_accuracy"] == 1.0
    if backend == "jax":  # a run trained elsewhere exports through TensorFlow, and still adds
        command = cli_here if BACKEND == "tensorflow" else run_cli  # exports are TensorFlow's: in this process if it is
        done = command("export", str(run_dir), "--format", "tflite", "--json")
        assert done.returncode == 0, done.stderr
        exported = json.loads(done.stdout)
        assert exported["config"]["backend"] == "jax" and exported["parity"]["max_abs_difference"] <= 1e-5
        done = command("predict", exported["artifact_path"], "1" * 40, "1" * 40, "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["sum"] == "1" * 40 + "0"


def test_a_second_backend_in_one_process_is_refused():
    import keras

    other = "jax" if keras.backend.backend() != "jax" else "torch"
    with pytest.raises(UserError, match="already running"):
        select_backend(other)
