"""The run directory: what a fit writes, and how every other command reads it (the one home of its format).

RUN_DIR/config.json    everything needed to rebuild the model and the data
RUN_DIR/model.keras    the trained model
RUN_DIR/history.csv    per-epoch metrics (Keras CSVLogger)
RUN_DIR/iterations.csv per-iteration training loss
RUN_DIR/metrics.json   the results, written last: its presence marks a complete run
RUN_DIR/plots/*.png    figures
RUN_DIR/tensorboard/   TensorBoard logs (`tensorboard --logdir RUN_DIR/..` compares runs)
RUN_DIR/checkpoints/   the best epoch's weights, and the resumable state until metrics.json is written
                       (kerasrnn.training.callbacks.KillSafeBackupAndRestore)

Every file a later command reads is written to a temporary name and renamed into place, so a crash never
leaves a half-written file under its real name; history.csv and iterations.csv are appended once an epoch,
and a resumed fit cuts them back to its saved epoch (`forget_epochs_from`).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import time
import zipfile
from pathlib import Path

from kerasrnn.errors import UserError, option

CONFIG_FILE = "config.json"
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.csv"
ITERATIONS_FILE = "iterations.csv"
METRICS_FILE = "metrics.json"
PLOTS_DIR = "plots"
CHECKPOINT_DIR = "checkpoints"
BEST_WEIGHTS = "best.weights.h5"  # in CHECKPOINT_DIR
TENSORBOARD_DIR = "tensorboard"
DEFAULT_ROOT = Path("saved_models")
# A run that comes with the toolkit (saved_models/mnist-pretrained) holds this file: what commands write about it
# goes elsewhere, so a clean checkout stays clean.
SHIPPED_MARKER = "SHIPPED"


@contextlib.contextmanager
def atomic_path(path: Path):
    """A temporary path beside `path` to write to; renamed into place only when the block succeeds.

    The temporary name keeps the suffix (Keras wants .keras, numpy .npz, matplotlib picks the format by it).
    """
    path = Path(path)
    temporary = temporary_path(path)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def temporary_path(path: Path) -> Path:
    """Where `path` is written before it is renamed into place: beside it, hidden, its suffix kept
    (`remove_leftovers` finds those a killed process left)."""
    return path.with_name(f".tmp-{os.getpid()}-{path.name}")


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def write_json_atomic(path: Path, document: dict) -> None:
    write_text_atomic(path, json.dumps(document, indent=2, sort_keys=False) + "\n")


def save_model_atomic(model, path: Path) -> None:
    with atomic_path(path) as temporary:
        model.save(temporary)


def default_run_dir(config: dict) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return DEFAULT_ROOT / f"{config['task']}-{config['cell']}-{config['units']}-{stamp}"


def output_dir(run_dir: Path, what: str) -> Path:
    """Where a command writes its `what` (inspect, export) about a run: inside it, RUN/WHAT, unless the run is
    shipped with the toolkit or read-only; then beside the other runs, saved_models/RUN-WHAT."""
    run_dir = Path(run_dir)
    if (run_dir / SHIPPED_MARKER).exists() or not os.access(run_dir, os.W_OK):
        return DEFAULT_ROOT / f"{run_dir.name}-{what}"
    return run_dir / what


def backup_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / "backup"


def completed_epochs(run_dir: Path) -> int:
    """How many epochs an unfinished run's backup holds: where a resumed fit continues.

    Read from the record Keras' BackupAndRestore keeps beside its weights (the same file it restores
    from); 0 when there is none yet.
    """
    try:
        return int(json.loads((backup_dir(run_dir) / "training_metadata.json").read_text())["epoch"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        return 0


def is_complete(run_dir: Path) -> bool:
    return (Path(run_dir) / METRICS_FILE).exists()


def prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Make `run_dir` ready for a fit, refusing to clobber finished or unfinished work unasked."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{run_dir} exists and is not a directory")
    has_content = run_dir.exists() and any(run_dir.iterdir())
    if has_content and overwrite:
        shutil.rmtree(run_dir)
    elif has_content and is_complete(run_dir) and resume:
        raise UserError(
            f"{run_dir} holds a finished run; nothing to resume (use {option('overwrite', 'True')} to train it again)"
        )
    elif has_content and is_complete(run_dir):
        raise UserError(
            f"{run_dir} already holds a finished run: choose another {option('out')}, or pass {option('overwrite', 'True')}"
        )
    elif has_content and not resume:
        raise UserError(
            f"{run_dir} holds an unfinished run: pass {option('resume', 'True')} to continue it "
            f"or {option('overwrite', 'True')} to start over"
        )
    elif resume and not has_content:
        raise UserError(f"nothing to resume in {run_dir}: it holds no run")
    run_dir.mkdir(parents=True, exist_ok=True)


def nothing_saved_yet(run_dir: Path) -> bool:
    """Whether `run_dir` is absent, or empty but for a killed process's temporary files (no config.json yet)."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return True
    return run_dir.is_dir() and all(path.name.startswith(".tmp-") for path in run_dir.iterdir())


def resumable(run_dir: Path) -> bool:
    """Whether a fit into `run_dir` continues saved work. When nothing was saved yet (a fit killed before it
    began), a killed process's temporary files are cleared so that a fresh fit can start there."""
    if not nothing_saved_yet(run_dir):
        return True
    if Path(run_dir).exists():
        remove_leftovers(run_dir)
    return False


def remove_leftovers(run_dir: Path) -> None:
    """Temporary files of a process killed while writing (atomic_path's, never read by anything)."""
    for leftover in Path(run_dir).rglob(".tmp-*"):
        if leftover.is_file():
            leftover.unlink(missing_ok=True)


def forget_epochs_from(run_dir: Path, epoch: int) -> None:
    """Cut history.csv and iterations.csv back to the rows of epochs before `epoch` (where a resumed fit
    starts): rows of an epoch whose state was not saved before a kill, and a half-written last line, go."""
    for name in (HISTORY_FILE, ITERATIONS_FILE):
        path = Path(run_dir) / name
        if not path.exists():
            continue
        with path.open(newline="") as handle:
            text = handle.read()
        ending = "\r\n" if "\r\n" in text else "\n"  # CSVLogger's csv module ends rows with \r\n
        if not text.strip():
            continue  # opened, nothing written yet (CSVLogger writes its header with the first row)
        header, *rows = text.splitlines()
        columns = header.split(",")
        position = columns.index("epoch") if "epoch" in columns else None
        kept = [row for row in rows if whole_row_before(row, len(columns), position, epoch)]
        if len(kept) != len(rows):
            with atomic_path(path) as temporary, temporary.open("w", newline="") as handle:
                handle.write(ending.join([header, *kept]) + ending)


def whole_row_before(row: str, width: int, position: int | None, epoch: int) -> bool:
    cells = row.split(",")
    if len(cells) != width or position is None:
        return False
    try:
        return int(float(cells[position])) < epoch
    except ValueError:
        return False


def read_json(path: Path, what: str) -> dict:
    try:
        document = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{what} is missing: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{what} is corrupt (not valid JSON): {path}") from None
    if not isinstance(document, dict):
        raise UserError(f"{what} is corrupt (not a JSON object): {path}")
    return document


def read_config(run_dir: Path) -> dict:
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise UserError(f"no such run directory: {run_dir}")
    if not run_dir.is_dir():
        raise UserError(f"not a run directory: {run_dir}")
    if not (run_dir / CONFIG_FILE).exists():
        require_no_runs_inside(run_dir)
    config = read_json(run_dir / CONFIG_FILE, "the run's config.json")
    if "task" not in config:
        raise UserError(f"the run's config.json names no task: {run_dir / CONFIG_FILE}")
    return with_defaults(config)


def require_no_runs_inside(folder: Path) -> None:
    """A folder of runs (a sweep's, a bench's, saved_models) given where one run was meant: name its runs."""
    inside = sorted(path.parent.name for path in folder.glob(f"*/{CONFIG_FILE}"))
    if inside:
        shown = ", ".join(inside[:6]) + (f" and {len(inside) - 6} more" if len(inside) > 6 else "")
        raise UserError(f"{folder} is a folder of runs, not a run: pick one of them ({shown}), e.g. {folder / inside[0]}")


def with_defaults(config: dict) -> dict:
    """A saved config completed with today's defaults for options added since it was written.

    Options that shape the model or its inputs were added with defaults that keep older runs as they were;
    only a resumed fit of such a run would train with today's default for a training option.
    """
    from kerasrnn.tasks import task_of

    return {**task_of(config).base_defaults(), **config}


def read_metrics(run_dir: Path) -> dict:
    return read_json(Path(run_dir) / METRICS_FILE, "the run's metrics.json")


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


def read_history(run_dir: Path) -> dict[str, list[float]]:
    """Per-epoch metrics as {column: values} (empty before the first epoch ends)."""
    return read_csv_columns(Path(run_dir) / HISTORY_FILE)


def read_iterations(run_dir: Path) -> dict[str, list[float]]:
    """Every iteration's training loss as {column: values}."""
    return read_csv_columns(Path(run_dir) / ITERATIONS_FILE)


def plots_dir(run_dir: Path) -> Path:
    return Path(run_dir) / PLOTS_DIR


def figures(run_dir: Path) -> list[Path]:
    return sorted(plots_dir(run_dir).glob("*.png"))


def best_weights(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / BEST_WEIGHTS


def headline_accuracy(test: dict | None) -> float | None:
    """The one accuracy to quote: whole answers right (the adder's whole sums, not its bits); None for a run with
    no test file or a regression (its rmse and mae are the figures)."""
    if not test:
        return None
    return test.get("exact_accuracy", test.get("accuracy"))


def describe_test(test: dict) -> str:
    """The test result in one line; where a task scores bits too, the whole-answer accuracy leads."""
    if "bit_accuracy" in test:
        return (
            f"test loss {test['loss']:.4g}, exact accuracy {test['exact_accuracy']:.4f} (whole sums right), "
            f"bit accuracy {test['bit_accuracy']:.4f}"
        )
    if "rmse" in test:  # a number to predict (sequences' regression)
        return f"test loss {test['loss']:.4g} (MSE), RMSE {test['rmse']:.4g}, MAE {test['mae']:.4g}"
    return f"test loss {test['loss']:.4g}, accuracy {test['accuracy']:.4f}"


def load_model(run_dir: Path):
    """The trained model of a run, uncompiled, with a clear error for a missing or corrupt file.

    Loading without the compile state keeps old runs loadable when a metric
    changes; `kerasrnn.training.load_compiled_run` compiles it with the task's own loss and metrics.
    """
    run_dir = Path(run_dir)
    path = run_dir / MODEL_FILE
    if not path.exists():
        state = "unfinished (no metrics.json)" if not is_complete(run_dir) else "damaged"
        raise UserError(f"the run in {run_dir} has no {MODEL_FILE}: it is {state}")
    return load_model_file(path)


def load_model_file(path: Path):
    """A `.keras` file, uncompiled; a damaged one is a clear UserError, not a traceback."""
    import keras  # importing it registers the toolkit's layers and metrics (kerasrnn/__init__.py)

    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path} is corrupt (not a Keras archive): retrain, or restore it from a copy")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for a damaged archive
        raise UserError(
            f"{path} could not be loaded ({type(error).__name__}): the file is corrupt or from another version"
        ) from None
