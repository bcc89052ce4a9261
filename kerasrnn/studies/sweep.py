"""`kerasrnn sweep`: fit every combination of a few options, then one comparison table and overlaid figures.

Each configuration is an ordinary run directory under the sweep's folder,
named after its options. A finished run (metrics.json present) is reused, an
unfinished one is resumed, so an interrupted sweep continues where it
stopped; either only when the run was started with the very options asked for
now (a sweep with other options is refused, so its table never shows older
fits). Results: sweep.md (Markdown), sweep.csv, sweep.json, and the figures
val_loss.png and (for sequence tasks) accuracy_by_length.png.

The configurations are handed out by KerasTuner's grid oracle, the engine of `kerasrnn tune`
(kerasrnn.studies.search): alone, one after the other; with `--chief` and `--worker`, each configuration once,
on whichever worker asks next, and the chief writes the results.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from kerasrnn import runs
from kerasrnn.errors import UserError, option, require
from kerasrnn.insight import plots
from kerasrnn.studies import tables
from kerasrnn.tasks import get_task

# The options a sweep varies, in the order they appear in run names and tables.
GRID_KEYS = ("cell", "units", "layers", "bidirectional", "loss", "train_length")


def parse_list(text: str | None, kind=str) -> list | None:
    """'2,5,10' -> [2, 5, 10]; None stays None (the task's default)."""
    if text is None:
        return None
    items = [item.strip() for item in text.split(",") if item.strip()]
    require(items, f"an empty list: {text!r}")
    try:
        return list(dict.fromkeys(kind(item) for item in items))
    except ValueError:
        raise UserError(f"not a comma-separated list of {'whole numbers' if kind is int else 'names'}: {text!r}") from None


def parse_directions(text: str | None) -> list[bool] | None:
    """'uni,bi' -> [False, True]."""
    names = parse_list(text)
    if names is None:
        return None
    unknown = [name for name in names if name not in ("uni", "bi")]
    if unknown:
        raise UserError(f"directions are uni and bi, got {unknown[0]!r}")
    return [name == "bi" for name in names]


def run_name(config: dict, grid: dict) -> str:
    """A readable folder name from the options that define a configuration, e.g. lstm-u10-l1-uni-mse-L5."""
    parts = [config["cell"], f"u{config['units']}", f"l{config['layers']}", "bi" if config["bidirectional"] else "uni"]
    if "loss" in config:
        parts.append(config["loss"])
    if "train_length" in grid:
        parts.append(f"L{config['train_length']}")
    return "-".join(parts)


def expand(task_name: str, grid: dict[str, list], options: dict, log=None) -> list[tuple[str, dict]]:
    """Every combination of `grid` over `options`, validated before anything trains; `log` hears the recipes applied."""
    task = get_task(task_name)
    grid = {key: values for key, values in grid.items() if values}
    keys = [key for key in GRID_KEYS if key in grid]
    configurations = []
    for values in itertools.product(*(grid[key] for key in keys)):
        config = task.make_config({**options, **dict(zip(keys, values))}, log=log)
        configurations.append((run_name(config, grid), config))
    return list(dict(configurations).items())  # 'ce' and 'bce' are one loss: keep one run


def sweep(task_name: str, grid: dict[str, list], options: dict, out: Path, lengths: list[int] | None = None,
          verbose=0, log=print, chief: str | None = None, worker: str | None = None,
          worker_id: str | None = None) -> dict | None:  # fmt: skip
    """Fit (or reuse) every configuration, evaluate at `lengths`, and write the comparison (returned; a worker of
    a distributed sweep returns None: the chief writes it). `chief`, `worker`, `worker_id`: as `kerasrnn tune`'s."""
    import keras

    from kerasrnn.studies import search

    out = Path(out)
    require(not out.exists() or out.is_dir(), f"{out} exists and is not a directory")
    configurations = expand(task_name, grid, options, log=log)
    require(
        not lengths or get_task(task_name).is_sequence_task,
        f"{task_name} has no sequence lengths: --lengths applies to adder and recall",
    )
    for name, config in configurations:  # all before anything trains
        require_same_options(out / name, config, keras.backend.backend())
    role = search.configure_distribution(chief, worker, worker_id)
    names = [name for name, _ in configurations]
    fit_one = fitter(dict(configurations), out, lengths, verbose, log)
    search.run_grid(names, out, fit_one, role, log)
    if role == "worker":
        return None
    from kerasrnn.training.fitting import score_test_set

    task = get_task(task_name)
    rows, histories, by_length = [], {}, {}
    for name, config in configurations:
        run_dir = out / name
        metrics = score_test_set(run_dir, lengths)  # every choice is made: the report reads the test set, once
        if lengths and set(metrics.get("by_length", {})) != {str(n) for n in lengths}:
            metrics["by_length"] = lengths_evaluation(run_dir, lengths)  # a run fitted with other lengths
        rows.append(table_row(name, config, metrics, task))
        histories[name] = runs.read_history(run_dir)
        if metrics.get("by_length"):
            by_length[name] = metrics["by_length"]
    chosen = max(rows, key=lambda row: row["validation"] if row["validation"] is not None else float("-inf"))
    for row in rows:
        row["best"] = "best" if row is chosen else ""
    document = {"task": task_name, "date": time.strftime("%Y-%m-%d"), "grid": grid, "options": options,
                "chosen_on": search.describe_objective(task), "best": chosen["run"], "rows": rows}  # fmt: skip
    write_results(out, document, histories, dict(configurations), by_length)
    return document


def fitter(configurations: dict, out: Path, lengths: list[int] | None, verbose, log):
    """`fit_one(name) -> its validation objective`: fit (or resume, or reuse) configuration `name` into OUT/name,
    its test set unread."""
    import keras

    from kerasrnn.training import fitting

    order = list(configurations)

    def fit_one(name: str) -> float:
        run_dir, number = out / name, f"[{order.index(name) + 1}/{len(order)}]"
        if runs.is_complete(run_dir):
            log(f"kerasrnn sweep: {number} {name}: finished earlier, reused")
        else:
            resume = runs.resumable(run_dir)
            log(f"kerasrnn sweep: {number} {name}: {'resuming' if resume else 'fitting'}")
            fitting.fit(
                configurations[name],
                run_dir,
                resume=resume,
                verbose=verbose,
                log=lambda *_: None,
                lengths=lengths,
                score_test=False,
            )  # fmt: skip  the test set is read once the sweep is over
            keras.backend.clear_session()  # one process fits many models: free the last one's graph
        return validation_objective(get_task(configurations[name]["task"]), runs.read_metrics(run_dir))

    return fit_one


def require_same_options(run_dir: Path, config: dict, backend: str) -> None:
    """Refuse to reuse or resume a run in `run_dir` that was started with other options or on another backend."""
    if not (run_dir / runs.CONFIG_FILE).exists():
        return
    saved = runs.read_config(run_dir)
    if runs.is_complete(run_dir):
        saved["backend"] = runs.read_metrics(run_dir).get("backend")
    saved["backend"] = saved.get("backend") or backend  # runs of older sweeps did not record it in config.json
    asked = {**config, "backend": backend}
    changed = [key for key in asked if saved.get(key) != asked[key]]
    if changed:
        differences = ", ".join(f"{key}={saved.get(key)!r} there, {asked[key]!r} now" for key in changed)
        raise UserError(
            f"{run_dir} holds a run fitted with other options ({differences}): "
            f"give this sweep another {option('out')}, or delete that folder to refit it"
        )


def lengths_evaluation(run_dir: Path, lengths: list[int]) -> dict:
    """`by_length` at `lengths`, cached in the run directory so a rerun of the sweep does not recompute it."""
    from kerasrnn.training import fitting

    cache = Path(run_dir) / f"by_length-{lengths[0]}-{lengths[-1]}-{len(lengths)}.json"
    if cache.exists():
        return runs.read_json(cache, "a cached evaluation")["by_length"]
    result = fitting.evaluate_run(run_dir, lengths)
    runs.write_json_atomic(cache, {"lengths": lengths, "by_length": result["by_length"]})
    return result["by_length"]


def validation_objective(task, metrics: dict) -> float | None:
    """The run's validation figure its task chooses by (None: a run from before the toolkit recorded it)."""
    return task.objective_value(metrics["validation"]) if metrics.get("validation") else None


def table_row(name: str, config: dict, metrics: dict, task) -> dict:
    """One run's line: its settings, its validation figure (what a reader chooses by: `best` marks the
    highest), then the test scores the report read after the choice."""
    row = {"run": name, **{key: config[key] for key in GRID_KEYS if key in config}}
    row.update(
        epochs=metrics["epochs_run"],
        train_seconds=metrics["train_seconds"],
        train_samples_per_second=metrics["train_samples_per_second"],
        validation=validation_objective(task, metrics),
        test_loss=(metrics["test"] or {}).get("loss"),  # None: a run with no test file
        test_accuracy=runs.headline_accuracy(metrics["test"]),
    )
    if "bit_accuracy" in (metrics["test"] or {}):
        row["test_bit_accuracy"] = metrics["test"]["bit_accuracy"]
    by_length = metrics.get("by_length")
    if by_length:
        exact = {int(n): scores["exact_accuracy"] for n, scores in by_length.items()}
        low, high = training_range(config)
        in_range = [value for n, value in exact.items() if low <= n <= high]
        row.update(
            lowest_exact_in_training_range=min(in_range) if in_range else None,
            lengths_all_exact=f"{sum(value == 1.0 for value in exact.values())}/{len(exact)}",
            lowest_exact=min(exact.values()),
            longest_length=max(exact),
            exact_at_longest=exact[max(exact)],
        )
    return row


def training_range(config: dict) -> tuple[int, int]:
    if "train_length" in config:
        return config["train_length"], config["train_length"]
    return config.get("min_length", 0), config.get("max_length", 0)


def write_results(out: Path, document: dict, histories: dict, configs: dict, by_length: dict) -> None:
    rows = document["rows"]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    runs.write_json_atomic(out / "sweep.json", document)
    tables.write_csv(out / "sweep.csv", rows, columns)
    runs.write_text_atomic(out / "sweep.md", tables.markdown(rows, columns, format_cell=format_cell) + "\n")
    plots.sweep_curves(out / "val_loss.png", histories, configs)
    if by_length:
        plots.sweep_accuracy_by_length(out / "accuracy_by_length.png", by_length)


def format_cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if value <= 1.5 else f"{value:,.1f}"
    return "" if value is None else str(value)
