"""Measure the adder's floors on this machine and print a Markdown table.

    python scripts/adder_report.py [--out runs/adder-report]

For each configuration: the wall time of `kerasrnn fit adder ...` (process
start to exit, so TensorFlow's import is included), exact accuracy at every
length 1..64 (`kerasrnn evaluate RUN --lengths 1-64 --json`), and exact sums
on random 300-bit numbers and on the longest carry chains (2**n - 1) + 1 and
(2**n - 1) + (2**n - 1) for n = 64 and 300 (`kerasrnn predict RUN A B --json`).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path

from kerasrnn.backend import cli_command
from kerasrnn.studies.reports import fit_run, machine_line
from kerasrnn.studies.tables import markdown

CONFIGS = [
    ("defaults, MSE", ["--loss", "mse"]),
    ("defaults, BCE", ["--loss", "bce"]),
    ("3 units, MSE", ["--loss", "mse", "--units", "3"]),
    ("3 units, BCE", ["--loss", "bce", "--units", "3"]),
    ("2 units, MSE", ["--loss", "mse", "--units", "2"]),
    ("2 units, BCE", ["--loss", "bce", "--units", "2"]),
]


def kerasrnn(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(cli_command(*args), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"kerasrnn {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def exact_on_long_sums(run_dir: Path) -> tuple[int, int]:
    """(right, asked) over random 300-bit sums and the 64- and 300-bit carry chains."""
    rng = random.Random(2026)
    cases = [(rng.getrandbits(300) | 1 << 299, rng.getrandbits(300)) for _ in range(5)]
    for n in (64, 300):
        cases += [(2**n - 1, 1), (2**n - 1, 2**n - 1)]
    right = 0
    for a, b in cases:
        result = json.loads(kerasrnn("predict", str(run_dir), format(a, "b"), format(b, "b"), "--json").stdout)
        right += int(result["sum"], 2) == a + b
    return right, len(cases)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/adder-report"))
    args = parser.parse_args()
    rows = []
    for name, options in CONFIGS:
        run_dir = args.out / name.replace(", ", "-").replace(" ", "-").lower()
        _, wall = fit_run(["fit", "adder", *options], run_dir, reuse=False)  # the table reports each fit's wall time
        by_length = json.loads(kerasrnn("evaluate", str(run_dir), "--lengths", "1-64", "--json").stdout)["by_length"]
        exact = [scores["exact_accuracy"] for scores in by_length.values()]
        perfect = sum(value == 1.0 for value in exact)
        right, asked = exact_on_long_sums(run_dir)
        rows.append({
            "configuration": name,
            "fit wall time": f"{wall:.1f} s",
            "lengths 1-64 with exact accuracy 1.0": f"{perfect}/64",
            "lowest exact accuracy, 1-64": f"{min(exact):.3f}",
            "exact at L=20": f"{by_length['20']['exact_accuracy']:.3f}",
            "300-bit sums and carry chains right": f"{right}/{asked}",
        })  # fmt: skip
        print(f"done: {name}", file=sys.stderr)
    print(machine_line() + "\n")
    print(markdown(rows, list(rows[0])))


if __name__ == "__main__":
    main()
