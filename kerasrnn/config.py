"""A run's configuration: the defaults every task shares, tuned defaults, config files and null values.

A configuration is built in layers, later ones winning:

1. `COMMON_DEFAULTS`, then the task's own `defaults`;
2. the task's `Recipe`s: defaults measured to be better for some cells and sizes (docs/configuration.md),
   applied when the options ask for such a model;
3. a config file (`--config`: TOML or JSON; a run's own config.json reproduces it);
4. the options given on the command line or to `kerasrnn.fit`.

An option set to None (`-o clipnorm=null`, `clipnorm = None` in Python) means "none" where the
option allows it, and is refused where it does not: it never silently falls back to the default.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kerasrnn.errors import UserError

# The recurrent cells by name (kerasrnn.modeling.models maps them to Keras' SimpleRNN, LSTM and GRU).
CELL_NAMES = ("rnn", "lstm", "gru")
# What the recurrent kernels may train in (kerasrnn.training.precision says what each means).
PRECISIONS = ("auto", "float32", "bfloat16")

# Options every task understands. A task's `defaults` overrides these and adds its own.
COMMON_DEFAULTS = {
    "cell": "lstm",
    "units": 10,
    "layers": 1,
    "bidirectional": False,
    "dropout": 0.0,
    "recurrent_dropout": 0.0,
    "epochs": 10,
    "batch_size": 64,
    "lr": 1e-3,
    "lr_schedule": "constant",
    "clipnorm": None,  # clip each gradient's norm (Adam's clipnorm); None: no clipping
    "seed": 0,
    # Speed, not results: docs/performance.md says what was measured.
    "unroll": False,
    "jit_compile": "auto",  # Keras decides: XLA for JAX; not on TensorFlow on a CPU
    # auto: several batches per call into the backend on TensorFlow and JAX (training.steps_per_execution); 1 on torch.
    "steps_per_execution": "auto",
    "deterministic": True,  # TensorFlow's deterministic kernels (it also rules out XLA)
    # auto: on torch, the toolkit's own training step where it computes what Keras' does (kerasrnn.torch.step);
    # keras: always Keras' own train_step and fit loop.
    "train_step": "auto",
    # auto: the fused LSTM and GRU kernels train in bfloat16 where that was measured faster (kerasrnn.training.precision).
    "precision": "auto",
}

# Keys a config file may hold besides options: which task and backend it belongs to.
# task_source and task_package: where a task from outside the toolkit came from (kerasrnn.tasks.source_of).
SELECTION_KEYS = ("task", "backend", "task_source", "task_package")


@dataclass(frozen=True)
class Recipe:
    """Defaults that measurably do better for the models `applies_to` accepts.

    `applies_to` sees the options as they will be (defaults and the user's choices); the user's own
    options always win over a recipe's `settings`.
    """

    name: str
    applies_to: Callable[[dict], bool]
    settings: dict = field(default_factory=dict)


def format_option_value(value) -> str:
    """A value as written after -o (which reads JSON): JSON for booleans and null, strings as they are."""
    return json.dumps(value) if value is None or isinstance(value, bool) else str(value)


def format_settings(settings: dict) -> str:
    """`key=value, ...` as written after -o."""
    return ", ".join(f"{key}={format_option_value(value)}" for key, value in settings.items())


def nullable_options(defaults: dict) -> set[str]:
    """The options that may be None: those whose default somewhere is None (no clipping, no limit...)."""
    return {key for layer in (COMMON_DEFAULTS, defaults) for key, value in layer.items() if value is None}


def read_config_file(path: str | Path) -> dict:
    """The options in a TOML or JSON file (a run's config.json included); a clear error otherwise."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such config file: {path}")
    text = path.read_text(errors="replace")
    try:
        document = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
        raise UserError(f"config file {path} is not valid {kind}: {error}") from None
    if not isinstance(document, dict):
        raise UserError(f"config file {path} must hold a table of options (KEY = VALUE), not {type(document).__name__}")
    # TOML has no null: the string "null" stands for None there, as after -o.
    return {key.replace("-", "_"): (None if value == "null" else value) for key, value in document.items()}


def split_selection(options: dict) -> tuple[dict, dict]:
    """(task and backend named in `options`, the remaining options)."""
    selection = {key: options[key] for key in SELECTION_KEYS if key in options}
    return selection, {key: value for key, value in options.items() if key not in SELECTION_KEYS}


def choose_task(given, from_file: str | None):
    """The task given (a name, a PACKAGE.MODULE:NAME reference or a Task object), else the config file's; a
    contradiction is refused (the options would not fit)."""
    given_name = getattr(given, "name", given)
    if given and from_file and given_name != from_file and given != from_file:
        raise UserError(f"the task given ({given}) differs from the config file's ({from_file}); drop one of them")
    if not (given or from_file):
        from kerasrnn.tasks import task_names

        raise UserError(f"name a task ({', '.join(task_names())}) or give a config file that names one")
    return given or from_file
