"""What the probes find in the default runs, against issue floors, and the figures of docs/inspect.md.

    python scripts/inspect_report.py [--runs saved_models/inspect-report] [--figures docs/figures/inspect]

Fits the default adder (`kerasrnn fit adder --loss mse`) and recall (`kerasrnn fit recall`) unless complete
runs are there, inspects them and the pretrained mnist run (on a photographed 4 made by kerasrnn.digits.handwriting,
a writer the pretrained run never saw), and prints a Markdown table of each probe against its floor.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from kerasrnn import runs
from kerasrnn.backend import cli_command
from kerasrnn.digits import handwriting
from kerasrnn.studies.reports import fit_run, machine_line

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "saved_models" / "mnist-pretrained"


def inspect(run: Path, *arguments: str, out: Path) -> dict:
    done = subprocess.run(
        cli_command("inspect", str(run), *arguments, "--out", str(out), "--json"), capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"kerasrnn inspect {run} failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def photographed_four(folder: Path) -> Path:
    path = folder / "photographed-4.jpg"
    handwriting.digit_image(4, "ballpoint", np.random.default_rng(11)).save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "saved_models" / "inspect-report")
    parser.add_argument("--figures", type=Path, default=ROOT / "docs" / "figures" / "inspect")
    args = parser.parse_args()
    adder_run, recall_run = args.runs / "adder", args.runs / "recall"
    fit_run(["fit", "adder", "--loss", "mse"], adder_run)
    fit_run(["fit", "recall"], recall_run)
    scratch = Path(tempfile.mkdtemp())
    photo = photographed_four(scratch)
    print(machine_line(), file=sys.stderr)

    adder_64 = inspect(adder_run, "--length", "64", out=scratch / "adder-64")["probes"]["carry"]["by_step"]
    recall = inspect(recall_run, "--length", "10", out=scratch / "recall-10")
    kth, index = recall["probes"]["kth_digit"]["by_step"], runs.read_config(recall_run)["index"]
    mnist = inspect(PRETRAINED, str(photo), out=args.figures / "mnist")
    figures = [Path(path) for path in mnist["figures"]]
    figures += [Path(p) for p in inspect(adder_run, "11010010", "1011011", out=args.figures / "adder")["figures"]]
    figures += [Path(p) for p in inspect(recall_run, *"3141592653", out=args.figures / "recall")["figures"]]
    shutil.rmtree(scratch)

    rows = [
        ("adder carry, 64-bit sums, every step", min(adder_64), ">= 0.99"),
        (f"recall kth_digit, steps before K={index} is read (highest)", max(kth[:index]), "<= 0.35"),
        (f"recall kth_digit, from step {index + 1} on (lowest)", min(kth[index:]), ">= 0.95"),
        ("mnist (pretrained) class, last row", mnist["probes"]["class"]["by_step"][-1], ">= 0.95"),
    ]
    print("| probe | accuracy | floor |\n| --- | --- | --- |")
    for name, value, floor in rows:
        print(f"| {name} | {value:.3f} | {floor} |")
    print(f"\nrecall kth_digit by step: {' '.join(f'{value:.2f}' for value in kth)}")
    print(f"mnist class by row: {' '.join(f'{value:.2f}' for value in mnist['probes']['class']['by_step'])}")
    print(f"mnist photographed 4 read as {mnist['rows'][0]['label']} ({mnist['rows'][0]['confidence']:.1%})")
    print("figures: " + ", ".join(str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path) for path in figures))


if __name__ == "__main__":
    main()
