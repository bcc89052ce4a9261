"""SIGKILL the default adder fit at random moments, resume each, and check the runs are whole.

    python scripts/kill_resume.py [--kills 5] [--seed 0] [--out saved_models/kill-resume]

First an uninterrupted `kerasrnn fit adder --loss mse` (its wall time bounds the random moments), then for each
kill: the same fit, SIGKILL at a random moment (startup, an epoch, an epoch's end, the final evaluation and
figures), the fit again with `--resume` (not when the kill came after metrics.json: nothing to resume),
and `kerasrnn evaluate DIR --lengths 1-64`. The resume is the same command with `--resume` (which starts the
fit when the kill came before anything was saved). Prints a Markdown row per kill: when, the epochs the run ends with,
whether its history and test results equal the uninterrupted fit's, and the lowest exact accuracy over 1..64.
"""

import argparse
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from kerasrnn import runs
from kerasrnn.backend import cli_command
from kerasrnn.studies.reports import machine_line

FIT = ["fit", "adder", "--loss", "mse", "--quiet"]


def timed_fit(out: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        cli_command(*FIT, "--out", str(out), "--overwrite"), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - started


def killed_fit(out: Path, after: float) -> str:
    """The fit killed `after` seconds in; where it was (from what the run directory holds)."""
    fit = subprocess.Popen(
        cli_command(*FIT, "--out", str(out), "--overwrite"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(after)
    fit.send_signal(signal.SIGKILL)
    fit.wait()
    if runs.is_complete(out):
        return "after metrics.json"
    if (out / runs.MODEL_FILE).exists():
        return "final evaluation"
    epochs = runs.completed_epochs(out)
    return f"epoch {epochs + 1}" if (out / runs.CONFIG_FILE).exists() else "startup"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("saved_models/kill-resume"))
    args = parser.parse_args()
    whole = args.out / "uninterrupted"
    wall = timed_fit(whole)
    reference = runs.read_metrics(whole)
    print(machine_line(), file=sys.stderr)
    print(f"uninterrupted fit: {wall:.1f} s wall\n")
    print(
        "| kill | moment (s) | where | resumes | epochs | history and test as uninterrupted | lowest exact accuracy, lengths 1-64 |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    rng = random.Random(args.seed)
    for kill in range(1, args.kills + 1):
        out = args.out / f"kill-{kill}"
        moment = rng.uniform(0.5, wall)
        where = killed_fit(out, moment)
        resumes = 0
        while not runs.is_complete(out) and resumes < 3:
            subprocess.run(cli_command(*FIT, "--out", str(out), "--resume"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            resumes += 1
        if not runs.is_complete(out):
            print(f"| {kill} | {moment:.1f} | {where} | {resumes} | - | NOT COMPLETE | - |")
            continue
        metrics = runs.read_metrics(out)
        same = (out / runs.HISTORY_FILE).read_bytes() == (whole / runs.HISTORY_FILE).read_bytes() and metrics[
            "test"
        ] == reference["test"]
        evaluated = subprocess.run(
            cli_command("evaluate", str(out), "--lengths", "1-64", "--json"), capture_output=True, text=True, check=True
        )
        lowest = min(scores["exact_accuracy"] for scores in json.loads(evaluated.stdout)["by_length"].values())
        print(
            f"| {kill} | {moment:.1f} | {where} | {resumes} | {metrics['epochs_run']} | {'yes' if same else 'NO'} | {lowest:.4f} |"
        )


if __name__ == "__main__":
    main()
