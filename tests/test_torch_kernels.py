"""PyTorch's fused LSTM and GRU kernels behind the toolkit's layers: parity with Keras, fallbacks, portable runs."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import BACKEND, run_cli

from kerasrnn.backend import backend_installed

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.skipif(not backend_installed("torch"), reason="torch is not installed (pip install 'kerasrnn[torch]')")


@pytest.fixture(scope="module")
def parity():
    import subprocess

    done = subprocess.run([sys.executable, str(HERE / "torch_kernel_parity.py")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("case", ["last", "sequences", "backwards", "bidirectional", "stacked", "dropout"])
def test_fused_layers_match_keras_loop_in_outputs_states_and_gradients(parity, cell, case):
    result = parity[f"{cell} {case}"]
    assert result["fused_calls"] == (2 if case in ("bidirectional", "stacked") else 1)  # the kernel did run
    assert result["outputs"] < 1e-5 and result["gradients"] < 1e-5


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize(
    "case",
    ["last", "sequences", "backwards", "backwards sequences", "zero outputs", "zero outputs last", "dropout", "states",
     "bidirectional"],
)  # fmt: skip
def test_masked_layers_run_packed_and_match_keras_masked_loop(parity, cell, case):
    """Right-padded sequences of mixed lengths: each through its own steps (the packed kernel), and every output
    (the masked steps' too, as Keras fills them), state and gradient as Keras' masked loop computes them."""
    result = parity[f"{cell} masked {case}"]
    assert result["packed_calls"] == (2 if case == "bidirectional" else 1)
    assert result["outputs"] < 1e-5 and result["gradients"] < 1e-5


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("backwards", [False, True])
def test_weight_mapping_is_exact_in_float64(parity, cell, backwards):
    result = parity[f"{cell} float64 backwards={backwards}"]
    assert result["outputs"] < 1e-10  # against the cell's equations in Keras' layout
    assert result["keras_loop"] < 1e-6  # Keras' own float64 loop multiplies in float32 on torch


def test_what_the_kernel_cannot_do_stays_with_keras(parity):
    """Recurrent dropout, unroll, other activations, use_cudnn=False, masks, float64, GRU reset_after=False."""
    assert parity["fallbacks"] == {"lstm_calls": 0, "gru_calls": 0}


def test_a_run_fitted_with_the_fused_layers_works_on_every_backend(tmp_path):
    """Fitted on torch (fused kernels), the run's model.keras evaluates and predicts on this process's backend, alike."""
    if BACKEND == "torch":
        pytest.skip("this process runs torch itself")
    run_dir = tmp_path / "recall-torch"
    small = ["-o", "steps_per_epoch=20", "-o", "eval_samples=100", "-o", "max_eval_length=12", "--epochs", "2"]
    done = run_cli(
        "fit", "recall", "--cell", "gru", "--units", "6", "--backend", "torch", *small, "--out", str(run_dir), "--quiet"
    )
    assert done.returncode == 0, done.stderr
    on_torch = run_cli("predict", str(run_dir), "3", "1", "4", "1", "5", "--backend", "torch", "--json")
    assert on_torch.returncode == 0, on_torch.stderr

    import kerasrnn

    run = kerasrnn.load(run_dir)
    here = run.predict(["3", "1", "4", "1", "5"])
    np.testing.assert_allclose(here["probabilities"], json.loads(on_torch.stdout)["probabilities"], atol=1e-5)
    evaluated = run.evaluate(lengths="3-5")
    assert evaluated["config"]["backend"] == "torch" and set(evaluated["by_length"]) == {"3", "4", "5"}


@pytest.mark.slow  # the default suite's time; a fused run on every backend stays in it
def test_a_run_fitted_here_predicts_alike_on_torch(tmp_path):
    """The other way round: fitted on this process's backend, the same model runs PyTorch's kernels on torch."""
    if BACKEND == "torch":
        pytest.skip("this process runs torch itself")
    import kerasrnn

    options = {"steps_per_epoch": 20, "eval_samples": 100, "max_eval_length": 12, "epochs": 2}
    run = kerasrnn.fit("recall", cell="lstm", units=6, out=tmp_path / "recall-here", verbose=0, log=lambda line: None, **options)
    on_torch = run_cli("predict", str(run.path), "2", "7", "1", "8", "2", "8", "--backend", "torch", "--json")
    assert on_torch.returncode == 0, on_torch.stderr
    here = run.predict(["2", "7", "1", "8", "2", "8"])
    np.testing.assert_allclose(here["probabilities"], json.loads(on_torch.stdout)["probabilities"], atol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("case", ["sequences", "bidirectional"])
def test_kernels_train_in_bfloat16_inside_the_block_and_float32_after(parity, cell, case):
    """precision=bfloat16: the kernel computes in bfloat16 (its rounding shows, about 1e-2), hands back float32
    outputs and gradients, and the same layers compute in float32 once the fit's block is left."""
    if not parity["bfloat16 units"]:
        pytest.skip("this CPU has no bfloat16 units")
    result = parity[f"{cell} {case} bfloat16"]
    layers_run = 2 if case == "bidirectional" else 1
    assert result["precisions"] == ["bfloat16"] * layers_run + ["float32"] * layers_run
    assert result["dtypes"] == ["torch.float32"]
    assert 1e-4 < result["outputs"] < 3e-2 and result["gradients"] < 3e-2
    assert result["outputs_after"] < 1e-5
