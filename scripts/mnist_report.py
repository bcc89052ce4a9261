"""Fit the MNIST floor models (10 epochs each) and print a Markdown table.

    python scripts/mnist_report.py [--out runs/mnist-report] [--epochs 10]

Each row is one `kerasrnn fit mnist ...` command, shown in the table; the
figures are read back from each run's metrics.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kerasrnn.studies.reports import fit_run, machine_line
from kerasrnn.studies.tables import markdown

# The floor models on their defaults: the task's recipes (docs/configuration.md) give the gated cells
# Adam 3e-3, GRU and bidirectional models augmented images, the one-way LSTM input dropout; SimpleRNN keeps
# the base defaults.
SETTINGS = ("lr", "lr_schedule", "clipnorm", "augment", "dropout")
MODELS = [
    ("LSTM 128", ["--cell", "lstm", "--units", "128"]),
    ("GRU 128", ["--cell", "gru", "--units", "128"]),
    ("bidirectional GRU 128", ["--cell", "gru", "--units", "128", "--bidirectional"]),
    ("SimpleRNN 128", ["--cell", "rnn", "--units", "128"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/mnist-report"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--only", help="comma-separated row names to run")
    args = parser.parse_args()
    rows = []
    for name, options in MODELS:
        if args.only and name not in args.only.split(","):
            continue
        run_dir = args.out / name.replace(" ", "-").lower()
        command = ["fit", "mnist", *options, "--epochs", str(args.epochs)]
        metrics, _ = fit_run(command, run_dir)  # finished runs are reused
        test, config = metrics["test"], metrics["config"]
        rows.append({
            "model (10 epochs)": name,
            "test accuracy": f"{test['accuracy']:.2%}",
            "test loss": f"{test['loss']:.4f}",
            "train time": f"{metrics['train_seconds']:.0f} s",
            "steady samples/s": f"{metrics['train_samples_per_second']:.0f}",
            "settings": " ".join(f"`{key}={json.dumps(config[key])}`" for key in SETTINGS),
            "command": f"`kerasrnn {' '.join(command)}`",
        })  # fmt: skip
        print(f"done: {name}", file=sys.stderr, flush=True)
    print(machine_line() + "\n")
    print(markdown(rows, list(rows[0])))


if __name__ == "__main__":
    main()
