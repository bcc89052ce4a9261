"""How fast a long CSV of recorded sequences loads, and how much memory it takes (the floor: 2 million rows of
12 features under 30 s, peak memory under 3x its float32 array).

    python scripts/sequences_load.py [--rows 2000000] [--features 12] [--length 200]

Writes a long CSV (one row a step: `id`, `step`, the features, `label`; sequences of `--length` steps) into a
temporary folder, then reads it with the toolkit's reader in a fresh process, which reports the seconds and
how much its peak resident memory grew over the reading (the process's own start, Python and pyarrow
imported, is left out).
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
READ = """
import resource, sys, time
sys.path.insert(0, sys.argv[2])
import pyarrow.csv  # noqa: F401  imported before the measurement starts
from kerasrnn.sequences.readers import read_sequences
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
started = time.perf_counter()
recorded = read_sequences(sys.argv[1], id="id", order="step", label="label")
seconds = time.perf_counter() - started
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
print(seconds, grown, len(recorded.x), sum(len(x) for x in recorded.x))
"""


def write_csv(path: Path, rows: int, features: int, length: int) -> None:
    rng = np.random.default_rng(0)
    with path.open("w") as handle:
        handle.write(",".join(["id", "step", *(f"f{i}" for i in range(features)), "label"]) + "\n")
        block = 200_000
        for start in range(0, rows, block):
            count = min(block, rows - start)
            index = np.arange(start, start + count)
            values = rng.normal(0, 1, (count, features)).astype(np.float32)
            columns = [index // length, index % length, *values.T, (index // length) % 5]
            lines = np.column_stack([np.char.mod("%d", columns[0]), np.char.mod("%d", columns[1]),
                                     *(np.char.mod("%.5f", column) for column in columns[2:-1]),
                                     np.char.mod("%d", columns[-1])])  # fmt: skip
            handle.write("\n".join(",".join(line) for line in lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--features", type=int, default=12)
    parser.add_argument("--length", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "long.csv"
        started = time.perf_counter()
        write_csv(path, args.rows, args.features, args.length)
        print(
            f"wrote {args.rows:,} rows x {args.features} features ({path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - started:.0f} s"
        )
        done = subprocess.run([sys.executable, "-c", READ, str(path), str(ROOT)], capture_output=True, text=True, check=True)
        seconds, grown, sequences, steps = done.stdout.split()
        array = args.rows * args.features * 4
        print(f"read {int(sequences):,} sequences, {int(steps):,} steps in {float(seconds):.1f} s; peak memory grew by "
              f"{int(grown) / 2**20:.0f} MiB = {int(grown) / array:.2f}x the float32 array ({array / 2**20:.0f} MiB)")  # fmt: skip


if __name__ == "__main__":
    main()
