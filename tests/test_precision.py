"""Which precision the recurrent kernels train in (kerasrnn.training.precision): the rule, its refusals, a fit in bfloat16."""

import json
import subprocess
import sys
import zipfile

import keras
import pytest
from conftest import BACKEND, run_cli

from kerasrnn.backend import backend_installed
from kerasrnn.errors import UserError
from kerasrnn.tasks import get_task
from kerasrnn.training import precision


def chosen(monkeypatch, backend: str, units_here: bool, **options) -> tuple[str, str]:
    monkeypatch.setattr(keras.backend, "backend", lambda: backend)
    monkeypatch.setattr(precision, "bfloat16_units", lambda: units_here)
    return precision.training_precision(get_task("mnist").make_config(options))


@pytest.mark.parametrize(
    "options,expected",
    [
        ({"cell": "lstm", "units": 128}, "bfloat16"),
        ({"cell": "lstm", "units": 64, "bidirectional": True, "layers": 2}, "bfloat16"),
        ({"cell": "lstm", "units": 32}, "float32"),  # a small layer: bfloat16 measured slower
        ({"cell": "gru", "units": 128}, "bfloat16"),
        ({"cell": "gru", "units": 64}, "float32"),
        ({"cell": "rnn", "units": 128}, "float32"),  # no bfloat16 kernel that pays
        ({"cell": "lstm", "units": 128, "recurrent_dropout": 0.2}, "float32"),  # Keras' own loop runs it
        ({"cell": "lstm", "units": 128, "precision": "float32"}, "float32"),
        ({"cell": "lstm", "units": 8, "precision": "bfloat16"}, "bfloat16"),  # asked for: any size
    ],
)
def test_auto_takes_bfloat16_only_where_it_was_measured_to_pay(monkeypatch, options, expected):
    assert chosen(monkeypatch, "torch", True, **options)[0] == expected


def test_auto_stays_float32_without_bfloat16_units_or_off_torch(monkeypatch):
    assert chosen(monkeypatch, "torch", False, units=128) == (
        "float32",
        "this CPU has no bfloat16 units (or the fit runs on a GPU)",
    )
    precision_used, why = chosen(monkeypatch, "tensorflow", True, units=128)
    assert precision_used == "float32" and "tensorflow backend" in why


@pytest.mark.parametrize(
    "backend,units_here,options,reason",
    [
        ("tensorflow", True, {}, "the tensorflow backend"),
        ("torch", False, {}, "no bfloat16 units"),
        ("torch", True, {"cell": "rnn"}, "the rnn cell"),
        ("torch", True, {"unroll": True}, "recurrent dropout or unroll"),
    ],
)
def test_bfloat16_asked_for_where_it_cannot_run_is_refused_with_the_reason(monkeypatch, backend, units_here, options, reason):
    with pytest.raises(UserError, match=reason):
        chosen(monkeypatch, backend, units_here, precision="bfloat16", **options)


@pytest.mark.skipif(BACKEND == "torch", reason="the refusal is for the other backends")
def test_a_refused_precision_leaves_no_run_behind(tmp_path, cli_here):
    run_dir = tmp_path / "run"
    command = cli_here if BACKEND == "tensorflow" else run_cli  # --backend tensorflow: in this process where it runs
    done = command("fit", "adder", "--backend", "tensorflow", "--out", str(run_dir), "-o", "precision=bfloat16")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: precision bfloat16 cannot run here: the tensorflow backend (bfloat16 kernels are the torch backend's "
        "fused ones); use -o precision=auto or float32"
    ]
    assert not run_dir.exists()  # refused before the run directory was made: a plain retry works


def torch_has_bfloat16_units() -> bool:
    if not backend_installed("torch"):
        return False
    check = "import torch; print(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())"
    return subprocess.run([sys.executable, "-c", check], capture_output=True, text=True).stdout.strip() == "True"


@pytest.mark.skipif(not torch_has_bfloat16_units(), reason="needs torch on a CPU with bfloat16 units")
@pytest.mark.slow
def test_a_fit_in_bfloat16_learns_and_saves_a_model_that_computes_in_float32(tmp_path):
    run_dir = tmp_path / "bf16"
    small = ["--train-length", "6", "--units", "16", "--epochs", "4", "-o", "eval_samples=200", "-o", "precision=bfloat16"]
    done = run_cli("fit", "adder", "--backend", "torch", "--out", str(run_dir), "--quiet", *small)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "recurrent kernels train in bfloat16 (asked for)" in done.stdout + done.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["precision"] == "bfloat16"
    assert metrics["test"]["accuracy"] > 0.97, metrics["test"]  # it learned to add in bfloat16
    with zipfile.ZipFile(run_dir / "model.keras") as saved:
        assert "bfloat16" not in saved.read("config.json").decode()  # float32 layers: exports and serving alike
    # The test scores were computed after the fit, in float32: the TensorFlow backend scores the saved model alike.
    again = run_cli("evaluate", str(run_dir), "--json", env={"KERAS_BACKEND": "tensorflow"})
    assert again.returncode == 0, again.stderr[-2000:]
    assert abs(json.loads(again.stdout)["test"]["accuracy"] - metrics["test"]["accuracy"]) < 0.01
