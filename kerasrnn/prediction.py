"""Prediction on a person's inputs, from a run directory or an exported artifact."""

from __future__ import annotations

from pathlib import Path

from kerasrnn.errors import UserError
from kerasrnn.tasks import get_task


def load_predictor(path: Path):
    """(task, config, model-like) for a run directory or an exported artifact (SavedModel, .tflite, .keras)."""
    from kerasrnn import export, training

    if export.artifact_format(path) in (None, "run"):
        return training.load_compiled_run(path)  # None: read_config says clearly what is wrong with the path
    metadata = export.read_metadata(path)
    return get_task(metadata["task"]), metadata["config"], export.load_artifact(path, metadata)


def predict_run(path: Path, inputs: list[str], show: str | None = None) -> dict:
    """A task's prediction for a person's inputs; `show` saves a figure where the task draws one."""
    return predict_with(*load_predictor(path), inputs, show=show)


def predict_with(task, config: dict, model, inputs: list[str], show: str | None = None) -> dict:
    """`task`'s prediction with an already loaded model or artifact (anything with `predict(x)`)."""
    if not inputs:
        raise UserError(f"predict needs inputs for {task.name}: {task.predict_inputs}")
    if show is not None and not task.shows_inputs:
        raise UserError(f"--show applies to image tasks; {task.name} draws no figure of its inputs")
    return task.predict(model, config, inputs, show=show)
