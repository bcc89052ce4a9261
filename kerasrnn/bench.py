"""`kerasrnn bench`: the same fit on each backend, each in its own process, in one table.

Keras fixes its backend when it is first imported, so every backend runs in a
fresh `kerasrnn fit` process with the same task options and seed. The child
writes an ordinary run directory; this module reads its metrics.json and
adds the child's peak resident memory (from the kernel, via os.wait4).

With `reference=True` a plain PyTorch training loop of the same model and
batch (kerasrnn.torch_reference: what the course notebooks run) adds a row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from kerasrnn import runs, tables
from kerasrnn.backend import BACKENDS, INSTALL_HINTS, backend_installed
from kerasrnn.config import format_option_value
from kerasrnn.errors import UserError, require

TABLE_COLUMNS = [
    ("backend", "backend"),
    ("status", "status"),
    ("first_epoch_seconds", "first epoch (s, incl. tracing)"),
    ("train_samples_per_second", "train samples/s (steady)"),
    ("predict_samples_per_second", "predict samples/s"),
    ("peak_memory_mb", "peak memory (MB)"),
    ("test_accuracy", "test accuracy"),
    ("test_loss", "test loss"),
    ("wall_seconds", "wall time (s)"),
]


def parse_backends(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    require(names, "--backends needs at least one of tensorflow, jax, torch")
    unknown = [name for name in names if name not in BACKENDS]
    if unknown:
        raise UserError(f"unknown backend {unknown[0]!r}: choose from {', '.join(BACKENDS)}")
    return list(dict.fromkeys(names))


def run_measured(command: list[str], env: dict | None = None) -> tuple[int, float, float, str]:
    """(exit status, wall seconds, peak resident memory in MB, stderr tail) of a child process."""
    started = time.perf_counter()
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env) as child:
        stderr = child.stderr.read()
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, time.perf_counter() - started, usage.ru_maxrss / 1024, stderr.strip()[-400:]


def fit_arguments(options: dict) -> list[str]:
    """Task options as `-o key=value` pairs: the child validates them exactly as `kerasrnn fit` does."""
    return [part for key, value in options.items() for part in ("-o", f"{key}={json.dumps(value)}")]


def bench_backend(task: str, backend: str, options: dict, out: Path) -> dict:
    """One backend's row: fit in a fresh process, then read the run's metrics."""
    if not backend_installed(backend):
        return {"backend": backend, "status": f"not installed: {INSTALL_HINTS[backend]}"}
    run_dir = out / backend
    command = [sys.executable, "-m", "kerasrnn_cli.main", "fit", task, "--backend", backend,
               "--out", str(run_dir), "--overwrite", "--quiet", *fit_arguments(options)]  # fmt: skip
    status, wall, memory, stderr = run_measured(command)
    if status != 0:
        return {"backend": backend, "status": f"failed: {stderr.splitlines()[-1] if stderr else status}"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return row_from_metrics(backend, metrics, wall, memory)


def row_from_metrics(name: str, metrics: dict, wall: float, memory: float) -> dict:
    return {
        "backend": name,
        "status": "ok",
        "device": metrics.get("device"),
        "first_epoch_seconds": metrics["epoch_seconds"][0],
        "train_samples_per_second": metrics["train_samples_per_second"],
        "predict_samples_per_second": metrics.get("predict_samples_per_second"),
        "peak_memory_mb": round(memory, 1),
        "test_accuracy": metrics["test"]["accuracy"],
        "test_loss": metrics["test"]["loss"],
        "wall_seconds": round(wall, 1),
        "test": metrics["test"],
    }


def bench_reference(task: str, options: dict, out: Path) -> dict:
    """The plain PyTorch loop's row (mnist only: the course notebooks' baseline)."""
    name = "plain PyTorch loop"
    if task != "mnist":
        return {"backend": name, "status": "the reference loop exists for mnist only"}
    if not backend_installed("torch"):
        return {"backend": name, "status": f"not installed: {INSTALL_HINTS['torch']}"}
    out.mkdir(parents=True, exist_ok=True)
    result_file = out / "torch-reference.json"
    command = [sys.executable, "-m", "kerasrnn.torch_reference", json.dumps(options), str(result_file)]
    status, wall, memory, stderr = run_measured(command)
    if status != 0:
        return {"backend": name, "status": f"failed: {stderr.splitlines()[-1] if stderr else status}"}
    return row_from_metrics(name, json.loads(result_file.read_text()), wall, memory)


def bench(task: str, backends: list[str], options: dict, out: Path, reference: bool = False, log=print) -> dict:
    """Fit `task` with `options` on each backend (and the reference loop); write the tables; return the results."""
    from kerasrnn.tasks import get_task

    get_task(task).make_config(dict(options))  # refuse bad options before starting any process
    out = Path(out)
    require(not out.exists() or out.is_dir(), f"{out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for backend in backends:
        log(f"kerasrnn bench: {task} on {backend}")
        results.append(bench_backend(task, backend, options, out))
    if reference:
        log(f"kerasrnn bench: {task} as a plain PyTorch loop")
        results.append(bench_reference(task, options, out))
    document = {
        "task": task,
        "options": options,
        "machine": machine_description(),
        "date": time.strftime("%Y-%m-%d"),
        "results": results,
    }
    document["fastest"] = fastest_backend(task, results, options)
    write_tables(document, out)
    return document


def fastest_backend(task: str, results: list[dict], options: dict) -> str | None:
    """One line naming the backend that trained fastest here, and the command that uses it (None if none ran)."""
    finished = [row for row in results if row.get("status") == "ok" and row["backend"] in BACKENDS]
    if not finished:
        return None
    best = max(finished, key=lambda row: row["train_samples_per_second"])
    flags = "".join(f" -o {key}={format_option_value(value)}" for key, value in options.items())
    return (
        f"fastest backend for {task} here: {best['backend']} ({best['train_samples_per_second']:,.0f} samples/s); "
        f"use it with `kerasrnn fit {task} --backend {best['backend']}{flags}`"
    )


def machine_description() -> str:
    import platform

    return f"{platform.node()} ({platform.machine()}, {os.cpu_count()} cores)"


def write_tables(document: dict, out: Path) -> None:
    """bench.json, bench.csv, bench.md and bench.png in `out`."""
    from kerasrnn import plots

    runs.write_json_atomic(out / "bench.json", document)
    tables.write_csv(out / "bench.csv", document["results"], [key for key, _ in TABLE_COLUMNS])
    runs.write_text_atomic(out / "bench.md", markdown_table(document["results"]) + "\n")
    plots.bench_bars(out / "bench.png", document)


def markdown_table(results: list[dict]) -> str:
    return tables.markdown(results, [key for key, _ in TABLE_COLUMNS], [title for _, title in TABLE_COLUMNS], format_cell)


def format_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 10 else f"{value:,.0f}"
    return str(value)
