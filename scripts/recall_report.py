"""Fit the recall floor models on their defaults and print a Markdown table.

    python scripts/recall_report.py [--out runs/recall-report] [--only TEXT]

Each row: `kerasrnn fit recall --cell C --units N [options]` (K=2, lengths 3..10), its
wall time (process start to exit), the lowest accuracy over lengths 3..10 and
the accuracy at L=50, both read from the run's metrics.json (1,000 fresh
sequences per length). `--only TEXT` fits just the rows whose name contains TEXT
(e.g. `--only candidates`: the LSTM 2 floor command on seeds 0-4).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

# (cell, units, what differs from the defaults, its options). The extra rows: LSTM 10 on the
# former defaults (it holds up better at L=50 there), LSTM 2 with a nonlinear readout of its state,
# that with a length curriculum, and that with 32 side-by-side candidates on five seeds (one seed
# proves nothing about restarts).
FORMER_DEFAULTS = ["--batch-size", "64", "--lr", "0.01", "--epochs", "20", "-o", "lr_schedule=constant", "-o", "clipnorm=null"]
LSTM2_FLOOR = ["-o", "readout_units=32", "-o", "curriculum_epochs=15", "-o", "candidates=32", "--epochs", "30"]
MODELS = [
    ("lstm", 10, "", []), ("gru", 10, "", []), ("gru", 5, "", []), ("lstm", 5, "", []), ("rnn", 10, "", []),
    ("lstm", 2, "", []),
    ("lstm", 10, "former defaults", FORMER_DEFAULTS),
    ("lstm", 2, "readout 32", ["-o", "readout_units=32"]),
    ("lstm", 2, "readout 32, curriculum 15, 30 epochs", ["-o", "readout_units=32", "-o", "curriculum_epochs=15", "--epochs", "30"]),
    *[("lstm", 2, f"readout 32, curriculum 15, 32 candidates, 30 epochs, seed {seed}", LSTM2_FLOOR + ["--seed", str(seed)]) for seed in range(5)],
]  # fmt: skip
NAMES = {"lstm": "LSTM", "gru": "GRU", "rnn": "SimpleRNN"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/recall-report"))
    parser.add_argument("--only", default="", help="fit only the rows whose name contains this text")
    args = parser.parse_args()
    print(f"Machine: {platform.node()} ({platform.machine()}, 2 cores), {time.strftime('%Y-%m-%d')}\n")
    print("| cell, units | lowest accuracy, lengths 3..10 | accuracy at L=50 | fit wall time | command |")
    print("| --- | --- | --- | --- | --- |")
    for cell, units, variant, options in MODELS:
        name = f"{NAMES[cell]} {units}" + (f" ({variant})" if variant else "")
        if args.only not in name:
            continue
        run_dir = args.out / "-".join([cell, str(units), *variant.replace(",", "").split()])
        command = ["fit", "recall", "--cell", cell, "--units", str(units), *options]
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "kerasrnn_cli.main", *command, "--out", str(run_dir), "--overwrite", "--quiet"])
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"kerasrnn {' '.join(command)} failed")
        by_length = json.loads((run_dir / "metrics.json").read_text())["by_length"]
        lowest = min(by_length[str(n)]["exact_accuracy"] for n in range(3, 11))
        print(f"| {name} | {lowest:.2%} | {by_length['50']['exact_accuracy']:.2%} | {wall:.0f} s | `kerasrnn {' '.join(command)}` |", flush=True)


if __name__ == "__main__":
    main()
