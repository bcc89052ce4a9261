"""A torch-backend mnist fit on a quiet machine and beside one busy process, with the toolkit's thread
count chosen from the step times (kerasrnn.torch.threads.ThreadGovernor) and with a fixed count.

    python scripts/busy_machine.py [--rounds 2] [--beside python|torch] [-o KEY=VALUE ...]

Each fit is `kerasrnn fit mnist --backend torch` in a process of its own (default options: LSTM 128,
12,800 images, 2 epochs, no augmentation); the busy process is a Python loop that keeps one core
busy (`--beside python`, the default) or a second PyTorch training loop with PyTorch's own thread
count, whose threads spin on every core (`--beside torch`). The variants alternate for `--rounds` rounds; the table gives each one's median steady
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
from kerasrnn.studies.bench import fit_arguments  # noqa: E402
from kerasrnn.studies.reports import machine_description  # noqa: E402
from kerasrnn.studies.tables import markdown  # noqa: E402

DEFAULT_OPTIONS = {"cell": "lstm", "limit": 12800, "epochs": 2, "augment": False}
# A thread count the user sets (OMP_NUM_THREADS) is kept as it is: that is the fixed variant.
VARIANTS = {
    "chosen from step times (default)": {},
    f"fixed: all {os.cpu_count()} (OMP_NUM_THREADS)": {"OMP_NUM_THREADS": str(os.cpu_count())},
}


TORCH_LOOP = """
import torch
lstm, head = torch.nn.LSTM(28, 128, batch_first=True), torch.nn.Linear(128, 10)
optimizer = torch.optim.Adam([*lstm.parameters(), *head.parameters()])
x, y = torch.rand(64, 28, 28), torch.randint(0, 10, (64,))
while True:
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(head(lstm(x)[0][:, -1]), y).backward()
    optimizer.step()
"""
BESIDE = {"python": "a busy Python loop", "torch": "a second PyTorch loop"}
BUSY_PROCESSES = {"python": [sys.executable, "-c", "while True: pass"], "torch": [sys.executable, "-c", TORCH_LOOP]}


def fit_samples_per_second(options: dict, variables: dict, busy: list | None, out: Path) -> float:
    """`busy`: the command of the process to run beside the fit, or None."""
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    env.update(variables)
    busy_process = subprocess.Popen(busy, env={**os.environ, "KERAS_BACKEND": "torch"}) if busy else None
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
    parser.add_argument("--beside", choices=sorted(BUSY_PROCESSES), default="python", help="what keeps the machine busy")
    parser.add_argument("-o", "--option", action="append", default=[], help="a fit option KEY=VALUE (JSON value)")
    args = parser.parse_args()
    options = {**DEFAULT_OPTIONS, **{key: json.loads(value) for key, value in (pair.split("=", 1) for pair in args.option)}}
    speeds = {(name, busy): [] for name in VARIANTS for busy in (False, True)}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.rounds):
            for (name, busy), values in speeds.items():
                neighbour = BUSY_PROCESSES[args.beside] if busy else None
                values.append(fit_samples_per_second(options, VARIANTS[name], neighbour, Path(folder) / "run"))
    print(f"{machine_description()}; kerasrnn fit mnist --backend torch {' '.join(fit_arguments(options))}; "
          f"median of {args.rounds} fits each, alternating\n")  # fmt: skip
    rows = []
    for name in VARIANTS:
        quiet, busy = (statistics.median(speeds[name, flag]) for flag in (False, True))
        for flag, median in ((False, quiet), (True, busy)):
            values = speeds[name, flag]
            rows.append({"torch threads": name, "beside": BESIDE[args.beside] if flag else "nothing",
                         "train samples/s": f"{median:,.0f}", "range": f"{min(values):,.0f}-{max(values):,.0f}",
                         "of quiet": f"{busy / quiet:.2f}x" if flag else ""})  # fmt: skip
    print(markdown(rows, list(rows[0])))


if __name__ == "__main__":
    main()
