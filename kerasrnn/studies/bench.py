"""`kerasrnn bench`: the same fit on each backend, each in its own process, in one table.

Keras fixes its backend when it is first imported, so every backend runs in a
fresh `kerasrnn fit` process with the same task options and seed. The child
writes an ordinary run directory; this module reads its metrics.json and
adds the child's peak resident memory (from the kernel, via os.wait4).

With `reference=True` two hand-written PyTorch loops of the same model and
batch add a row each (kerasrnn.torch.reference): the plain loop, the fastest
one writes by hand, and the course notebook's loop as written; every row then
says its speed against the plain loop.

With `repeat=N` every row runs N times, the rows taking turns (each round starts one
row later), and the table shows the median run of each row with the range of its
samples/s: on a shared machine one process can run a quarter slower than the next.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from kerasrnn import runs
from kerasrnn.backend import BACKENDS, INSTALL_HINTS, backend_installed, cli_command
from kerasrnn.config import format_option_value
from kerasrnn.errors import UserError, require
from kerasrnn.studies import reports, tables

TABLE_COLUMNS = [
    ("backend", "backend"),
    ("devices", "devices"),
    ("status", "status"),
    ("precision", "kernels in"),
    ("first_epoch_seconds", "first epoch (s, incl. tracing)"),
    ("train_samples_per_second", "train samples/s (steady)"),
    ("train_samples_per_second_range", "range over runs"),
    ("vs_plain_loop", "vs plain PyTorch loop"),
    ("predict_samples_per_second", "predict samples/s"),
    ("peak_memory_mb", "peak memory (MB)"),
    ("test_accuracy", "test accuracy"),
    ("test_loss", "test loss"),
    ("wall_seconds", "wall time (s)"),
]


ALWAYS_SHOWN = ("backend", "devices", "status")


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


def parse_device_counts(text: str) -> list[int]:
    """`--devices 1,2,4`: the device counts to compare."""
    from kerasrnn.training.distribution import parse_devices

    counts = [parse_devices(part) for part in text.split(",") if part.strip()]
    require(counts and all(isinstance(count, int) for count in counts), f"--devices takes counts such as 1,2, got {text!r}")
    return list(dict.fromkeys(counts))


def fit_arguments(options: dict) -> list[str]:
    """Task options as `-o key=value` pairs: the child validates them exactly as `kerasrnn fit` does."""
    return [part for key, value in options.items() for part in ("-o", f"{key}={json.dumps(value)}")]


def bench_backend(task: str, backend: str, options: dict, out: Path, devices: int = 1) -> dict:
    """One backend's row on `devices` devices: fit in a fresh process, then read the run's metrics."""
    if not backend_installed(backend):
        return {"backend": backend, "devices": devices, "status": f"not installed: {INSTALL_HINTS[backend]}"}
    run_dir = out / (backend if devices == 1 else f"{backend}-{devices}-devices")
    command = cli_command("fit", task, "--backend", backend, "--devices", str(devices),
                          "--out", str(run_dir), "--overwrite", "--quiet", *fit_arguments(options))  # fmt: skip
    status, wall, memory, stderr = run_measured(command)
    if status != 0:
        return {"backend": backend, "devices": devices, "status": f"failed: {stderr.splitlines()[-1] if stderr else status}"}
    metrics = runs.read_metrics(run_dir)
    return row_from_metrics(backend, metrics, wall, memory)


def row_from_metrics(name: str, metrics: dict, wall: float, memory: float) -> dict:
    placement = metrics.get("distribution", {})
    return {
        "backend": name,
        "devices": len(placement.get("devices", [None])),
        "logical_cpu_devices": placement.get("logical_cpu_devices", False),
        "status": "ok",
        "device": metrics.get("device"),
        "precision": metrics.get("precision", "float32"),  # runs from before the option trained in float32
        "first_epoch_seconds": metrics["epoch_seconds"][0],
        "train_samples_per_second": metrics["train_samples_per_second"],
        "predict_samples_per_second": metrics.get("predict_samples_per_second"),
        "peak_memory_mb": round(memory, 1),
        "test_accuracy": runs.headline_accuracy(metrics["test"]),
        "test_loss": (metrics["test"] or {}).get("loss"),
        "wall_seconds": round(wall, 1),
        "test": metrics["test"],
    }


def bench_reference(task: str, options: dict, out: Path, loop: str = "plain") -> dict:
    """A hand-written PyTorch loop's row (mnist only): `plain` or `notebook` (kerasrnn.torch.reference)."""
    from kerasrnn.torch.reference import LOOPS

    name = LOOPS[loop]
    if task != "mnist":
        return {"backend": name, "status": "the reference loops exist for mnist only"}
    if not backend_installed("torch"):
        return {"backend": name, "status": f"not installed: {INSTALL_HINTS['torch']}"}
    out.mkdir(parents=True, exist_ok=True)
    result_file = out / f"torch-reference-{loop}.json"
    command = [sys.executable, "-m", "kerasrnn.torch.reference", json.dumps(options), str(result_file), loop]
    status, wall, memory, stderr = run_measured(command)
    if status != 0:
        return {"backend": name, "status": f"failed: {stderr.splitlines()[-1] if stderr else status}"}
    return row_from_metrics(name, json.loads(result_file.read_text()), wall, memory)


def bench(task: str, backends: list[str], options: dict, out: Path, reference: bool = False, log=print,
          devices: list[int] = (1,), repeat: int = 1) -> dict:  # fmt: skip
    """Fit `task` with `options` on each backend and device count (and the reference loops), `repeat` times
    each, taking turns; write the tables; return the results (each row's median run), with a scaling table
    (samples/s per device count) when more than one count ran."""
    from kerasrnn.tasks import get_task

    get_task(task).make_config(dict(options))  # refuse bad options before starting any process
    require(isinstance(repeat, int) and repeat >= 1, f"--repeat must be a whole number >= 1, got {repeat!r}")
    out = Path(out)
    require(not out.exists() or out.is_dir(), f"{out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    rows = [
        (
            f"{task} on {backend}" + (f", {count} devices" if count != 1 else ""),
            lambda b=backend, c=count: bench_backend(task, b, options, out, c),
        )
        for backend in backends
        for count in devices
    ]
    if reference:
        rows += [
            (f"{task} as a {loop} PyTorch loop", lambda loop=loop: bench_reference(task, options, out, loop))
            for loop in ("plain", "notebook")
        ]
    runs_of_rows = [[] for _ in rows]
    for round_number in range(repeat):
        for index in rotated(range(len(rows)), round_number):
            name, run = rows[index]
            log(f"kerasrnn bench: {name}" + (f" (round {round_number + 1} of {repeat})" if repeat > 1 else ""))
            runs_of_rows[index].append(run())
    results = with_plain_loop_ratio([median_run(measured) for measured in runs_of_rows])
    document = {
        "task": task,
        "options": options,
        "machine": reports.machine_description(),
        "date": time.strftime("%Y-%m-%d"),
        "repeat": repeat,
        "results": results,
    }
    document["scaling"] = scaling(results) if len(devices) > 1 else []
    document["fastest"] = fastest_backend(task, results, options)
    write_tables(document, out)
    return document


def rotated(indices, shift: int) -> list[int]:
    """The rows' order in one round: each round starts one row later, so no row always runs first or last."""
    indices = list(indices)
    shift %= max(len(indices), 1)
    return indices[shift:] + indices[:shift]


def median_run(measured: list[dict]) -> dict:
    """A row's median run by train samples/s (the lower middle one of an even count), with the range over its runs."""
    finished = sorted((row for row in measured if row.get("status") == "ok"), key=lambda row: row["train_samples_per_second"])
    if not finished:
        return measured[-1]
    row = dict(finished[(len(finished) - 1) // 2])
    if len(measured) > 1:
        speeds = [run["train_samples_per_second"] for run in finished]
        row["train_samples_per_second_range"] = f"{min(speeds):,.0f}-{max(speeds):,.0f}"
        row["runs"] = len(finished)
    return row


def with_plain_loop_ratio(results: list[dict]) -> list[dict]:
    """Each row's samples/s against the plain PyTorch loop's, where that loop ran."""
    from kerasrnn.torch.reference import LOOPS

    plain = next((row for row in results if row["backend"] == LOOPS["plain"] and row.get("status") == "ok"), None)
    if plain is None:
        return results
    return [
        {**row, "vs_plain_loop": f"{row['train_samples_per_second'] / plain['train_samples_per_second']:.2f}x"}
        if row.get("status") == "ok" else row
        for row in results
    ]  # fmt: skip


def finished_backend_rows(results: list[dict]) -> list[dict]:
    """The rows of backends that ran (not failed ones, not the reference loops)."""
    return [row for row in results if row.get("status") == "ok" and row["backend"] in BACKENDS]


def fastest_backend(task: str, results: list[dict], options: dict) -> str | None:
    """One line naming the backend that trained fastest here, and the command that uses it (None if none ran)."""
    finished = finished_backend_rows(results)
    if not finished:
        return None
    best = max(finished, key=lambda row: row["train_samples_per_second"])
    flags = "".join(f" -o {key}={format_option_value(value)}" for key, value in options.items())
    on_devices = f" on {best['devices']} devices" if best.get("devices", 1) != 1 else ""
    device_flag = f" --devices {best['devices']}" if on_devices else ""
    return (
        f"fastest backend for {task} here: {best['backend']}{on_devices} ({best['train_samples_per_second']:,.0f} samples/s); "
        f"use it with `kerasrnn fit {task} --backend {best['backend']}{device_flag}{flags}`"
    )


SCALING_COLUMNS = [
    ("backend", "backend"),
    ("devices", "devices"),
    ("train_samples_per_second", "train samples/s"),
    ("speedup", "vs 1 device"),
    ("per_device", "samples/s per device"),
]


def scaling(results: list[dict]) -> list[dict]:
    """Samples/s per device count and backend, against the same backend on one device."""
    finished = finished_backend_rows(results)
    single = {row["backend"]: row["train_samples_per_second"] for row in finished if row["devices"] == 1}
    return [
        {
            "backend": row["backend"],
            "devices": row["devices"],
            "train_samples_per_second": row["train_samples_per_second"],
            "speedup": row["train_samples_per_second"] / single[row["backend"]] if row["backend"] in single else None,
            "per_device": row["train_samples_per_second"] / row["devices"],
            "logical_cpu_devices": row["logical_cpu_devices"],
        }
        for row in finished
    ]


def scaling_table(rows: list[dict]) -> str:
    """The scaling table in Markdown, with a note when logical CPU devices (the same cores) took part."""
    table = tables.markdown(rows, [key for key, _ in SCALING_COLUMNS], [title for _, title in SCALING_COLUMNS], format_cell)
    if any(row["logical_cpu_devices"] for row in rows):
        table += (
            "\n\nThe devices above 1 are logical CPU devices sharing this machine's same cores: the table tests the "
            "distributed set-up, it cannot show a speed-up."
        )
    return table


def write_tables(document: dict, out: Path) -> None:
    """bench.json, bench.csv, bench.md and bench.png in `out`."""
    from kerasrnn.insight import plots

    runs.write_json_atomic(out / "bench.json", document)
    tables.write_csv(out / "bench.csv", document["results"], [key for key, _ in TABLE_COLUMNS])
    scaling_part = "\n\n" + scaling_table(document["scaling"]) if document["scaling"] else ""
    runs.write_text_atomic(out / "bench.md", markdown_table(document["results"]) + scaling_part + "\n")
    plots.bench_bars(out / "bench.png", document)


def markdown_table(results: list[dict]) -> str:
    """The table, without the columns no row fills (the range without repeats, the ratio without the plain loop)."""
    columns = [
        (key, title) for key, title in TABLE_COLUMNS if key in ALWAYS_SHOWN or any(row.get(key) is not None for row in results)
    ]
    return tables.markdown(results, [key for key, _ in columns], [title for _, title in columns], format_cell)


def format_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 10 else f"{value:,.0f}"
    return str(value)
