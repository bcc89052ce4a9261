"""recall: remember the digit at position K of a sequence of one-hot digits.

Each sequence is L digits drawn uniformly from 0..9, one-hot (10 features per
step); the target is the digit at zero-based position K. The network reads
the whole sequence and answers from its final state, so it must hold one item
while it reads everything after it: how much state that takes is the lesson.

Every batch has one length L, drawn per batch from min_length..max_length:
no sequence is ever padded, so there is no padding to mask and no way for pad
steps to leak into the answer.
"""

from __future__ import annotations

import numpy as np

from kerasrnn.config import Recipe
from kerasrnn.errors import UserError, require
from kerasrnn.modeling.spec import RecurrentSpec
from kerasrnn.tasks.base import (
    EVALUATION_STREAM,
    INSPECTION_STREAM,
    TEST_STREAM,
    TRAIN_STREAM,
    VALIDATION_STREAM,
    SequenceTask,
    predict_batches,
    require_whole_numbers,
    seeded_rng,
)

DIGITS = 10


# ---- data ------------------------------------------------------------------
def random_digit_sequences(rng: np.random.Generator, count: int, length: int) -> np.ndarray:
    """(count, length) digits, each uniform over all ten digits 0..9."""
    return rng.integers(0, DIGITS, size=(count, length), dtype=np.int64)


def one_hot(digits: np.ndarray) -> np.ndarray:
    """(..., L) digits -> (..., L, 10) float32 one-hot."""
    return np.eye(DIGITS, dtype=np.float32)[digits]


def recall_examples(digits: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(one-hot inputs, target digit at `index`) for a (count, L) block of digit sequences."""
    return one_hot(digits), digits[:, index].astype(np.int32)


def random_recall_examples(rng: np.random.Generator, count: int, length: int, index: int):
    return recall_examples(random_digit_sequences(rng, count, length), index)


def batch_length(rng: np.random.Generator, min_length: int, max_length: int) -> int:
    return int(rng.integers(min_length, max_length + 1))


def curriculum_max_length(config: dict, epoch: int) -> int:
    """The longest training length in `epoch`: it grows from min_length + 1 to max_length over the first
    `curriculum_epochs` epochs (0: max_length from the start).

    Short sequences first let a small model learn to store the digit at K and then hold it; a batch of
    length K + 1 alone would only ask for the last digit read, so the ramp starts one longer.
    """
    ramp, high = config["curriculum_epochs"], config["max_length"]
    start = min(high, config["min_length"] + 1)
    if epoch >= ramp:
        return high
    return start + (high - start) * epoch // ramp


def mixed_length_dataset(rng: np.random.Generator, samples: int, lengths: list[int], index: int):
    """A fixed tf.data set spread evenly over `lengths`, batched one length at a time."""
    import tensorflow as tf

    per_length = max(1, samples // len(lengths))
    parts = [tf.data.Dataset.from_tensor_slices(random_recall_examples(rng, per_length, n, index)).batch(256) for n in lengths]
    dataset = parts[0]
    for part in parts[1:]:
        dataset = dataset.concatenate(part)
    return dataset


def parse_digit_sequence(inputs: list[str]) -> list[int]:
    """`3 1 4 1 5` or `31415` (or a mix) -> [3, 1, 4, 1, 5]; anything but digits 0-9 is refused."""
    text = "".join(part.replace(",", "").strip() for part in inputs)
    require(text != "", "give a sequence of digits 0-9, e.g. 3 1 4 1 5")
    bad = sorted({char for char in text if char not in "0123456789"})
    require(not bad, f"a recall sequence holds digits 0-9 only; not allowed: {' '.join(repr(c) for c in bad)}")
    return [int(char) for char in text]


def split_note(inputs: list[str]) -> dict:
    """A note where an input of several digits was read digit by digit (12 is the digits 1 and 2, not twelve)."""
    joined = [part for part in inputs if len(part.replace(",", "").strip()) > 1]
    if not joined:
        return {}
    example = joined[0].replace(",", "").strip()
    return {"note": f"each digit is one step of the sequence: {example} was read as {' '.join(example)}"}


# The command line reads these literals without importing this module (kerasrnn.tasks.declarations).
FLAGS = {
    "index": ("int", "position K to remember (zero-based)."),
    "min_length": ("int", "shortest training sequence."),
    "max_length": ("int", "longest training sequence."),
}
PREDICT_INPUTS = "a sequence of digits 0-9 (e.g. 3 1 4 1 5)"


class RecallTask(SequenceTask):
    name = "recall"
    objective = "lowest_exact_accuracy"  # over the training lengths: the figure docs/recall.md reports
    defaults = {
        "cell": "lstm",
        "units": 10,
        # Chosen by measurement (docs/recall.md): large fresh batches are nearly free for these tiny
        # models, and a high rate that decays, with clipped gradients, suits GRU and small LSTMs.
        "epochs": 40,
        "batch_size": 256,
        "lr": 2e-2,
        "lr_schedule": "cosine",
        "clipnorm": 1.0,
        "readout_units": 0,  # a ReLU layer between the final state and the softmax; 0: none
        "candidates": 1,  # train N starts side by side, keep the best on validation (kerasrnn.training.candidates)
        "curriculum_epochs": 0,  # grow the longest training length over this many epochs; 0: all lengths from the start
        "index": 2,
        "min_length": 3,
        "max_length": 10,
        "steps_per_epoch": 100,
        "validation_samples": 2000,
        "test_samples": 8000,
        "eval_samples": 1000,
        "max_eval_length": 50,
    }
    # Measured (docs/recall.md): LSTM 10 holds the digit further past the training lengths with smaller
    # batches at a constant rate; a 2-unit LSTM learns to hold it only from short sequences first, with a
    # nonlinear readout, when the best of 32 starts is kept; a 2-unit GRU with the readout, 32 starts and a high
    # constant rate for longer (found by `kerasrnn tune`, docs/tune.md).
    recipes = (
        Recipe(
            "LSTM recipe",
            lambda options: options["cell"] == "lstm" and options["units"] >= 10,
            {"batch_size": 64, "lr": 1e-2, "lr_schedule": "constant", "epochs": 40},
        ),
        Recipe(
            "small-state recipe",
            lambda options: (
                options["cell"] == "lstm" and options["units"] <= 2 and options["layers"] == 1 and not options["bidirectional"]
            ),
            {"readout_units": 32, "curriculum_epochs": 15, "candidates": 32, "epochs": 30},
        ),
        Recipe(
            "GRU small-state recipe",
            lambda options: (
                options["cell"] == "gru" and options["units"] <= 2 and options["layers"] == 1 and not options["bidirectional"]
            ),
            {"readout_units": 32, "candidates": 32, "batch_size": 128, "lr": 3e-2, "lr_schedule": "constant", "epochs": 80},
        ),
    )
    flags, predict_inputs = FLAGS, PREDICT_INPUTS

    def validate(self, config: dict) -> dict:
        require_whole_numbers(
            config,
            (
                "min_length",
                "max_length",
                "steps_per_epoch",
                "validation_samples",
                "test_samples",
                "eval_samples",
                "max_eval_length",
            ),
        )
        require_whole_numbers(config, ("readout_units", "curriculum_epochs"), minimum=0)
        require_whole_numbers(config, ("candidates",))
        require(
            config["candidates"] == 1 or (config["layers"] == 1 and not config["bidirectional"]),
            "candidates > 1 need one unidirectional recurrent layer (--layers 1, no --bidirectional)",
        )
        index, low, high = config["index"], config["min_length"], config["max_length"]
        require(isinstance(index, int) and index >= 0, f"index K must be a whole number >= 0, got {index!r}")
        require(low <= high, f"min length ({low}) must not exceed max length ({high})")
        require(
            index < low,
            f"index K={index} must be smaller than the minimum length {low}: every sequence needs a digit at position K",
        )
        return config

    def default_lengths(self, config: dict) -> list[int]:
        return list(range(config["index"] + 1, max(config["max_eval_length"], config["max_length"]) + 1))

    def typical_steps(self, config: dict) -> int:
        return config["max_length"]

    def sample_inputs(self, rng: np.random.Generator, count: int, shape: tuple) -> np.ndarray:
        return one_hot(random_digit_sequences(rng, count, shape[0]))

    def build_model(self, config: dict):
        import keras

        from kerasrnn.modeling.models import build_model

        def head(features):
            readout_units = config["readout_units"]
            if readout_units:
                # A nonlinear readout of the final state: the state stays `units` numbers, but ten
                # classes no longer have to be cut apart by straight lines in it (docs/recall.md: LSTM 2).
                features = keras.layers.Dense(readout_units, activation="relu", name="readout")(features)
            return keras.layers.Dense(DIGITS, activation="softmax", name="digit")(features)

        return build_model("recall", (None, DIGITS), RecurrentSpec.from_config(config), head, return_sequences=False)

    def candidates(self, config: dict) -> int:
        return config["candidates"]

    def loss_and_metrics(self, config: dict):
        import keras

        return keras.losses.SparseCategoricalCrossentropy(), [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def validation_scores(self, model, config: dict, validation) -> dict:
        """Keras' scores on the validation set, and the exact accuracy at each training length on fresh
        validation sequences (never the evaluation or test streams): the lowest is what a search chooses by."""
        scores = super().validation_scores(model, config, validation)
        by_length = {}
        for length in self.training_lengths(config):
            x, y = random_recall_examples(
                seeded_rng(config["seed"], VALIDATION_STREAM, length), config["eval_samples"], length, config["index"]
            )
            by_length[str(length)] = float((predict_batches(model, x).argmax(axis=-1) == y).mean())
        return {**scores, "exact_accuracy_by_length": by_length, "lowest_exact_accuracy": min(by_length.values())}

    def training_lengths(self, config: dict) -> list[int]:
        return list(range(config["min_length"], config["max_length"] + 1))

    def training_batch(self, config: dict, index: int) -> tuple[np.ndarray, np.ndarray]:
        """One random length per batch, from the curriculum's range of its epoch."""
        rng = seeded_rng(config["seed"], TRAIN_STREAM, int(index))
        epoch = int(index) // config["steps_per_epoch"]
        length = batch_length(rng, config["min_length"], curriculum_max_length(config, epoch))
        return random_recall_examples(rng, config["batch_size"], length, config["index"])

    def batch_shapes(self, config: dict) -> tuple[tuple, tuple]:
        return (config["batch_size"], None, DIGITS), (config["batch_size"],)

    def training_data(self, config: dict, first_epoch: int = 0):
        validation = mixed_length_dataset(
            seeded_rng(config["seed"], VALIDATION_STREAM),
            config["validation_samples"],
            self.training_lengths(config),
            config["index"],
        )
        return self.training_dataset(config, first_epoch), validation, config["steps_per_epoch"]

    def evaluate(self, model, config: dict, lengths: list[int] | None = None) -> dict:
        lengths = lengths or self.default_lengths(config)
        too_short = [n for n in lengths if n <= config["index"]]
        if too_short:
            raise UserError(f"lengths must be > K={config['index']} (position K must exist), got {too_short[0]}")
        test_data = mixed_length_dataset(
            seeded_rng(config["seed"], TEST_STREAM), config["test_samples"], self.training_lengths(config), config["index"]
        )
        scores = model.evaluate(test_data, verbose=0, return_dict=True)
        test = {
            "loss": float(scores["loss"]),
            "accuracy": float(scores["accuracy"]),
            "lengths": [config["min_length"], config["max_length"]],
            "samples": (config["test_samples"] // len(self.training_lengths(config))) * len(self.training_lengths(config)),
        }
        by_length = self.scores_by_length(model, config, lengths)
        return {"test": test, "by_length": by_length}

    def score_length(self, model, config: dict, length: int) -> dict:
        rng = seeded_rng(config["seed"], EVALUATION_STREAM, length)
        x, y = random_recall_examples(rng, config["eval_samples"], length, config["index"])
        predicted = predict_batches(model, x).argmax(axis=-1)
        return {"exact_accuracy": float((predicted == y).mean()), "samples": int(len(y))}

    def model_input(self, config: dict, inputs: list[str]) -> tuple[np.ndarray, dict]:
        sequence = parse_digit_sequence(inputs)
        index = config["index"]
        if len(sequence) <= index:
            raise UserError(f"this model recalls position K={index}: give at least {index + 1} digits, got {len(sequence)}")
        return one_hot(np.array([sequence])), {"sequence": sequence, "index": index}

    def predict(self, model, config: dict, inputs: list[str], show: str | None = None) -> dict:
        x, shown = self.model_input(config, inputs)
        sequence, index = shown["sequence"], shown["index"]
        probabilities = np.asarray(model.predict(x, verbose=0))[0]
        digit = int(probabilities.argmax())
        return {
            "sequence": sequence,
            "index": index,
            "digit": digit,
            "confidence": float(probabilities[digit]),
            "expected": sequence[index],
            "correct": digit == sequence[index],
            "probabilities": [round(float(p), 6) for p in probabilities],
            **split_note(inputs),
        }

    def describe_prediction(self, result: dict) -> str:
        verdict = "correct" if result["correct"] else f"WRONG, it is {result['expected']}"
        shown = " ".join(f"[{d}]" if i == result["index"] else str(d) for i, d in enumerate(result["sequence"]))
        line = (
            f"sequence {shown}: digit at position {result['index']} is {result['digit']} "
            f"(confidence {result['confidence']:.3f}, {verdict})"
        )
        return f"{line}\n({result['note']})" if result.get("note") else line

    def plot(self, run_dir, config: dict, evaluation: dict) -> list:
        from kerasrnn.insight import plots

        return [
            plots.iteration_loss(run_dir, config),
            plots.epoch_curves(run_dir, ["loss", "accuracy"], config),
            plots.accuracy_by_length(
                run_dir,
                evaluation["by_length"],
                ["exact_accuracy"],
                train_lengths=(config["min_length"], config["max_length"]),
                config=config,
            ),
        ]

    probes = {"kth_digit": "the digit at position K, the one to recall, asked at every step"}

    def inspection_examples(self, config: dict, count: int, length: int | None) -> tuple[np.ndarray, dict]:
        length = config["max_length"] if length is None else length
        index = config["index"]
        require(
            isinstance(length, int) and length > index,
            f"--length must be a whole number above position K={index}, got {length!r}",
        )
        digits = random_digit_sequences(seeded_rng(config["seed"], INSPECTION_STREAM, length), count, length)
        return one_hot(digits), {"kth_digit": np.repeat(digits[:, index : index + 1], length, axis=1)}

    def describe_inspection_input(self, x: np.ndarray) -> str:
        return " ".join(str(digit) for digit in x.argmax(axis=-1))

    def step_labels(self, x: np.ndarray) -> list[str]:
        return [str(digit) for digit in x.argmax(axis=-1)]


TASK = RecallTask()
