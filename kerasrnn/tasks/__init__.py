"""The tasks: one module per task, the Task contract (base.py), and the registry that finds them by name.

A module becomes a task by defining `TASK`, an instance of `kerasrnn.tasks.base.Task`; adding a task means
adding a module here.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

from kerasrnn.errors import UserError

_NOT_TASKS = {"base"}
# What the command line needs of a task before Keras may be imported: module-level literals, read from the source.
DECLARATIONS = ("FLAGS", "PREDICT_INPUTS")


def task_names() -> list[str]:
    """Names of every task module, found without importing them (so without Keras)."""
    return sorted(
        info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_") and info.name not in _NOT_TASKS
    )


def get_task(name: str):
    """The task called `name`; a UserError names the known ones otherwise."""
    if name not in task_names():
        raise UserError(f"unknown task {name!r}: choose one of {', '.join(task_names())}")
    return importlib.import_module(f"{__name__}.{name}").TASK


def declarations(name: str) -> dict:
    """A task module's FLAGS ({option: (kind, help)}: its own `kerasrnn fit` flags; kind int, float, text, path
    or switch) and PREDICT_INPUTS (what one INPUT of `predict` is), read from its source without importing it:
    the command line builds its help before the backend is chosen. Missing ones are empty."""
    found = {"FLAGS": {}, "PREDICT_INPUTS": ""}
    source = Path(__path__[0], f"{name}.py")
    if not source.exists():  # a task module found elsewhere (the registry's tests add one)
        module = importlib.import_module(f"{__name__}.{name}")
        return {key: getattr(module, key, found[key]) for key in DECLARATIONS}
    for node in ast.parse(source.read_text()).body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else getattr(node, "target", None)
        if isinstance(target, ast.Name) and target.id in DECLARATIONS and node.value is not None:
            found[target.id] = ast.literal_eval(node.value)
    return found
