"""How long the command line takes to refuse bad input (issue: each under 1 s on 2 cores), beside `--help`.

    python scripts/refusal_times.py [--repeat 5]

Each command runs as a whole process (`kerasrnn ...` from this Python's environment), the commands taking
turns round after round; prints the median, minimum and maximum wall time of each, in seconds.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "saved_models" / "mnist-pretrained"
COMMANDS = {
    "kerasrnn --help": ["--help"],
    "kerasrnn evaluate runs/nope": ["evaluate", "runs/nope"],
    "kerasrnn predict saved_models/mnist-pretrained nope.png": ["predict", str(PRETRAINED), "nope.png"],
    "kerasrnn fit adder -o epoch=2": ["fit", "adder", "-o", "epoch=2"],
    "kerasrnn fit adder --cell bad": ["fit", "adder", "--cell", "bad"],
    "kerasrnn fit adder --dry-run": ["fit", "adder", "--dry-run"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    times = {name: [] for name in COMMANDS}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeat):
            for name, command in COMMANDS.items():
                started = time.perf_counter()
                subprocess.run([sys.executable, "-m", "kerasrnn_cli.main", *command], cwd=folder, capture_output=True)
                times[name].append(time.perf_counter() - started)
    print(f"| command | median s | min | max |  ({args.repeat} runs each, taking turns)")
    print("| --- | --- | --- | --- |")
    for name, seconds in times.items():
        print(f"| `{name}` | {statistics.median(seconds):.2f} | {min(seconds):.2f} | {max(seconds):.2f} |")


if __name__ == "__main__":
    main()
