"""`kerasrnn inspect`: states and gates recomputed from the weights equal the layers' own outputs; probes find
what a trained network holds and nothing it cannot know; bad requests are one line."""

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import kerasrnn
from kerasrnn.insight import inspection
from kerasrnn.modeling.models import build_model
from kerasrnn.modeling.spec import RecurrentSpec

ROOT = Path(__file__).resolve().parents[1]
PARITY_SCRIPT = Path(__file__).with_name("inspection_parity.py")
BODIES = [
    ("rnn", 1, False),
    ("lstm", 1, False),
    ("gru", 1, False),
    ("lstm", 2, False),
    ("gru", 2, True),
    ("lstm", 1, True),
    ("rnn", 2, True),
]


def body_model(cell: str, layers: int, bidirectional: bool, return_sequences: bool, seed: int = 0):
    keras.utils.set_random_seed(seed)
    spec = RecurrentSpec(cell, 6, layers, bidirectional, 0.0, 0.0, False)
    return build_model("body", (None, 3), spec, lambda features: features, return_sequences=return_sequences)


def layer_outputs_from_traces(layer, traces: list, return_sequences: bool) -> np.ndarray:
    """What the Keras layer outputs, assembled from the traces: every step, or the last (a backward
    direction's last step is input position 0), directions concatenated."""
    picked = [trace for trace in traces if trace.name.split(" ")[0] == layer.name]
    if return_sequences:
        return np.concatenate([trace.hidden for trace in picked], axis=-1)
    ends = [trace.hidden[:, 0] if trace.name.endswith("backward") else trace.hidden[:, -1] for trace in picked]
    return np.concatenate(ends, axis=-1)


@pytest.mark.slow  # the default suite's time
@pytest.mark.parametrize("cell, layers, bidirectional", BODIES)
def test_the_state_probed_at_a_step_has_read_that_step_and_nothing_after(cell, layers, bidirectional):
    """states_by_step at step t: unchanged when the steps after t change, changed when step t does; for a model
    reading forward only, the states as traced."""
    tracer = inspection.Tracer(body_model(cell, layers, bidirectional, return_sequences=False))
    x = np.random.default_rng(2).normal(size=(4, 6, 3)).astype("float32")
    states = inspection.states_by_step(tracer, x)
    assert states.shape[:2] == (4, 6)
    for t in range(6):
        changed = x.copy()
        changed[:, t:] += 1.0
        again = inspection.states_by_step(tracer, changed)
        np.testing.assert_allclose(again[:, :t], states[:, :t], atol=1e-6)
        assert np.abs(again[:, t] - states[:, t]).max() > 1e-3
    if not bidirectional:
        np.testing.assert_allclose(states, np.concatenate([trace.state() for trace in tracer.trace(x)], axis=-1))


@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("cell, layers, bidirectional", BODIES)
def test_recomputed_states_equal_the_layers_own_outputs(cell, layers, bidirectional, return_sequences):
    model = body_model(cell, layers, bidirectional, return_sequences)
    x = np.random.default_rng(1).normal(size=(5, 7, 3)).astype("float32")
    traces = inspection.trace_model(model, x)
    assert len(traces) == layers * (2 if bidirectional else 1)
    for layer in inspection.recurrent_layers(model):
        own = np.asarray(keras.Model(model.inputs, layer.output).predict(x, verbose=0))
        recomputed = layer_outputs_from_traces(layer, traces, layer.return_sequences)
        np.testing.assert_allclose(recomputed, own, atol=1e-5)
    expected_gates = {"lstm": {"input gate", "forget gate", "output gate", "cell state"}, "gru": {"update gate", "reset gate"}}
    assert all(set(trace.gates) == expected_gates.get(cell, set()) for trace in traces)
    for trace in traces:
        for name, values in trace.gates.items():
            if name != "cell state":
                assert values.min() >= 0 and values.max() <= 1  # gates are sigmoids


@pytest.mark.parametrize("backend", [pytest.param("jax", marks=pytest.mark.slow), "torch"])
def test_recomputed_states_equal_the_layers_own_outputs_on_the_other_backends(backend):
    """On torch the layers run PyTorch's fused kernels; the recomputation is keras.ops on every backend."""
    pytest.importorskip(backend)
    done = subprocess.run(
        [sys.executable, str(PARITY_SCRIPT)], capture_output=True, text=True, timeout=600,
        env={**__import__("os").environ, "KERAS_BACKEND": backend},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    differences = json.loads(done.stdout.strip().splitlines()[-1])
    assert differences["backend"] == backend
    assert max(differences["largest"].values()) < 1e-5, differences


@pytest.fixture(scope="module")
def adder_run(tmp_path_factory):
    return kerasrnn.fit(
        "adder", out=tmp_path_factory.mktemp("inspect") / "adder", verbose=0, log=lambda line: None,
        train_length=10, eval_samples=100, validation_samples=200, test_samples=200, seed=3,
    )  # fmt: skip


def test_a_trained_adder_holds_its_carry_at_every_step_and_the_figures_show_it(adder_run, tmp_path):
    assert adder_run.metrics["test"]["accuracy"] > 0.95  # it learned to add
    found = adder_run.inspect(length=24, out=tmp_path / "figures")
    carry = found["probes"]["carry"]
    assert len(carry["by_step"]) == 25 and carry["fit_sequences"] == carry["scored_sequences"] == 1000
    assert min(carry["by_step"]) >= 0.97, carry["by_step"]  # past its 10 training bits too
    assert min(carry["chance_by_step"][:-1]) < 0.8  # the carry is not a constant a probe could guess
    names = {Path(path).name for path in found["figures"]}
    assert names == {"states.png", "gates.png", "answers.png", "probes.png"}
    assert all(Path(path).parent == tmp_path / "figures" and Path(path).stat().st_size > 5000 for path in found["figures"])
    [example] = found["examples"]
    assert len(example["layers"]["lstm_1"]["hidden"]) == 25 and len(example["layers"]["lstm_1"]["hidden"][0]) == 10
    assert set(example["layers"]["lstm_1"]) == {"hidden", "input gate", "forget gate", "output gate", "cell state"}


def test_given_inputs_are_shown_step_by_step_with_the_answer_at_each(adder_run, cli_here):
    done = cli_here("inspect", str(adder_run.path), "1011", "110", "--json")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    [example] = found["examples"]
    assert example["input"] == "1011 110" and found["steps"] == 5
    # LSB first: 1011 + 110 = 10001; the output at each step is that step's sum bit.
    bits = [int(step[0] > 0.5) for step in example["answers_by_step"]]
    assert bits == [1, 0, 0, 0, 1]
    assert all(Path(path).parent == adder_run.path / "inspect" for path in found["figures"])
    text = cli_here("inspect", str(adder_run.path), "--length", "12")
    assert text.returncode == 0 and "probe carry" in text.stdout and "figure: " in text.stdout


def test_a_probe_cannot_read_what_the_network_has_not_seen_yet(tmp_path):
    """Recall's digit at position K is unknowable before step K: any network's probe is near chance there."""
    run = kerasrnn.fit(
        "recall", out=tmp_path / "recall", verbose=0, log=lambda line: None, cell="lstm", units=10, epochs=1,
        steps_per_epoch=5, validation_samples=100, test_samples=100, eval_samples=50, max_eval_length=10, index=3, min_length=4,
    )  # fmt: skip
    kth = run.inspect(length=8, out=tmp_path / "figures")["probes"]["kth_digit"]
    assert len(kth["by_step"]) == 8
    assert max(kth["by_step"][:3]) <= 0.2, kth["by_step"]  # ten digits: chance is 0.1
    assert kth["by_step"][3] >= 0.5  # the step that reads it: even a barely trained state holds the input


@pytest.mark.slow  # the default suite's time (docs/performance.md)
def test_what_cannot_be_inspected_says_so_in_one_line(adder_run, tmp_path, cli_here):
    tflite = adder_run.export("tflite", out=tmp_path / "adder.tflite")
    cases = [
        ([str(tflite)], "is a tflite artifact, which runs the model but cannot show its hidden states"),
        ([str(adder_run.path), "101", "1", "--length", "5"], "--length applies to generated examples"),
        ([str(adder_run.path), "--length", "0"], "--length is the bits of each number, >= 1, got 0"),
        ([str(adder_run.path), "12", "1"], "not a binary number"),
        ([str(tmp_path / "missing")], "no such run directory"),
    ]
    for args, message in cases:
        done = cli_here("inspect", *args)
        assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1, (args, done.stderr)


def test_a_keras_file_can_be_inspected_like_its_run(adder_run, tmp_path):
    artifact = adder_run.export("keras", out=tmp_path / "adder.keras")
    found = kerasrnn.load(artifact).inspect(["1011", "110"])
    assert all(Path(path).parent == tmp_path / "adder-inspect" for path in found["figures"])
    again = adder_run.inspect(["1011", "110"], out=tmp_path / "run-figures")
    assert found["examples"] == again["examples"]
