"""The functional model builder shared by every task.

A model is: Input -> one or more recurrent layers (SimpleRNN, LSTM or GRU,
optionally bidirectional) -> a task's head. Tasks choose the input shape and
the head; everything about the recurrent body lives here.
"""

from __future__ import annotations

from collections.abc import Callable

import keras

from kerasrnn.config import CELL_NAMES
from kerasrnn.modeling import layers
from kerasrnn.modeling.spec import RecurrentSpec, should_unroll

# LSTM and GRU are Keras' own, running PyTorch's fused kernels on the torch backend (kerasrnn.modeling.layers).
CELLS = dict(zip(CELL_NAMES, (keras.layers.SimpleRNN, layers.LSTM, layers.GRU)))


def recurrent_body(x, spec: RecurrentSpec, return_sequences: bool, prefix: str = ""):
    """Stack `spec.layers` recurrent layers on `x`.

    Inner layers always return sequences (the next layer reads every step);
    the last one returns them only when the head needs one output per step.
    """
    cell_class = CELLS[spec.cell]
    unroll = should_unroll(spec.unroll, x.shape[1])
    for index in range(spec.layers):
        is_last = index == spec.layers - 1
        layer = cell_class(
            spec.units,
            return_sequences=return_sequences or not is_last,
            dropout=spec.dropout,
            recurrent_dropout=spec.recurrent_dropout,
            unroll=unroll,
            name=f"{prefix}{spec.cell}_{index + 1}",
        )
        if spec.bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"{prefix}bidirectional_{spec.cell}_{index + 1}")
        x = layer(x)
    return x


def build_model(
    name: str,
    input_shape: tuple,
    spec: RecurrentSpec,
    head: Callable,
    return_sequences: bool,
) -> keras.Model:
    """Input(input_shape) -> recurrent body -> head(x), as a functional Keras model."""
    inputs = keras.Input(shape=input_shape, name="sequence")
    features = recurrent_body(inputs, spec, return_sequences)
    outputs = head(features)
    return keras.Model(inputs, outputs, name=name)
