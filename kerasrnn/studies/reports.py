"""What the report scripts (scripts/*_report.py) share: fit a run unless it is complete, and name the machine.

Keras-free: the fits run as `kerasrnn` processes, as a reader who reruns a report would run them.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from kerasrnn import runs
from kerasrnn.backend import cli_command


def fit_run(arguments: list[str], run_dir: Path, reuse: bool = True) -> tuple[dict, float | None]:
    """`kerasrnn ARGUMENTS --out RUN_DIR` unless `reuse` and the run there is complete: (its metrics.json, the
    fit's wall seconds, None when reused). The fit's output goes to stderr, so stdout carries only the table."""
    run_dir = Path(run_dir)
    wall = None
    if not (reuse and runs.is_complete(run_dir)):
        started = time.perf_counter()
        done = subprocess.run(cli_command(*arguments, "--out", str(run_dir), "--overwrite", "--quiet"), stdout=sys.stderr)
        if done.returncode != 0:
            raise SystemExit(f"kerasrnn {' '.join(arguments)} failed")
        wall = time.perf_counter() - started
    return runs.read_metrics(run_dir), wall


def cpu_model() -> str:
    """The CPU's model name (results differ between CPUs), from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description() -> str:
    """E.g. 'AMD EPYC 7B13, 2 cores, Linux x86_64 (host vm)': what a figure was measured on."""
    return f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.machine()} (host {platform.node()})"


def machine_line() -> str:
    """The line a report prints above its table: the machine and the date."""
    return f"Machine: {machine_description()}, {time.strftime('%Y-%m-%d')}"
