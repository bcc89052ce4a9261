"""Export one run of each task to every format and print a Markdown table of size, speed and parity.

    python scripts/export_report.py [--out runs/export-report]

The runs: `kerasrnn fit adder` and `kerasrnn fit recall` on their defaults,
and `kerasrnn fit mnist --epochs 1 --limit 5000` (the default LSTM-128: size,
speed and parity depend on the architecture, not on how long it trained).
Finished runs in --out are reused. For each format: the artifact's size, the
median latency of one sample (adder: 10 bits; recall: 10 digits; mnist: one
image), the throughput of a batch of 256, and the largest absolute difference
from the Keras model that `kerasrnn export` measured (random task-like
inputs; time steps 1, 5, 21, 65 for adder and recall, 28 for mnist).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kerasrnn.studies.reports import fit_run, machine_line
from kerasrnn.studies.tables import markdown

RUNS = {
    "adder": ["fit", "adder"],
    "recall": ["fit", "recall"],
    "mnist": ["fit", "mnist", "--epochs", "1", "--limit", "5000"],
}
STEPS = {"adder": 11, "recall": 10, "mnist": 28}


def ensure_run(task: str, out: Path) -> Path:
    fit_run(RUNS[task], out / task)  # a finished run is reused
    return out / task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/export-report"))
    args = parser.parse_args()
    run_dirs = {task: ensure_run(task, args.out) for task in RUNS}

    from kerasrnn.backend import select_backend

    select_backend("tensorflow")
    import numpy as np

    from kerasrnn import runs
    from kerasrnn.export import artifacts, writers
    from kerasrnn.tasks import get_task

    print(machine_line() + "\n")
    columns = ["task", "format", "size", "latency, 1 sample", "throughput, batch 256", "largest difference from Keras"]
    rows = []
    for task_name, run_dir in run_dirs.items():
        model = runs.load_model(run_dir)
        x = get_task(task_name).sample_inputs(np.random.default_rng(0), 256, (STEPS[task_name], model.input_shape[-1]))
        keras_speed = artifacts.measure_speed(model, x)
        reference = ["Keras model (reference)", (run_dir / runs.MODEL_FILE).stat().st_size, keras_speed, "0"]
        rows.append(dict(zip(columns, [task_name, *table_cells(*reference)])))
        for fmt in writers.FORMATS:
            metadata = writers.export_run(run_dir, fmt, log=lambda *_: None)
            speed = artifacts.measure_speed(artifacts.load_artifact(metadata["artifact_path"], metadata), x)
            difference = f"{metadata['parity']['max_abs_difference']:.1e}"
            rows.append(dict(zip(columns, [task_name, *table_cells(fmt, metadata["size_bytes"], speed, difference)])))
    print(markdown(rows, columns))


def table_cells(fmt: str, size_bytes: int, speed: dict, difference: str) -> list[str]:
    return [
        fmt,
        f"{size_bytes / 1024:.0f} KiB",
        f"{speed['latency_ms']:.2f} ms",
        f"{speed['samples_per_second']:,.0f} /s",
        difference,
    ]


if __name__ == "__main__":
    main()
