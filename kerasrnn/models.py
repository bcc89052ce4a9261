"""The functional model builder shared by every task.

A model is: Input -> one or more recurrent layers (SimpleRNN, LSTM or GRU,
optionally bidirectional) -> a task's head. Tasks choose the input shape and
the head; everything about the recurrent body lives here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras

from kerasrnn import layers
from kerasrnn.config import CELL_NAMES
from kerasrnn.errors import require

# LSTM and GRU are Keras' own, running PyTorch's fused kernels on the torch backend (kerasrnn.layers).
CELLS = dict(zip(CELL_NAMES, (keras.layers.SimpleRNN, layers.LSTM, layers.GRU)))


@dataclass(frozen=True)
class RecurrentSpec:
    """What the recurrent body of a model looks like; built from a config (its defaults live in kerasrnn.config)."""

    cell: str
    units: int
    layers: int
    bidirectional: bool
    dropout: float
    recurrent_dropout: float
    # Unroll the time loop into straight-line code (fixed-length inputs only). A speed option that gave no
    # steady gain on the build machine (docs/performance.md).
    unroll: bool

    def __post_init__(self):
        validate_recurrent_spec(self)

    @classmethod
    def from_config(cls, config: dict) -> RecurrentSpec:
        return cls(**{name: config[name] for name in cls.__dataclass_fields__})


def validate_recurrent_spec(spec: RecurrentSpec) -> None:
    require(spec.cell in CELLS, f"unknown cell {spec.cell!r}: choose one of {', '.join(CELLS)}")
    require(isinstance(spec.units, int) and spec.units >= 1, f"units must be a whole number >= 1, got {spec.units!r}")
    require(isinstance(spec.layers, int) and spec.layers >= 1, f"layers must be a whole number >= 1, got {spec.layers!r}")
    require(0.0 <= spec.dropout < 1.0, f"dropout must be in [0, 1), got {spec.dropout!r}")
    require(isinstance(spec.unroll, bool), f"unroll must be true or false, got {spec.unroll!r}")
    require(
        0.0 <= spec.recurrent_dropout < 1.0,
        f"recurrent dropout must be in [0, 1), got {spec.recurrent_dropout!r}",
    )


def should_unroll(setting: bool, time_steps: int | None) -> bool:
    """Keras can unroll only a known number of time steps: say so instead of failing deep inside Keras."""
    require(not (setting and time_steps is None), "unroll needs a fixed sequence length; this task's lengths vary")
    return setting


def recurrent_body(x, spec: RecurrentSpec, return_sequences: bool):
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
            name=f"{spec.cell}_{index + 1}",
        )
        if spec.bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"bidirectional_{spec.cell}_{index + 1}")
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
