"""adder: add two binary numbers, least significant bit first, one sum bit per step.

Input: two numbers of L bits, one bit of each per step (2 features), padded
with a zero step so that the final carry has a step to come out on: L+1
steps. Target: the L+1 bits of the sum. The model reads the bits as they come
and must carry: a recurrent layer with `return_sequences=True` then
TimeDistributed(Dense(1, sigmoid)), one probability per output bit.

Bits are generated one column at a time with numpy's uint8 arithmetic, so any
length works (a 300-bit or 10,000-bit sum never touches an int64).
"""

from __future__ import annotations

import numpy as np

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

LOSSES = {"mse": "mse", "bce": "bce", "ce": "bce"}  # "ce" is the PyTorch notebooks' name for BCE


# ---- data ------------------------------------------------------------------
def random_operand_bits(rng: np.random.Generator, count: int, length: int) -> np.ndarray:
    """`count` random L-bit numbers as bit rows, least significant bit first."""
    return rng.integers(0, 2, size=(count, length), dtype=np.uint8)


def add_bit_rows(a_bits: np.ndarray, b_bits: np.ndarray) -> np.ndarray:
    """Column-by-column binary addition: (count, L) + (count, L) -> (count, L+1) sum bits, LSB first."""
    count, length = a_bits.shape
    total = np.zeros((count, length + 1), dtype=np.uint8)
    carry = np.zeros(count, dtype=np.uint8)
    for column in range(length):
        column_sum = a_bits[:, column] + b_bits[:, column] + carry
        total[:, column] = column_sum & 1
        carry = column_sum >> 1
    total[:, length] = carry
    return total


def carries(x: np.ndarray) -> np.ndarray:
    """(count, steps) the carry after each step of encoded operands (count, steps, 2)."""
    bits = x.astype(np.uint8)
    carry = np.zeros(len(x), dtype=np.uint8)
    after = np.zeros(bits.shape[:2], dtype=np.uint8)
    for step in range(bits.shape[1]):
        carry = (bits[:, step, 0] + bits[:, step, 1] + carry) >> 1
        after[:, step] = carry
    return after


def encode_operands(a_bits: np.ndarray, b_bits: np.ndarray) -> np.ndarray:
    """Model input (count, L+1, 2): one bit of each number per step, the last step zero."""
    count, length = a_bits.shape
    x = np.zeros((count, length + 1, 2), dtype=np.float32)
    x[:, :length, 0] = a_bits
    x[:, :length, 1] = b_bits
    return x


def adder_examples(a_bits: np.ndarray, b_bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) for the given operands; targets are (count, L+1, 1) floats."""
    return encode_operands(a_bits, b_bits), add_bit_rows(a_bits, b_bits)[..., None].astype(np.float32)


def random_adder_examples(rng: np.random.Generator, count: int, length: int):
    return adder_examples(random_operand_bits(rng, count, length), random_operand_bits(rng, count, length))


def all_operand_pairs(length: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of L-bit numbers (4**L pairs): exhaustive tests for short lengths."""
    numbers = np.arange(2**length)
    bits = ((numbers[:, None] >> np.arange(length)) & 1).astype(np.uint8)
    a_index, b_index = np.meshgrid(numbers, numbers, indexing="ij")
    return bits[a_index.ravel()], bits[b_index.ravel()]


def carry_chain_operands(length: int) -> tuple[np.ndarray, np.ndarray]:
    """The longest carry chains: (2**L - 1) + 1 and (2**L - 1) + (2**L - 1)."""
    ones = np.ones(length, dtype=np.uint8)
    one = np.zeros(length, dtype=np.uint8)
    one[0] = 1
    return np.stack([ones, ones]), np.stack([one, ones])


def int_to_bits(value: int, length: int) -> np.ndarray:
    """A Python int as `length` bits, LSB first (Python ints never overflow)."""
    return np.array([(value >> i) & 1 for i in range(length)], dtype=np.uint8)


def bits_to_int(bits) -> int:
    return sum(int(bit) << i for i, bit in enumerate(bits))


def parse_binary(text: str) -> int:
    """A binary number written as people write it, most significant bit first."""
    require(text != "", "a binary number cannot be empty: give digits 0 and 1, e.g. 1011")
    require(
        set(text) <= {"0", "1"},
        f"not a binary number: {text!r} (use only the digits 0 and 1, most significant first, e.g. 1011)",
    )
    return int(text, 2)


# ---- metrics ---------------------------------------------------------------
def score_predictions(probabilities: np.ndarray, targets: np.ndarray) -> dict:
    bits = (probabilities > 0.5).astype(np.float32)
    right = bits == targets
    return {
        "bit_accuracy": float(right.mean()),
        "exact_accuracy": float(right.all(axis=(1, 2)).mean()),
        "samples": int(len(targets)),
    }


# The command line reads these literals without importing this module (kerasrnn.tasks.declarations).
FLAGS = {"loss": ("text", "mse or bce (alias ce)."), "train_length": ("int", "bits per training number.")}
PREDICT_INPUTS = "two binary numbers, most significant bit first (e.g. 1011 110)"


class AdderTask(SequenceTask):
    name = "adder"
    objective = "exact_accuracy"  # whole sums right, on the validation sums
    defaults = {
        "cell": "lstm",
        "units": 10,
        "epochs": 10,
        "batch_size": 64,
        "lr": 1e-2,
        "lr_schedule": "cosine",
        "loss": "mse",
        # Measured (docs/adder.md): on 32-bit sums every seed tried adds exactly far past them; on
        # 10-bit sums only some do, and 32 bits cost about the same time.
        "train_length": 32,
        "steps_per_epoch": 100,
        "validation_samples": 1000,
        # Sums of this length choose the best epoch; None: the training length.
        "validation_length": None,
        "test_samples": 2000,
        "eval_samples": 1000,
    }
    flags, predict_inputs = FLAGS, PREDICT_INPUTS

    def validate(self, config: dict) -> dict:
        loss = str(config["loss"]).lower()
        require(loss in LOSSES, f"unknown loss {config['loss']!r} for adder: choose mse or bce (ce is an alias of bce)")
        require_whole_numbers(config, ("train_length", "steps_per_epoch", "validation_samples", "test_samples", "eval_samples"))
        if config["validation_length"] is not None:
            require_whole_numbers(config, ("validation_length",))
        return {**config, "loss": LOSSES[loss]}

    def default_lengths(self, config: dict) -> list[int]:
        """1 to twice the training length: the accuracy-by-length figure shows how far the adder generalises."""
        return list(range(1, 2 * config["train_length"] + 1))

    def typical_steps(self, config: dict) -> int:
        return config["train_length"] + 1

    def sample_inputs(self, rng: np.random.Generator, count: int, shape: tuple) -> np.ndarray:
        steps = shape[0]  # L bits + the carry step
        return random_adder_examples(rng, count, steps - 1)[0]

    def build_model(self, config: dict):
        import keras

        from kerasrnn.modeling.layers import TimeDistributed
        from kerasrnn.modeling.models import build_model

        def head(features):
            return TimeDistributed(keras.layers.Dense(1, activation="sigmoid"), name="sum_bits")(features)

        spec = RecurrentSpec.from_config(config)
        return build_model("adder", (None, 2), spec, head, return_sequences=True)

    def loss_and_metrics(self, config: dict):
        import keras

        from kerasrnn.modeling.metrics import exact_match

        loss = keras.losses.MeanSquaredError() if config["loss"] == "mse" else keras.losses.BinaryCrossentropy()
        metrics = [
            keras.metrics.BinaryAccuracy(name="bit_accuracy"),
            keras.metrics.MeanMetricWrapper(exact_match, name="exact_accuracy"),
        ]
        return loss, metrics

    def training_batch(self, config: dict, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = seeded_rng(config["seed"], TRAIN_STREAM, int(index))
        return random_adder_examples(rng, config["batch_size"], config["train_length"])

    def batch_shapes(self, config: dict) -> tuple[tuple, tuple]:
        steps = config["train_length"] + 1
        return (config["batch_size"], steps, 2), (config["batch_size"], steps, 1)

    def training_data(self, config: dict, first_epoch: int = 0):
        import tensorflow as tf

        train = self.training_dataset(config, first_epoch)
        validation_length = config["validation_length"] or config["train_length"]
        x_val, y_val = random_adder_examples(
            seeded_rng(config["seed"], VALIDATION_STREAM), config["validation_samples"], validation_length
        )
        validation = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(512)
        return train, validation, config["steps_per_epoch"]

    def evaluate(self, model, config: dict, lengths: list[int] | None = None) -> dict:
        lengths = lengths or self.default_lengths(config)
        length = config["train_length"]
        x_test, y_test = random_adder_examples(seeded_rng(config["seed"], TEST_STREAM), config["test_samples"], length)
        scores = model.evaluate(x_test, y_test, batch_size=512, verbose=0, return_dict=True)
        test = {
            "loss": float(scores["loss"]),
            "accuracy": float(scores["exact_accuracy"]),  # the headline: whole sums right
            "bit_accuracy": float(scores["bit_accuracy"]),
            "exact_accuracy": float(scores["exact_accuracy"]),
            "length": length,
            "samples": config["test_samples"],
        }
        by_length = self.scores_by_length(model, config, lengths)
        return {"test": test, "by_length": by_length, "train_length": length}

    def score_length(self, model, config: dict, length: int) -> dict:
        """Bit and exact accuracy at one length; every pair where there are few, else random pairs."""
        samples = config["eval_samples"]
        if 4**length <= samples:
            a_bits, b_bits = all_operand_pairs(length)
        else:
            rng = seeded_rng(config["seed"], EVALUATION_STREAM, length)
            a_bits, b_bits = random_operand_bits(rng, samples, length), random_operand_bits(rng, samples, length)
        x, y = adder_examples(a_bits, b_bits)
        result = score_predictions(predict_batches(model, x), y)
        chain_x, chain_y = adder_examples(*carry_chain_operands(length))
        result["carry_chain_exact"] = score_predictions(predict_batches(model, chain_x), chain_y)["exact_accuracy"] == 1.0
        return result

    def model_input(self, config: dict, inputs: list[str]) -> tuple[np.ndarray, dict]:
        if len(inputs) != 2:
            raise UserError(f"adder predict takes two binary numbers (e.g. 1011 110), got {len(inputs)} input(s)")
        a, b = (parse_binary(text) for text in inputs)
        length = max(len(inputs[0]), len(inputs[1]))
        return encode_operands(int_to_bits(a, length)[None], int_to_bits(b, length)[None]), {"a": inputs[0], "b": inputs[1]}

    def predict(self, model, config: dict, inputs: list[str], show: str | None = None) -> dict:
        x, _ = self.model_input(config, inputs)
        a, b = (parse_binary(text) for text in inputs)
        probabilities = np.asarray(model.predict(x, verbose=0))[0, :, 0]  # a Keras model or an exported artifact
        total = bits_to_int(probabilities > 0.5)
        return {
            "a": inputs[0],
            "b": inputs[1],
            "sum": format(total, "b"),
            "decimal": {"a": a, "b": b, "sum": total},
            "expected": format(a + b, "b"),
            "correct": total == a + b,
            "least_confident_bit": float(np.min(np.abs(probabilities - 0.5)) + 0.5),
        }

    def describe_prediction(self, result: dict) -> str:
        verdict = "correct" if result["correct"] else f"WRONG, expected {result['expected']}"
        d = result["decimal"]
        return f"{result['a']} + {result['b']} = {result['sum']}   ({d['a']} + {d['b']} = {d['sum']}, {verdict})"

    def plot(self, run_dir, config: dict, evaluation: dict) -> list:
        from kerasrnn.insight import plots

        return [
            plots.iteration_loss(run_dir, config),
            plots.epoch_curves(run_dir, ["loss", "exact_accuracy", "bit_accuracy"], config),
            plots.accuracy_by_length(
                run_dir,
                evaluation["by_length"],
                ["exact_accuracy", "bit_accuracy"],
                train_lengths=(config["train_length"], config["train_length"]),
                config=config,
            ),
        ]

    probes = {"carry": "the carry after the step, which the next column adds"}

    def inspection_examples(self, config: dict, count: int, length: int | None) -> tuple[np.ndarray, dict]:
        length = config["train_length"] if length is None else length
        require(isinstance(length, int) and length >= 1, f"--length is the bits of each number, >= 1, got {length!r}")
        x, _ = random_adder_examples(seeded_rng(config["seed"], INSPECTION_STREAM, length), count, length)
        return x, {"carry": carries(x)}

    def describe_inspection_input(self, x: np.ndarray) -> str:
        a, b = (bits_to_int(x[:, column]) for column in (0, 1))
        return f"{a:b} + {b:b}"

    def step_labels(self, x: np.ndarray) -> list[str]:
        """The column's two bits, least significant first (the last step reads none)."""
        return [f"{int(a)}{int(b)}" for a, b in x[:-1]] + ["-"]


TASK = AdderTask()
