"""A non-recurrent yardstick for Japanese Vowels: a logistic regression on each utterance's summary (per-feature
mean, spread, first, last, lowest and highest frame), trained on the training file, scored on the test file.

    python scripts/sequences_baseline.py
"""

from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from kerasrnn.sequences.readers import read_sequences

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "japanese-vowels"


def summaries(sequences: list) -> np.ndarray:
    return np.stack([np.concatenate([x.mean(0), x.std(0), x[0], x[-1], x.min(0), x.max(0)]) for x in sequences])


def main() -> None:
    flags = {"id": "utterance", "order": "frame", "label": "speaker"}
    train, test = read_sequences(DATA / "train.csv", **flags), read_sequences(DATA / "test.csv", **flags)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    model.fit(summaries(train.x), [str(y) for y in train.y])
    accuracy = np.mean(model.predict(summaries(test.x)) == np.asarray([str(y) for y in test.y]))
    print(f"logistic regression on utterance summaries: test accuracy {accuracy:.4f} ({len(test.x)} sequences)")


if __name__ == "__main__":
    main()
