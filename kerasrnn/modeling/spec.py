"""What a model's recurrent body looks like, read from a config and checked without Keras (the command line
refuses a bad cell, size or dropout before a backend loads); kerasrnn.modeling.models builds it."""

from __future__ import annotations

from dataclasses import dataclass

from kerasrnn.config import CELL_NAMES
from kerasrnn.errors import require


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
    require(spec.cell in CELL_NAMES, f"unknown cell {spec.cell!r}: choose one of {', '.join(CELL_NAMES)}")
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
