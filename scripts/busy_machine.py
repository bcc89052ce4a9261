"""A torch-backend mnist fit on a quiet machine and beside one busy process, with the toolkit's thread
count chosen from the step times (kerasrnn.torch_trainer.ThreadGovernor) and with a fixed count.

    python scripts/busy_machine.py [--rounds 2] [-o KEY=VALUE ...]

Each fit is `kerasrnn fit mnist --backend torch` in a process of its own (default options: LSTM 128,
12,800 images, 2 epochs, no augmentation); the busy process is a Python loop that keeps one core
busy. The variants alternate for `--rounds` rounds; the table gives each one's median steady
samples/s and range, and the share of its quiet speed it keeps beside the busy process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kerasrnn import runs  # noqa: E402
from kerasrnn.backend import cli_command  # noqa: E402
from kerasrnn.bench import fit_arguments  # noqa: E402
from kerasrnn.reports import machine_description  # noqa: E402
from kerasrnn.tables import markdown  # noqa: E402

DEFAULT_OPTIONS = {"cell": "lstm", "limit": 12800, "epochs": 2, "augment": False}
# A thread count the user sets (OMP_NUM_THREADS) is kept as it is: that is the fixed variant.
VARIANTS = {
    "chosen from step times (default)": {},
    f"fixed: all {os.cpu_count()} (OMP_NUM_THREADS)": {"OMP_NUM_THREADS": str(os.cpu_count())},
}


def fit_samples_per_second(options: dict, variables: dict, busy: bool, out: Path) -> float:
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    env.update(variables)
    busy_process = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        command = cli_command("fit", "mnist", "--backend", "torch", "--out", str(out), "--overwrite", "--quiet",
                              *fit_arguments(options))  # fmt: skip
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        if busy_process:
            busy_process.kill()
            busy_process.wait()
    return runs.read_metrics(out)["train_samples_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("-o", "--option", action="append", default=[], help="a fit option KEY=VALUE (JSON value)")
    args = parser.parse_args()
    options = {**DEFAULT_OPTIONS, **{key: json.loads(value) for key, value in (pair.split("=", 1) for pair in args.option)}}
    speeds = {(name, busy): [] for name in VARIANTS for busy in (False, True)}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.rounds):
            for (name, busy), values in speeds.items():
                values.append(fit_samples_per_second(options, VARIANTS[name], busy, Path(folder) / "run"))
    print(f"{machine_description()}; kerasrnn fit mnist --backend torch {' '.join(fit_arguments(options))}; "
          f"median of {args.rounds} fits each, alternating\n")  # fmt: skip
    rows = []
    for name in VARIANTS:
        quiet, busy = (statistics.median(speeds[name, flag]) for flag in (False, True))
        for flag, median in ((False, quiet), (True, busy)):
            values = speeds[name, flag]
            rows.append({"torch threads": name, "beside": "a busy process" if flag else "nothing",
                         "train samples/s": f"{median:,.0f}", "range": f"{min(values):,.0f}-{max(values):,.0f}",
                         "of quiet": f"{busy / quiet:.2f}x" if flag else ""})  # fmt: skip
    print(markdown(rows, list(rows[0])))


if __name__ == "__main__":
    main()
