"""The figures a person looks at after a fit, as PNG files under RUN_DIR/plots."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no screen on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

ITERATIONS_FILE = "iterations.csv"
HISTORY_FILE = "history.csv"


def read_csv_columns(path: Path) -> dict[str, list[float]]:
    """A CSV of numbers as {column: values}; empty when the file is missing."""
    if not path.exists():
        return {}
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    columns: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            try:
                columns.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                columns.setdefault(key, []).append(float("nan"))
    return columns


def save(figure, run_dir: Path, name: str) -> Path:
    folder = Path(run_dir) / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    temporary = path.with_suffix(".tmp.png")
    figure.savefig(temporary, dpi=110, bbox_inches="tight")
    plt.close(figure)
    temporary.replace(path)
    return path


def iteration_loss(run_dir: Path) -> Path:
    """Training loss of every iteration (batch), with a moving average to read the trend."""
    columns = read_csv_columns(Path(run_dir) / ITERATIONS_FILE)
    losses = columns.get("loss", [])
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(range(1, len(losses) + 1), losses, lw=0.6, alpha=0.5, label="loss per iteration")
    window = max(1, len(losses) // 50)
    if len(losses) > window > 1:
        kernel = [1.0 / window] * window
        import numpy as np

        smooth = np.convolve(losses, kernel, mode="valid")
        axis.plot(range(window, len(losses) + 1), smooth, lw=1.5, label=f"moving average ({window})")
    axis.set_xlabel("iteration")
    axis.set_ylabel("training loss")
    axis.set_yscale("log" if losses and min(losses) > 0 else "linear")
    axis.set_title("Training loss per iteration")
    axis.grid(alpha=0.3)
    axis.legend()
    return save(figure, run_dir, "loss_per_iteration.png")


def epoch_curves(run_dir: Path, metrics: list[str]) -> Path:
    """One panel per metric: training and validation value per epoch."""
    columns = read_csv_columns(Path(run_dir) / HISTORY_FILE)
    epochs = [int(e) + 1 for e in columns.get("epoch", [])]
    figure, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.8), squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        for prefix, label in (("", "training"), ("val_", "validation")):
            values = columns.get(prefix + metric)
            if values:
                axis.plot(epochs, values, marker="o", ms=3, label=label)
        axis.set_xlabel("epoch")
        axis.set_title(metric.replace("_", " "))
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    return save(figure, run_dir, "epoch_curves.png")


def accuracy_by_length(
    run_dir: Path,
    by_length: dict,
    metrics: list[str],
    train_lengths: tuple[int, int],
    name: str = "accuracy_by_length.png",
) -> Path:
    """Accuracy against sequence length, the training length(s) marked."""
    lengths = sorted(int(n) for n in by_length)
    figure, axis = plt.subplots(figsize=(7, 4))
    for metric in metrics:
        axis.plot(lengths, [by_length[str(n)][metric] for n in lengths], marker="o", ms=3, label=metric.replace("_", " "))
    low, high = train_lengths
    if low == high:
        axis.axvline(low, color="gray", ls="--", label=f"training length {low}")
    else:
        axis.axvspan(low - 0.5, high + 0.5, color="gray", alpha=0.15, label=f"training lengths {low}-{high}")
    axis.set_xlabel("sequence length")
    axis.set_ylabel("accuracy")
    axis.set_ylim(-0.02, 1.02)
    axis.set_title("Accuracy against length")
    axis.grid(alpha=0.3)
    axis.legend()
    return save(figure, run_dir, name)
