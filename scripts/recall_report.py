"""Fit the recall models on their defaults (and a few variants) and print a Markdown table.

    python scripts/recall_report.py [--out runs/recall-report] [--only TEXT]

Each row: `kerasrnn fit recall --cell C --units N [options]` (K=2, lengths 3..10), the settings it
trained (from its config.json), its wall time (process start to exit), the lowest accuracy over
lengths 3..10 and the accuracy at L=50, both read from the run's metrics.json (1,000 fresh
sequences per length). `--only TEXT` fits just the rows whose name contains TEXT.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kerasrnn.studies.reports import fit_run, machine_line
from kerasrnn.studies.tables import markdown

# The options that differ between the rows' configurations, shown in the settings column.
SETTINGS = ("batch_size", "lr", "lr_schedule", "epochs", "clipnorm", "readout_units", "curriculum_epochs", "candidates")
# (cell, units, what differs from the defaults, its options): the defaults of the course's grid first, then
# other seeds (one seed proves little), then the recipes switched off.
BATCH_256 = ["--batch-size", "256", "--lr", "0.02", "--epochs", "40", "-o", "lr_schedule=cosine"]
NO_SMALL_STATE_RECIPE = ["-o", "readout_units=0", "-o", "curriculum_epochs=0", "-o", "candidates=1", "--epochs", "40"]
NO_GRU_RECIPE = ["-o", "readout_units=0", "-o", "candidates=1", *BATCH_256]
MODELS = [
    *[(cell, units, "", []) for cell, units in [("lstm", 10), ("gru", 10), ("gru", 5), ("lstm", 5), ("rnn", 10), ("lstm", 2), ("gru", 2), ("rnn", 2)]],
    *[("lstm", 10, f"seed {seed}", ["--seed", str(seed)]) for seed in (1, 2)],
    *[("lstm", 2, f"seed {seed}", ["--seed", str(seed)]) for seed in (1, 2, 3, 4)],
    *[("gru", 2, f"seed {seed}", ["--seed", str(seed)]) for seed in (1, 2)],
    ("lstm", 10, "without its recipe", BATCH_256),
    ("lstm", 2, "without its recipe", NO_SMALL_STATE_RECIPE),
    *[("gru", 2, f"without its recipe{f', seed {seed}' if seed else ''}", [*NO_GRU_RECIPE, "--seed", str(seed)]) for seed in (0, 1, 2)],
]  # fmt: skip
NAMES = {"lstm": "LSTM", "gru": "GRU", "rnn": "SimpleRNN"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/recall-report"))
    parser.add_argument("--only", default="", help="fit only the rows whose name contains this text")
    args = parser.parse_args()
    print(machine_line() + "\n")
    rows = []
    for cell, units, variant, options in MODELS:
        name = f"{NAMES[cell]} {units}" + (f" ({variant})" if variant else "")
        if args.only not in name:
            continue
        run_dir = args.out / "-".join([cell, str(units), *variant.replace(",", "").split()])
        command = ["fit", "recall", "--cell", cell, "--units", str(units), *options]
        metrics, wall = fit_run(command, run_dir, reuse=False)  # the table reports each fit's wall time
        by_length, config = metrics["by_length"], metrics["config"]
        rows.append({
            "cell, units": name,
            "settings": " ".join(f"`{key}={json.dumps(config[key])}`" for key in SETTINGS),
            "lowest accuracy, lengths 3..10": f"{min(by_length[str(n)]['exact_accuracy'] for n in range(3, 11)):.2%}",
            "accuracy at L=50": f"{by_length['50']['exact_accuracy']:.2%}",
            "fit wall time": f"{wall:.0f} s",
            "command": f"`kerasrnn {' '.join(command)}`",
        })  # fmt: skip
        print(f"{name}: done", file=sys.stderr, flush=True)
    print(markdown(rows, list(rows[0])))


if __name__ == "__main__":
    main()
