"""Choosing a recipe for task sequences without the test file: one fold of a stratified 5-fold cross-validation of
Japanese Vowels' training file (270 utterances). The fit trains on four folds (its own validation part split from
them, as a fit does) and is scored on the fifth; the five folds' scores together are a cross-validated accuracy
over all 270 training utterances, five times the 54 that one validation split holds.

    python scripts/sequences_crossval.py BACKEND SEED FOLD NAME [OPTION=VALUE ...]
    python scripts/sequences_crossval.py tensorflow 0 3 C conv_filters=[] conv_widths=[]

Values are JSON where they parse as JSON, else text. Prints one JSON line: the held-out fold's accuracy and
count right, the epochs and seconds.
"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "japanese-vowels"
FOLDS = 5


def main() -> None:
    backend, seed, fold, name = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    os.environ["KERAS_BACKEND"] = backend
    sys.path.insert(0, str(ROOT))
    import numpy as np
    from kerasrnn_cli.main import parse_option_pairs  # `-o KEY=VALUE` as the command line reads it
    from sklearn.model_selection import StratifiedKFold

    import kerasrnn
    from kerasrnn.sequences.readers import read_sequences

    options = parse_option_pairs(sys.argv[5:])

    recorded = read_sequences(DATA / "train.csv", id="utterance", order="frame", label="speaker")
    labels = np.asarray([str(y) for y in recorded.y])
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels)
    train, held = list(folds)[fold]
    started, out = time.perf_counter(), tempfile.mkdtemp()
    run = kerasrnn.fit("sequences", x=[recorded.x[i] for i in train], y=labels[train].tolist(),
                       x_test=[recorded.x[i] for i in held], y_test=labels[held].tolist(), seed=seed,
                       out=Path(out) / "run", backend=backend, verbose=0, log=lambda line: None, **options)  # fmt: skip
    accuracy = run.metrics["test"]["accuracy"]
    print(json.dumps({"name": name, "backend": backend, "seed": seed, "fold": fold, "accuracy": accuracy,
                      "right": round(accuracy * len(held)), "held": len(held), "epochs": run.metrics["epochs_run"],
                      "seconds": round(time.perf_counter() - started, 1), **options}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
