"""Print what a trained recall LSTM does, step by step: its gates, cell state and output.

    python scripts/recall_gates.py RUN [DIGITS ...]

For each sequence (default: three random ones of length 10) one row per step: the digit
read and, per unit, the input (i), forget (f) and output (o) gates, the candidate value
(g), the cell state (c) and the output (h). The LSTM equations are written out in numpy
from the layer's own weights, and checked against Keras' final state, so what is printed
is what the model computes. Small models show their mechanism here (docs/recall.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from kerasrnn.backend import select_backend

select_backend("tensorflow")

import keras  # noqa: E402

from kerasrnn.errors import UserError  # noqa: E402
from kerasrnn.runs import load_model  # noqa: E402
from kerasrnn.tasks.recall import one_hot  # noqa: E402


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def lstm_steps(layer, x: np.ndarray):
    """Per step (i, f, g, o, c, h) of a Keras LSTM layer for one (L, features) sequence (Keras' gate order i, f, c, o)."""
    kernel, recurrent, bias = (weight.numpy() for weight in layer.cell.weights)
    units = layer.cell.units
    h, c, rows = np.zeros(units), np.zeros(units), []
    for step in x:
        z = step @ kernel + h @ recurrent + bias
        i, f, g, o = sigmoid(z[:units]), sigmoid(z[units : 2 * units]), np.tanh(z[2 * units : 3 * units]), sigmoid(z[3 * units :])
        c = f * c + i * g
        h = o * np.tanh(c)
        rows.append((i, f, g, o, c, h))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("digits", nargs="*", help="one sequence, e.g. 3 1 4 1 5 (default: three random ones)")
    args = parser.parse_args()
    try:
        model = load_model(args.run)  # a missing or damaged run: one clear line
    except UserError as error:
        sys.exit(f"error: {error}")
    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.LSTM)]
    if len(layers) != 1:  # a bidirectional layer wraps its LSTMs, so it is not listed here
        sys.exit("error: this shows one unidirectional LSTM layer; the run has another model")
    layer = layers[0]
    rng = np.random.default_rng(0)
    sequences = [[int(d) for d in "".join(args.digits)]] if args.digits else [rng.integers(0, 10, 10).tolist() for _ in range(3)]
    final_state = keras.Model(model.inputs, layer.output)
    np.set_printoptions(precision=2, suppress=True, floatmode="fixed")
    for digits in sequences:
        x = one_hot(np.array(digits))
        rows = lstm_steps(layer, x)
        keras_h = np.asarray(final_state.predict(x[None], verbose=0))[0]
        assert np.allclose(rows[-1][5], keras_h, atol=1e-4), "the numpy steps disagree with Keras"
        print(f"sequence {digits}: the model answers {int(model.predict(x[None], verbose=0).argmax())}")
        for step, (digit, (i, f, g, o, c, h)) in enumerate(zip(digits, rows)):
            print(f"  step {step} digit {digit}  i {i}  f {f}  g {g}  o {o}  c {c}  h {h}")


if __name__ == "__main__":
    main()
