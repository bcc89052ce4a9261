"""One fit of task sequences on Japanese Vowels (the floor's CSV files) with a recipe's options; prints a JSON line.

    python scripts/sequences_recipe.py BACKEND SEED NAME [OPTION=VALUE ...]
    python scripts/sequences_recipe.py tensorflow 0 I members=3 units=64

Values are JSON where they parse as JSON (3, 0.2, "lstm"), else text. The line holds the validation scores that
choose, the test accuracy, the epochs run and the seconds; the test answers' probabilities are saved as
probs-NAME-BACKEND-SEED.npy in the current directory (to average the answers of several fits).
"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "japanese-vowels"


def main() -> None:
    backend, seed, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    os.environ["KERAS_BACKEND"] = backend
    sys.path.insert(0, str(ROOT))
    from kerasrnn_cli.main import parse_option_pairs  # `-o KEY=VALUE` as the command line reads it

    import kerasrnn

    options = parse_option_pairs(sys.argv[4:])

    started, out = time.perf_counter(), tempfile.mkdtemp()
    run = kerasrnn.fit("sequences", train=str(DATA / "train.csv"), test=str(DATA / "test.csv"), id="utterance",
                       order="frame", label="speaker", seed=seed, out=out, backend=backend, verbose=0,
                       log=lambda line: None, **options)  # fmt: skip
    metrics = run.metrics
    print(json.dumps({"name": name, "backend": backend, "seed": seed, "validation": metrics["validation"],
                      "test": metrics["test"]["accuracy"], "epochs": metrics["epochs_run"],
                      "seconds": round(time.perf_counter() - started, 1), **options}), flush=True)  # fmt: skip
    import keras
    import numpy as np

    from kerasrnn.tasks.sequences import pad, read

    model = keras.models.load_model(Path(out) / "model.keras")
    recorded = read(metrics["config"], DATA / "test.csv")
    channels = len(metrics["config"]["feature_names"])
    probabilities = np.stack([model.predict(pad([x], channels), verbose=0)[0] for x in recorded.x])
    np.save(f"probs-{name}-{backend}-{seed}.npy", probabilities)


if __name__ == "__main__":
    main()
