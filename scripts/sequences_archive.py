"""Task sequences, on its defaults and with no flags, on the UCR/UEA archive problems that sktime ships in its wheel
(`sktime/datasets/data/*/NAME_TRAIN.ts`, `NAME_TEST.ts`): uni- and multivariate, equal and unequal lengths,
24 to 1,460 steps, 36 to 537 training series, classification and regression. Beside each fit, two yardsticks
computed here: the archive's own baseline (1-nearest neighbour, Euclidean distance, on equal-length series; the
training mean for regression) and a plain Keras script (standardise, pad and mask, GRU 64, early stopping on a
stratified 20% of the training file, the test file read once).

    python scripts/sequences_archive.py [--problems GunPoint,BasicMotions,...] [--seeds 0] [--backend tensorflow]
                                        [--plain] [--options "KEY=VALUE KEY=VALUE"]

Each fit is a `kerasrnn fit sequences --train ... --test ... --seed S` process (the command a person types);
prints one JSON line a fit on stderr and a markdown table on stdout.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from kerasrnn.backend import cli_command  # noqa: E402
from kerasrnn.sequences.readers import read_sequences  # noqa: E402
from kerasrnn.studies.reports import machine_line  # noqa: E402
from kerasrnn.tasks.sequences import target_kind  # noqa: E402

PROBLEMS = "ItalyPowerDemand,GunPoint,ArrowHead,BasicMotions,OSULeaf,ACSF1,PLAID,JapaneseVowels,Covid3Month,Tecator"


def archive_folder() -> Path:
    import sktime

    return Path(sktime.__file__).parent / "datasets" / "data"


def files_of(problem: str) -> tuple[Path, Path]:
    folder = archive_folder() / problem
    return folder / f"{problem}_TRAIN.ts", folder / f"{problem}_TEST.ts"


def kerasrnn_fit(problem: str, seed: int, backend: str, options: list[str], out: Path) -> dict:
    train, test = files_of(problem)
    extra = [part for option in options for part in ("-o", option)]
    started = time.perf_counter()
    command = cli_command("fit", "sequences", "--train", str(train), "--test", str(test), "--seed", str(seed),
                          "--backend", backend, "--out", str(out), "-q", *extra)  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    metrics = json.loads((out / "metrics.json").read_text())
    return {"test": metrics["test"], "epochs": metrics["epochs_run"], "seconds": round(time.perf_counter() - started, 1)}


def score_name(test: dict) -> tuple[str, float]:
    return ("accuracy", test["accuracy"]) if "accuracy" in test else ("rmse", test["rmse"])


def nearest_neighbour(problem: str) -> float | None:
    """The archive's baseline: 1-NN with Euclidean distance (equal lengths only); regression: the training mean's RMSE."""
    train, test = (read_sequences(path) for path in files_of(problem))
    if target_kind(train.y, "auto") == "value":
        truth = np.asarray(test.y, dtype=np.float64)
        return float(np.sqrt(np.mean((truth - np.mean(np.asarray(train.y, dtype=np.float64))) ** 2)))
    if len({x.shape for x in train.x + test.x}) != 1:
        return None
    a = np.stack([x.reshape(-1) for x in train.x])
    b = np.stack([x.reshape(-1) for x in test.x])
    distances = (b**2).sum(1)[:, None] - 2 * b @ a.T + (a**2).sum(1)[None]
    predicted = np.asarray([str(y) for y in train.y])[distances.argmin(1)]
    return float(np.mean(predicted == np.asarray([str(y) for y in test.y])))


PLAIN_KERAS = r"""
import os, sys, json
import numpy as np
import keras
from sklearn.model_selection import train_test_split
from kerasrnn.sequences.readers import read_sequences
train, test = read_sequences(sys.argv[1]), read_sequences(sys.argv[2])
seed, regression = int(sys.argv[3]), sys.argv[4] == "value"
keras.utils.set_random_seed(seed)
frames = np.concatenate(train.x)
mean, std = frames.mean(0), frames.std(0) + 1e-8
def padded(xs, steps):
    out = np.zeros((len(xs), steps, xs[0].shape[1]), np.float32)
    for i, x in enumerate(xs):
        out[i, :len(x)] = (x - mean) / std
    return out
steps = max(len(x) for x in train.x + test.x)
x, xt = padded(train.x, steps), padded(test.x, steps)
if regression:
    y, yt = np.asarray(train.y, np.float32), np.asarray(test.y, np.float32)
    stratify, head, loss = None, keras.layers.Dense(1), "mse"
else:
    names = sorted({str(v) for v in train.y})
    y = np.asarray([names.index(str(v)) for v in train.y]); yt = np.asarray([names.index(str(v)) for v in test.y])
    stratify, head, loss = y, keras.layers.Dense(len(names), activation="softmax"), "sparse_categorical_crossentropy"
xa, xv, ya, yv = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=stratify)
model = keras.Sequential([keras.Input((steps, x.shape[2])), keras.layers.Masking(0.0), keras.layers.GRU(64), head])
model.compile("adam", loss, metrics=[] if regression else ["accuracy"])
model.fit(xa, ya, validation_data=(xv, yv), epochs=200, batch_size=16, verbose=0,
          callbacks=[keras.callbacks.EarlyStopping(patience=20, restore_best_weights=True)])
answer = model.predict(xt, verbose=0)
if regression:
    print(json.dumps({"rmse": float(np.sqrt(np.mean((answer[:, 0] - yt) ** 2)))}))
else:
    print(json.dumps({"accuracy": float(np.mean(answer.argmax(1) == yt))}))
"""


def plain_keras(problem: str, seed: int, backend: str, kind: str) -> dict:
    train, test = files_of(problem)
    environment = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PLAIN_KERAS, str(train), str(test), str(seed), kind],
                          check=True, capture_output=True, text=True, env=environment)  # fmt: skip
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default=PROBLEMS)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--backend", default="tensorflow")
    parser.add_argument("--plain", action="store_true", help="also fit the plain Keras script")
    parser.add_argument("--options", default="", help="task options for every fit, 'KEY=VALUE KEY=VALUE' (a recipe)")
    args = parser.parse_args()
    options = args.options.split()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for problem in args.problems.split(","):
            baseline = nearest_neighbour(problem)
            for seed in (int(s) for s in args.seeds.split(",")):
                result = kerasrnn_fit(problem, seed, args.backend, options, Path(folder) / f"{problem}-{seed}")
                metric, score = score_name(result["test"])
                row = {"problem": problem, "seed": seed, "metric": metric, "kerasrnn": score, "epochs": result["epochs"],
                       "seconds": result["seconds"], "nearest_neighbour": baseline}  # fmt: skip
                if args.plain:
                    plain = plain_keras(problem, seed, args.backend, "value" if metric == "rmse" else "class")
                    row.update(plain_keras=plain[metric], plain_seconds=plain["seconds"])
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    print(machine_line() + f"; backend {args.backend}; options: {args.options or 'the defaults'}")
    print("\n| problem | seed | metric | kerasrnn | plain Keras | 1-NN / mean | epochs | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        plain = f"{row['plain_keras']:.4f}" if "plain_keras" in row else "-"
        baseline = f"{row['nearest_neighbour']:.4f}" if row["nearest_neighbour"] is not None else "-"
        print(f"| {row['problem']} | {row['seed']} | {row['metric']} | {row['kerasrnn']:.4f} | {plain} | {baseline} | "
              f"{row['epochs']} | {row['seconds']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
