"""Prediction on a person's inputs, from a run directory or an exported artifact."""

from __future__ import annotations

from pathlib import Path

from kerasrnn.errors import UserError, option
from kerasrnn.tasks import task_of


def load_predictor(path: Path):
    """(task, config, model-like) for a run directory or an exported artifact (SavedModel, .tflite, .keras)."""
    from kerasrnn.export import artifacts
    from kerasrnn.training import fitting

    if artifacts.artifact_format(path) in (None, "run"):
        return fitting.load_compiled_run(path)  # None: read_config says clearly what is wrong with the path
    metadata = artifacts.read_metadata(path)
    return task_of(metadata["config"]), metadata["config"], artifacts.load_artifact(path, metadata)


def predict_run(path: Path, inputs: list[str], show: str | None = None) -> dict:
    """A task's prediction for a person's inputs; `show` saves a figure where the task draws one."""
    return predict_with(*load_predictor(path), inputs, show=show)


def check_request(task, config: dict, inputs: list[str], show: str | None = None, before_loading: bool = False) -> None:
    """Refuse a request whose inputs cannot be answered; `before_loading`: also the task's own check of the inputs
    (`Task.check_inputs`), before a model or a framework loads."""
    if not inputs:
        raise UserError(f"predict needs inputs for {task.name}: {task.predict_inputs}")
    if show is not None and not task.shows_inputs:
        raise UserError(f"{option('show')} applies to image tasks; {task.name} draws no figure of its inputs")
    if before_loading:
        task.check_inputs(config, inputs)


def predict_with(task, config: dict, model, inputs: list[str], show: str | None = None) -> dict:
    """`task`'s prediction with an already loaded model or artifact (anything with `predict(x)`)."""
    check_request(task, config, inputs, show)
    figure = figure_path(show) if show is not None else None
    result = task.predict(model, config, inputs, show=str(figure) if figure else None)
    if figure:
        result["figure"] = str(figure)
    return result


# Formats matplotlib writes, by suffix.
FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")


def figure_path(show: str | Path) -> Path:
    """Where --show writes: the file named, or predictions.png inside a folder (one that exists, ends in /,
    or has no suffix, so that `--show out/` and `--show out` both mean a folder)."""
    path, named = Path(show), option("show", repr(str(show)), show)
    if str(show).endswith(("/", "\\")) or path.is_dir() or not path.suffix:
        if path.exists() and not path.is_dir():
            raise UserError(f"{named}: that is a file without a figure suffix ({', '.join(FIGURE_SUFFIXES)})")
        path.mkdir(parents=True, exist_ok=True)
        return path / "predictions.png"
    if path.suffix.lower() not in FIGURE_SUFFIXES:
        raise UserError(f"{named}: a figure is saved as {', '.join(FIGURE_SUFFIXES)} (or give a folder)")
    if not path.parent.is_dir():
        raise UserError(f"{named}: no such folder {path.parent}")
    return path
