"""Task sequences on Japanese Vowels with its defaults: the floor command on seeds 0-2, TensorFlow and torch, and
the same from the .ts files with no flags.

    python scripts/sequences_report.py [--seeds 0,1,2] [--ts-seeds 0] [--backends tensorflow,torch] [--data DIR]

Each fit is a `kerasrnn fit` process of its own (the command a person types); prints a markdown table of test
accuracy, the validation accuracy that chose the epoch, the epochs run and the wall time of each fit.
"""

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import sys  # noqa: E402

sys.path.insert(0, str(ROOT))
from kerasrnn.backend import cli_command  # noqa: E402
from kerasrnn.studies.reports import machine_line  # noqa: E402


def fit(args: list[str], out: Path) -> dict:
    started = time.perf_counter()
    subprocess.run(cli_command("fit", "sequences", *args, "--out", str(out), "-q"), check=True, capture_output=True)
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "test": metrics["test"]["accuracy"],
        "validation": metrics["validation"]["accuracy"],
        "epochs": metrics["epochs_run"],
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--ts-seeds", default="0", help="seeds of the .ts fits (the same sequences as the CSV)")
    parser.add_argument("--backends", default="tensorflow,torch")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "japanese-vowels")
    args = parser.parse_args()
    csv = ["--train", str(args.data / "train.csv"), "--test", str(args.data / "test.csv"),
           "--id", "utterance", "--order", "frame", "--label", "speaker"]  # fmt: skip
    ts = ["--train", str(args.data / "JapaneseVowels_TRAIN.ts"), "--test", str(args.data / "JapaneseVowels_TEST.ts")]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for backend in args.backends.split(","):
            for files, name, seeds in ((csv, "long CSV", args.seeds), (ts, ".ts, no flags", args.ts_seeds)):
                for seed in (int(s) for s in seeds.split(",")):
                    result = fit([*files, "--backend", backend, "--seed", str(seed)], Path(folder) / f"{backend}-{len(rows)}")
                    rows.append((backend, name, seed, result))
                    print(f"{backend} {name} seed {seed}: {json.dumps(result)}", file=sys.stderr, flush=True)
    print(machine_line())
    print(
        "\n| backend | files | seed | test accuracy | validation accuracy | epochs | seconds |\n| --- | --- | --- | --- | --- | --- | --- |"
    )
    for backend, name, seed, result in rows:
        print(
            f"| {backend} | {name} | {seed} | {result['test']:.4f} | {result['validation']:.4f} | {result['epochs']} | {result['seconds']:.0f} |"
        )


if __name__ == "__main__":
    main()
