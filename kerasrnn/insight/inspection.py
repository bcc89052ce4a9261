"""Look inside a trained network: `kerasrnn inspect` and `Run.inspect`.

For a batch of inputs, every recurrent layer's hidden state at every step (each direction of a
bidirectional layer), the gates (LSTM input, forget, output and cell state; GRU update and reset),
and the answer had the sequence ended at each step. The states and gates are recomputed from the
layer's own weights with keras.ops, step by step as Keras' cells compute them, so they run on every
backend; tests/test_inspection.py holds them to the layer's own outputs.

Probes ask whether the state holds what the task says it should: a logistic regression reads a
quantity (the adder's carry, recall's digit at position K, mnist's class) from the state at one step,
fitted on one set of sequences and scored on another, at every step.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from keras import ops

from kerasrnn.errors import UserError, require
from kerasrnn.insight import plots

# Sequences for the probes: half fit the read-out, half score it.
PROBE_SEQUENCES = 2000
# Examples drawn in full (states, gates, answers) when no inputs are given; at most this many inputs drawn.
SHOWN_EXAMPLES = 1
DRAWN_EXAMPLES = 8


@dataclass
class Trace:
    """One recurrent layer in one direction over a batch; arrays are (batch, steps, units), step t being the
    state after reading input position t (a backward direction's states are put back in input order)."""

    name: str
    cell: str
    hidden: np.ndarray
    gates: dict[str, np.ndarray] = field(default_factory=dict)
    backward: bool = False  # a backward direction: its state at step t has read steps t..end

    def state(self) -> np.ndarray:
        """What the layer carries to the next step: h, and the cell state c of an LSTM."""
        return np.concatenate([self.hidden, self.gates["cell state"]], axis=-1) if self.cell == "lstm" else self.hidden


# ---- recomputing the recurrent layers ---------------------------------------------------------
def cell_kind(cell) -> str:
    for kind, cell_class in (("lstm", keras.layers.LSTMCell), ("gru", keras.layers.GRUCell), ("rnn", keras.layers.SimpleRNNCell)):
        if isinstance(cell, cell_class):
            return kind
    raise UserError(f"cannot look inside a {type(cell).__name__}: only SimpleRNN, LSTM and GRU cells")


def recurrent_layers(model) -> list:
    """The model's recurrent layers (RNN or Bidirectional around one), input side first."""
    return [layer for layer in model.layers if isinstance(layer, keras.layers.RNN | keras.layers.Bidirectional)]


def trace_model(model, x: np.ndarray) -> list[Trace]:
    """Every recurrent layer's states and gates for the inputs `x`, in the model's order (forward before backward)."""
    return Tracer(model).trace(x)


class Tracer:
    """`trace(x)` for one model, its layers' inputs computed by one Keras model built once (the server keeps one)."""

    def __init__(self, model):
        self.layers = recurrent_layers(model)
        require(self.layers, "this model has no recurrent layer to look inside")
        self.feeding = keras.Model(model.inputs, [layer.input for layer in self.layers])
        # Whether a state at step t may have read steps after t (a backward direction, or a layer above one).
        self.reads_ahead = any(isinstance(layer, keras.layers.Bidirectional) or layer.go_backwards for layer in self.layers)

    def trace(self, x: np.ndarray) -> list[Trace]:
        inputs = self.feeding.predict_on_batch(np.asarray(x, dtype="float32"))
        inputs = inputs if isinstance(inputs, list | tuple) else [inputs]
        traces = []
        for layer, layer_input in zip(self.layers, inputs):
            layer_input = np.asarray(layer_input)
            if isinstance(layer, keras.layers.Bidirectional):
                traces.append(trace_layer(layer.forward_layer, layer_input, f"{layer.name} forward"))
                traces.append(trace_layer(layer.backward_layer, layer_input, f"{layer.name} backward"))
            else:
                traces.append(trace_layer(layer, layer_input, layer.name))
        return traces


def trace_layer(layer, x: np.ndarray, name: str) -> Trace:
    """One RNN layer's states and gates, as its cell computes them (inference: no dropout)."""
    cell = layer.cell
    kind = cell_kind(cell)
    sequence = np.ascontiguousarray(np.flip(x, axis=1)) if layer.go_backwards else x
    step = {"rnn": simple_rnn_step, "lstm": lstm_step, "gru": gru_step}[kind]
    projected = ops.matmul(ops.convert_to_tensor(sequence, "float32"), cell.kernel)
    state = {"h": ops.zeros((x.shape[0], cell.units)), "c": ops.zeros((x.shape[0], cell.units))}
    recorded: dict[str, list] = {}
    for t in range(sequence.shape[1]):
        state, values = step(cell, projected[:, t], state)
        for key, value in {"hidden": state["h"], **values}.items():
            recorded.setdefault(key, []).append(ops.convert_to_numpy(value))
    arrays = {key: np.stack(values, axis=1) for key, values in recorded.items()}
    if layer.go_backwards:
        arrays = {key: np.ascontiguousarray(np.flip(value, axis=1)) for key, value in arrays.items()}
    hidden = arrays.pop("hidden")
    return Trace(name, kind, hidden, arrays, layer.go_backwards)


def bias_part(cell, index: int | None = None):
    if not cell.use_bias:
        return 0.0
    return cell.bias if index is None else cell.bias[index]


def simple_rnn_step(cell, projected_x, state):
    h = cell.activation(projected_x + bias_part(cell) + ops.matmul(state["h"], cell.recurrent_kernel))
    return {"h": h, "c": state["c"]}, {}


def lstm_step(cell, projected_x, state):
    z = projected_x + ops.matmul(state["h"], cell.recurrent_kernel) + bias_part(cell)
    z_input, z_forget, z_candidate, z_output = ops.split(z, 4, axis=-1)
    input_gate = cell.recurrent_activation(z_input)
    forget_gate = cell.recurrent_activation(z_forget)
    output_gate = cell.recurrent_activation(z_output)
    c = forget_gate * state["c"] + input_gate * cell.activation(z_candidate)
    h = output_gate * cell.activation(c)
    gates = {"input gate": input_gate, "forget gate": forget_gate, "output gate": output_gate, "cell state": c}
    return {"h": h, "c": c}, gates


def gru_step(cell, projected_x, state):
    h_previous = state["h"]
    if cell.reset_after:
        x_part = projected_x + bias_part(cell, 0)
        inner = ops.matmul(h_previous, cell.recurrent_kernel) + bias_part(cell, 1)
    else:
        x_part = projected_x + bias_part(cell)
        inner = ops.matmul(h_previous, cell.recurrent_kernel[:, : 2 * cell.units])
    x_update, x_reset, x_candidate = ops.split(x_part, 3, axis=-1)
    update = cell.recurrent_activation(x_update + inner[:, : cell.units])
    reset = cell.recurrent_activation(x_reset + inner[:, cell.units : 2 * cell.units])
    if cell.reset_after:
        recurrent_candidate = reset * inner[:, 2 * cell.units :]
    else:
        recurrent_candidate = ops.matmul(reset * h_previous, cell.recurrent_kernel[:, 2 * cell.units :])
    candidate = cell.activation(x_candidate + recurrent_candidate)
    h = update * h_previous + (1 - update) * candidate
    return {"h": h, "c": state["c"]}, {"update gate": update, "reset gate": reset}


# ---- the answer at every step --------------------------------------------------------------------
def stepwise_model(model):
    """The same weights, answering after every time step: the last recurrent layer returns sequences.

    None for bidirectional models, whose backward half has read the whole sequence at every step.
    """
    recurrent = recurrent_layers(model)
    if not recurrent or isinstance(recurrent[-1], keras.layers.Bidirectional):
        return None
    last = recurrent[-1]
    if last.return_sequences:
        return model

    def clone(layer):
        if layer is last:
            return layer.__class__.from_config({**layer.get_config(), "return_sequences": True})
        return layer.__class__.from_config(layer.get_config())

    stepwise = keras.models.clone_model(model, clone_function=clone)
    stepwise.set_weights(model.get_weights())
    return stepwise


def answers_by_step(model, x: np.ndarray) -> np.ndarray | None:
    """(batch, steps, outputs): the answer had each sequence ended at each step; None for bidirectional models."""
    stepwise = stepwise_model(model)
    return None if stepwise is None else np.asarray(stepwise.predict(x, verbose=0, batch_size=4096))


# ---- probes ------------------------------------------------------------------------------------------
def states_by_step(tracer: Tracer, x: np.ndarray) -> np.ndarray:
    """(batch, steps, features): every direction's state once it has read steps 1..t of `x` and nothing after.

    A model that reads forward only has them in one trace. A bidirectional one is traced on each prefix: the
    forward direction's last state and the backward direction's state at the first step (it read the prefix
    from its end), so the probe at step t never sees what comes after t."""
    traces = tracer.trace(x)
    if not tracer.reads_ahead:
        return np.concatenate([trace.state() for trace in traces], axis=-1)
    steps = traces[0].hidden.shape[1]
    per_step = math.ceil(x.shape[1] / steps)  # input values a model step reads (a folded series: a row)
    states = []
    for t in range(1, steps + 1):
        prefix = tracer.trace(x[:, : min(t * per_step, x.shape[1])])
        states.append(np.concatenate([trace.state()[:, 0 if trace.backward else -1] for trace in prefix], axis=-1))
    return np.stack(states, axis=1)


def probe_accuracy_by_step(states_fit, targets_fit, states_scored, targets_scored) -> list[float]:
    """At every step, a logistic regression from the state to the target, fitted on one set, its accuracy on
    the other. A step whose fitting targets are all one value predicts that value."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    accuracies = []
    for t in range(states_fit.shape[1]):
        classes = np.unique(targets_fit[:, t])
        if len(classes) == 1:
            predicted = np.full(len(targets_scored), classes[0])
        else:
            probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
            predicted = probe.fit(states_fit[:, t], targets_fit[:, t]).predict(states_scored[:, t])
        accuracies.append(round(float(np.mean(predicted == targets_scored[:, t])), 4))
    return accuracies


def majority_by_step(targets_fit, targets_scored) -> list[float]:
    """What a probe gets by always answering the fitting set's most common value (chance, for the figure)."""
    baseline = []
    for t in range(targets_fit.shape[1]):
        values, counts = np.unique(targets_fit[:, t], return_counts=True)
        baseline.append(round(float(np.mean(targets_scored[:, t] == values[counts.argmax()])), 4))
    return baseline


def run_probes(task, config: dict, tracer: Tracer, length: int | None) -> dict:
    """{probe name: {"what", "by_step", "chance_by_step", "fit_sequences", "scored_sequences"}}; {} for a task
    that declares no probes. The examples are shuffled (seeded) before half fit the read-out and half score it:
    a task's examples in order (a test file sorted by class) would otherwise fit on some classes, score on others.
    The state probed at step t has read steps 1..t only (states_by_step)."""
    if not task.probes:
        return {}
    x, targets = task.inspection_examples(config, PROBE_SEQUENCES, length)
    order = np.random.default_rng(config.get("seed", 0)).permutation(len(x))
    x, targets = x[order], {name: np.asarray(values)[order] for name, values in targets.items()}
    half = len(x) // 2
    states = states_by_step(tracer, x)
    results = {}
    for name, what in task.probes.items():
        values = targets[name]
        results[name] = {
            "what": what,
            "by_step": probe_accuracy_by_step(states[:half], values[:half], states[half:], values[half:]),
            "chance_by_step": majority_by_step(values[:half], values[half:]),
            "fit_sequences": half,
            "scored_sequences": len(x) - half,
        }
    return results


# ---- the whole inspection ------------------------------------------------------------------------
def inspect_model(task, config: dict, model, out_dir: Path, inputs: list[str] | None = None, length: int | None = None) -> dict:
    """States, gates and answers for `inputs` (else generated or test examples), the probes, and figures in
    `out_dir`: the document `kerasrnn inspect --json` prints."""
    if inputs:
        require(length is None, "--length applies to generated examples: leave it out when giving inputs")
        x, _ = task.model_input(config, inputs)
        labels = list(inputs) if task.shows_inputs else [" ".join(inputs)]
    else:
        x, _ = task.inspection_examples(config, SHOWN_EXAMPLES, length)
        labels = [task.describe_inspection_input(x[index]) for index in range(len(x))]
    tracer = Tracer(model)
    traces = tracer.trace(x)
    answers = answers_by_step(model, x)
    probes = run_probes(task, config, tracer, length)
    extra = task.inspection_extras(model, config, x)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = [
        *(
            path
            for index in range(min(len(x), DRAWN_EXAMPLES))
            for path in example_figures(task, out_dir, x, traces, answers, labels, index)
        ),
        *([plots.probes_by_step(out_dir, probes, task.name)] if probes else []),
        *task.inspection_figures(out_dir, x, extra, labels),
    ]
    return {
        "task": task.name,
        "steps": int(x.shape[1]),
        "layers": [{"name": trace.name, "cell": trace.cell, "units": int(trace.hidden.shape[-1])} for trace in traces],
        "examples": [example_record(index, label, traces, answers) for index, label in enumerate(labels)],
        "probes": probes,
        **{key: value for key, value in extra.items() if not key.startswith("_")},
        "figures": [str(path) for path in figures],
    }


def example_figures(task, out_dir: Path, x, traces: list[Trace], answers, labels: list[str], index: int) -> list[Path]:
    """States, gates and answers of one example: states.png, ... for the first, states-2.png, ... for the second."""
    suffix = "" if index == 0 else f"-{index + 1}"
    picked = [
        Trace(trace.name, trace.cell, trace.hidden[index : index + 1], {k: v[index : index + 1] for k, v in trace.gates.items()})
        for trace in traces
    ]
    steps = task.step_labels(x[index])
    figures = [plots.hidden_states(out_dir / f"states{suffix}.png", picked, steps, labels[index])]
    if any(trace.gates for trace in picked):
        figures.append(plots.gates(out_dir / f"gates{suffix}.png", picked, steps, labels[index]))
    if answers is not None:
        figures.append(plots.answers_by_step(out_dir / f"answers{suffix}.png", answers[index], steps, labels[index], task.name))
    return figures


def example_record(index: int, label: str, traces: list[Trace], answers) -> dict:
    """One input's numbers: per layer, (steps, units) lists of the hidden state and each gate."""

    def rounded(array):
        return np.round(array[index], 5).tolist()

    return {
        "input": label,
        "answers_by_step": rounded(answers) if answers is not None else None,
        "layers": {
            trace.name: {"hidden": rounded(trace.hidden), **{gate: rounded(values) for gate, values in trace.gates.items()}}
            for trace in traces
        },
    }


def write_json(document: dict, out_dir: Path) -> Path:
    path = out_dir / "inspect.json"
    path.write_text(json.dumps(document))
    return path
