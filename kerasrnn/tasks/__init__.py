"""One module per task. A module becomes a task by defining `TASK`, an instance
of `kerasrnn.tasks.base.Task`; adding a task means adding a module here.
"""

from __future__ import annotations

import importlib
import pkgutil

from kerasrnn.errors import UserError

_NOT_TASKS = {"base"}


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
