"""The tasks: one module per task, the Task contract (base.py), and the registry that finds them by name.

A task comes from one of three places, and a run records which (config's `task_source`, `task_package`), so
that every later command finds it again:

- a module here that defines `TASK` (the built-in tasks);
- an installed package's entry point in the group `kerasrnn.tasks` (`mytask = "my_pkg.task:TASK"`);
- a reference `PACKAGE.MODULE:NAME` on the command line, or a Task object given to `kerasrnn.fit`.

docs/add-a-task.md walks through a task shipped as its own package.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import importlib.util
import pkgutil
from pathlib import Path

from kerasrnn.errors import UserError

_NOT_TASKS = {"base"}
ENTRY_POINT_GROUP = "kerasrnn.tasks"
GUIDE = "docs/add-a-task.md"
# What the command line needs of a task before Keras may be imported: module-level literals, read from the source.
DECLARATIONS = ("FLAGS", "PREDICT_INPUTS")
# Task objects this process was handed (kerasrnn.fit(task)): found by name afterwards, as long as it runs.
_GIVEN: dict = {}


def builtin_names() -> list[str]:
    """The task modules in this folder, found without importing them (so without Keras)."""
    return sorted(
        info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_") and info.name not in _NOT_TASKS
    )


def plugged_in() -> dict:
    """{name: entry point} of the installed packages' tasks; a built-in name is never shadowed."""
    builtins = set(builtin_names())
    return {point.name: point for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if point.name not in builtins}


def task_names() -> list[str]:
    """Every task found by name: the built-in ones and the installed packages' (none of them imported)."""
    return sorted({*builtin_names(), *plugged_in()})


def unknown_task(name: str) -> UserError:
    return UserError(
        f"unknown task {name!r}: choose one of {', '.join(task_names())}, or a task of your own as PACKAGE.MODULE:NAME "
        f"or an installed entry point ({GUIDE})"
    )


def get_task(name):
    """The task called `name` (built-in, plugged in, or given to this process), a `PACKAGE.MODULE:NAME`
    reference, or a Task object itself; a UserError names the known ones otherwise."""
    if is_task(name):
        return given(name)
    if not isinstance(name, str) or not name:
        raise unknown_task(str(name))
    if name in _GIVEN:
        return _GIVEN[name]
    if name in builtin_names():
        return importlib.import_module(f"{__name__}.{name}").TASK
    points = plugged_in()
    if name in points:
        return load_reference(points[name].value, package=distribution_of(points[name]))
    if ":" in name:
        return load_reference(name)
    raise unknown_task(name)


def is_task(thing) -> bool:
    """Whether `thing` is a Task object (told from its classes: this registry imports no task code)."""
    return any(cls.__name__ == "Task" and cls.__module__ == "kerasrnn.tasks.base" for cls in type(thing).__mro__)


def given(task):
    """A Task object handed to this process: checked, and found by its name from now on."""
    if not task.name:
        raise UserError(f"a task needs a name: set `name` on {type(task).__name__} ({GUIDE})")
    if task.name in builtin_names() and type(task).__module__ != f"{__name__}.{task.name}":
        raise UserError(f"task name {task.name!r} is a built-in task's: give {type(task).__name__} another name")
    _GIVEN[task.name] = task
    return task


def load_reference(reference: str, package: str | None = None):
    """The Task object at `PACKAGE.MODULE:NAME`; one line naming what to install when it is not there."""
    module_name, _, attribute = reference.partition(":")
    install = f"install {package!r} (pip install {package})" if package else "install the package that provides it"
    if not module_name or not attribute:
        raise UserError(f"a task reference is PACKAGE.MODULE:NAME, got {reference!r} ({GUIDE})")
    try:
        found = importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise UserError(f"task module {module_name!r} (of {reference}) is not importable here: {install}")
    module = importlib.import_module(module_name)
    task = getattr(module, attribute, None)
    if not is_task(task):
        kind = "nothing" if task is None else type(task).__name__
        raise UserError(f"{reference} is {kind}, not a kerasrnn Task object ({GUIDE})")
    return given(task)


def distribution_of(point) -> str | None:
    return point.dist.name if getattr(point, "dist", None) is not None else None


def source_of(task) -> dict:
    """Where a task came from, for its run's config: {} for a built-in one, else `task_source` (a reference
    `get_task` loads) and `task_package` (the distribution to install, where one is known)."""
    module = type(task).__module__
    if module == f"{__name__}.{task.name}":
        return {}
    points = {point.value: point for point in plugged_in().values()}
    attribute = next((name for name, value in vars(importlib.import_module(module)).items() if value is task), None)
    reference = f"{module}:{attribute}" if attribute else f"{module}:{type(task).__name__}()"
    point = points.get(reference)
    package = distribution_of(point) if point else package_of_module(module)
    return {"task_source": reference, **({"task_package": package} if package else {})}


def package_of_module(module: str) -> str | None:
    names = importlib.metadata.packages_distributions().get(module.partition(".")[0], [])
    return names[0] if names else None


def task_of(config: dict):
    """The task of a run's (or artifact's) config, found again where it came from."""
    name = config["task"]
    if name in _GIVEN or "task_source" not in config:
        return get_task(name)
    source = config["task_source"]
    if source.startswith("__main__:"):
        raise UserError(
            f"task {name!r} of this run was defined in a script or notebook ({source}): use it from that same "
            f"Python session, or ship it as a package ({GUIDE})"
        )
    return load_reference(source, package=config.get("task_package"))


def declarations(name: str) -> dict:
    """A task module's FLAGS ({option: (kind, help)}: its own `kerasrnn fit` flags; kind int, float, text, path
    or switch) and PREDICT_INPUTS (what one INPUT of `predict` is), read from its source without importing it:
    the command line builds its help before the backend is chosen. Missing ones are empty."""
    found = {"FLAGS": {}, "PREDICT_INPUTS": ""}
    source = module_source(name)
    if source is None and name in plugged_in():
        return found  # a compiled module: its options still take -o
    if source is None:  # a task module found elsewhere (the registry's tests add one)
        module = importlib.import_module(f"{__name__}.{name}")
        return {key: getattr(module, key, found[key]) for key in DECLARATIONS}
    for node in ast.parse(source.read_text()).body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else getattr(node, "target", None)
        if isinstance(target, ast.Name) and target.id in DECLARATIONS and node.value is not None:
            try:
                found[target.id] = ast.literal_eval(node.value)
            except ValueError:
                pass  # not a literal: the command line goes without it (every option still takes -o)
    return found


def module_source(name: str) -> Path | None:
    """The source file of task `name`'s module, found without running it (a plugged-in task's too)."""
    source = Path(__path__[0], f"{name}.py")
    if source.exists():
        return source
    point = plugged_in().get(name)
    if point is None:
        return None
    try:
        spec = importlib.util.find_spec(point.value.partition(":")[0])
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec is not None and spec.origin and spec.origin.endswith(".py") else None
