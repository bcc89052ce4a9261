"""Train samples/s of one task on one backend at several `steps_per_execution`, one process a fit, in turns.

    python scripts/steps_per_execution.py TASK BACKEND [--counts 1,4,8] [--rounds 2] [-o KEY=VALUE ...]

Each round fits every count once (`kerasrnn fit TASK --backend BACKEND -o steps_per_execution=N`, through
`kerasrnn bench`'s own runner), so that the VM's drift hits every count alike; prints each fit and then each
count's median, range and test accuracy (equal accuracies: the same steps were trained).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from kerasrnn.studies import bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task")
    parser.add_argument("backend")
    parser.add_argument("--counts", default="1,4,8")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("-o", dest="options", action="append", default=[], help="KEY=VALUE (JSON value)")
    parser.add_argument("--out", type=Path, default=Path("runs/steps-per-execution"))
    args = parser.parse_args()
    options = {key: json.loads(value) for key, value in (pair.split("=", 1) for pair in args.options)}
    counts = [int(count) for count in args.counts.split(",")]
    speeds, accuracies = {count: [] for count in counts}, {}
    for round_number in range(args.rounds):
        for count in counts:
            run_dir = args.out / f"{args.task}-{args.backend}-{count}"
            row = bench.bench_backend(args.task, args.backend, {**options, "steps_per_execution": count}, run_dir)
            speeds[count].append(row.get("train_samples_per_second") or float("nan"))
            accuracies[count] = row.get("test_accuracy")
            print(f"round {round_number + 1}, {count} a call: {row.get('train_samples_per_second')} samples/s, "
                  f"{row.get('status')}", flush=True)  # fmt: skip
    print(f"\n{args.task} on {args.backend}, {options}")
    for count in counts:
        values = speeds[count]
        print(f"{count:>3} a call: median {statistics.median(values):,.0f} samples/s ({min(values):,.0f}-{max(values):,.0f}), "
              f"test accuracy {accuracies[count]}")  # fmt: skip


if __name__ == "__main__":
    main()
