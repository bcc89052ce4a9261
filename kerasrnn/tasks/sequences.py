"""sequences: a person's own recorded sequences from a file: a class or a number per sequence, or a label per step.

The files (kerasrnn.sequences.readers): long CSV/TSV/Parquet with `--id` (and `--order`, `--features`,
`--label`), wide CSV (one univariate series a row), NPZ, and the UCR/UEA archive's `.ts` with no flags.
What the run needs to read raw values lives inside the model, so every artifact takes them as recorded:
NaN-padded steps are masked (kerasrnn.modeling.layers.SequenceInput) for every recurrent layer and the loss,
and each feature is standardised with the training sequences' mean and variance, in the same layer. Batches group sequences of similar length (little padding). The validation sequences, split from
the training file (stratified for classes) or read from `--validation`, choose the best epoch and stop the
fit; the test file is read once, for the report.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np

from kerasrnn.config import Recipe
from kerasrnn.errors import UserError, require
from kerasrnn.modeling.spec import RecurrentSpec
from kerasrnn.tasks.base import TRAIN_STREAM, Task, predict_batches, require_whole_numbers, seeded_rng

FLAGS = {
    "train": ("path", "the file of training sequences (.csv, .tsv, .parquet, .npz, .ts)"),
    "test": ("path", "a file of test sequences, read once for the report"),
    "validation": ("path", "a file of validation sequences (default: a stratified part of --train)"),
    "id": ("text", "the column naming each row's sequence (a long file: one row a step)"),
    "order": ("text", "the column ordering the steps of a sequence (default: file order)"),
    "label": ("text", "the target column (a .ts file or a wide file's label/class/target/y column: found)"),
    "features": ("text", "feature columns, A,B,... (default: every other numeric column)"),
}
PREDICT_INPUTS = "a file of sequences in the run's format (every sequence in it is answered)"
TARGETS = ("auto", "class", "value")
POOLS = ("last", "mean")  # what a sequence's answer reads: the last state, or the mean of the steps' outputs
MOST_CLASSES = 50  # whole-number labels with at most this many values (and repeats) are classes, else values
PAD = float("nan")  # what pads a shorter sequence in a batch: SequenceInput masks those steps


@functools.lru_cache(maxsize=8)
def read_cached(path: str, modified: float, id, order, label, features, missing, needs_label):
    from kerasrnn.sequences.readers import read_sequences

    return read_sequences(path, id=id, order=order, label=label, features=features, missing=missing, needs_label=needs_label)


def read(config: dict, path, needs_label: bool = True):
    """The sequences of `path` read as the run's options say (read once a process: files and their mtime)."""
    path = Path(path)
    modified = path.stat().st_mtime if path.exists() else 0.0
    return read_cached(str(path), modified, config["id"], config["order"], config["label"], config["features"],
                       config["missing"], needs_label)  # fmt: skip


def channels_of(options: dict) -> int | None:
    """The training file's features a step, for a recipe; None where it cannot be read yet (validate says why,
    after the options are checked)."""
    try:
        return len(read(options, options["train"]).features) if options.get("train") is not None else None
    except UserError:
        return None


def class_name(value) -> str:
    """A label as a class name: 1.0 and "1" are the same class."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def target_kind(labels: list, asked: str) -> str:
    """'class' or 'value': as asked, else classes for text and for few whole numbers that repeat."""
    if asked != "auto":
        return asked
    values = np.concatenate([np.atleast_1d(np.asarray(label, dtype=object)) for label in labels])
    numbers = all(isinstance(value, int | float | np.integer | np.floating) for value in values)
    if not numbers:
        return "class"
    numeric = values.astype(np.float64)
    distinct = np.unique(numeric)
    whole = np.all(np.isclose(numeric, np.round(numeric)))
    return "class" if whole and len(distinct) <= MOST_CLASSES and len(distinct) < len(numeric) / 2 else "value"


def pad(sequences: list, channels: int, steps: int | None = None) -> np.ndarray:
    """(count, longest, channels) float32, shorter sequences padded with NaN (SequenceInput masks it)."""
    steps = steps or max(len(x) for x in sequences)
    out = np.full((len(sequences), steps, channels), PAD, dtype=np.float32)
    for index, x in enumerate(sequences):
        out[index, : len(x)] = x
    return out


def target_moments(targets: list) -> tuple[float, float]:
    """(mean, standard deviation) of the training targets: the model answers in standard units, rescaled to
    the targets' own by its last layer, so a target of any scale starts from its mean and trains at one rate."""
    values = np.concatenate([np.atleast_1d(np.asarray(y, dtype=np.float64)).ravel() for y in targets])
    deviation = float(values.std())
    return float(values.mean()), deviation if deviation > 0 else 1.0


def compiled_steps(longest: int) -> int | None:
    """JAX compiles a step for every batch shape (a fit of lengths 7-29 compiled 23 of them): there a batch's
    length is rounded up to a power of two, a handful of shapes, the extra steps NaN padding that SequenceInput
    masks. None (the longest sequence's length) on TensorFlow and torch, which need no fixed shapes."""
    import keras

    return 1 << (longest - 1).bit_length() if keras.backend.backend() == "jax" else None


def length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Indices in batches of similar length (sorted, then cut): little padding. With `rng`, the sequences of one
    length are shuffled and the batches come in a random order (one epoch's)."""
    jitter = rng.random(len(lengths)) if rng is not None else np.zeros(len(lengths))
    order = np.lexsort((jitter, lengths))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if rng is not None:
        batches = [batches[index] for index in rng.permutation(len(batches))]
    return batches


class Split:
    """The training and validation sequences of a run, their targets encoded, and what was found."""

    def __init__(self, x_train, y_train, x_val, y_val, how: str):
        self.x_train, self.y_train, self.x_val, self.y_val, self.how = x_train, y_train, x_val, y_val, how


class SequencesTask(Task):
    name = "sequences"
    flags, predict_inputs = FLAGS, PREDICT_INPUTS
    reads_files = True
    defaults = {
        # The data.
        "train": None, "test": None, "validation": None, "id": None, "order": None, "label": None, "features": None,
        "target": "auto",  # class, value, or auto: from the label column
        "missing": "error",  # empty or NaN cells: error, zero, previous (the step before's value)
        "validation_fraction": 0.2,
        # Found in the training file (set at the start of a fit; config.json keeps them for every later command).
        "kind": None, "classes": None, "feature_names": None, "per_step": None, "fold_width": None,
        # The model and its training: measured in docs/sequences.md.
        "cell": "gru", "units": 128, "bidirectional": True, "dropout": 0.2, "epochs": 200, "batch_size": 16, "lr": 1e-3,
        "clipnorm": 1.0,
        # The fit stops after `patience` epochs without a validation loss below the best by this fraction of the
        # first epoch's (smaller steps: a model growing surer of what it already gets right).
        "patience": 40, "min_improvement": 0.01,
        "members": 1,  # recurrent branches side by side, their answers averaged
        "pool": "last",  # what a sequence's answer reads: the recurrent layer's last state, or the mean of its steps
        "crop": 1.0,  # training sequences cut, each epoch, to a random stretch of at least this part of their steps
        "summary": False,  # the answer also reads each feature's mean over the sequence's steps
        "noise": 0.0,  # Gaussian noise added to the standardised features while training (0: none)
        # A convolution branch beside the recurrent layers (the answer reads both): its layers' filters and widths
        # (steps read), each convolution batch-normalised; [] for none. Measured in docs/sequences.md.
        "conv_filters": [128, 256, 128], "conv_widths": [8, 5, 3],
        # A long univariate series read as rows of this many values a step ("auto": the square root of the
        # median length, from 100 steps on; 1: as recorded). The course's trick for mnist's 784 pixels.
        "fold": "auto",
        # On torch, masked sequences run PyTorch's packed kernels: float32 trained faster there than bfloat16
        # (docs/sequences.md), unlike the unmasked kernels behind precision=auto's choice.
        "precision": "float32",
        "steps_per_execution": 1,  # batches differ in length: one a call (several a call ran past the data in Keras 3.15)
    }  # fmt: skip

    # Measured in docs/sequences.md: the convolution branch (and its rate and stopping) helped Japanese Vowels'
    # 12 channels; on univariate archive problems it lost on two of three, so one channel keeps the recurrent
    # model alone, as it was before the branch.
    recipes = (
        Recipe(
            "one channel: the recurrent model alone",
            lambda options: channels_of(options) == 1,
            {"conv_filters": [], "conv_widths": [], "lr": 2e-3, "min_improvement": 0.0},
        ),
    )

    # ---- configuration ---------------------------------------------------------------------------
    def validate(self, config: dict) -> dict:
        require(config["train"] is not None, "sequences needs its training file: --train FILE (docs/sequences.md)")
        check_options(config)
        recorded = read(config, config["train"])
        kind = target_kind(recorded.y, config["target"])
        classes = sorted({class_name(value) for y in recorded.y for value in np.atleast_1d(np.asarray(y, dtype=object))},
                         key=natural_key) if kind == "class" else None  # fmt: skip
        if kind == "class":
            require(
                len(classes) >= 2,
                f"{config['train']}: every sequence has the class {classes[0]!r}: a classifier needs two or more",
            )
        else:
            values = [float(value) for y in recorded.y for value in np.atleast_1d(np.asarray(y, dtype=object))]
            require(all(math.isfinite(value) for value in values), f"{config['train']}: the targets must be numbers")
        found = {"kind": kind, "classes": classes, "feature_names": recorded.features, "per_step": bool(recorded.per_step),
                 "fold_width": fold_width(config["fold"], recorded), "longest": max(len(x) for x in recorded.x)}  # fmt: skip
        given = {key: config[key] for key in found if config.get(key) is not None}
        for key, value in given.items():  # a resumed or reproduced run: the file must still say the same
            require(value == found[key], f"{config['train']}: its {key} ({found[key]}) differs from the run's ({value})")
        config = {**config, **found}
        for what in ("validation", "test"):  # refused now, not after the training: their features and labels
            if config[what]:
                held = read(config, config[what])
                self.check_features(config, held)
                self.encode(config, held, what)
        return config

    # ---- data ------------------------------------------------------------------------------------
    def encode(self, config: dict, recorded, what: str) -> list:
        """Targets as the model is trained on them: class indices or float values (per step: arrays)."""
        if config["kind"] == "value":
            return [np.asarray(y, dtype=np.float32) for y in recorded.y]
        index = {name: position for position, name in enumerate(config["classes"])}
        encoded = []
        for sequence_id, y in zip(recorded.ids, recorded.y):
            names = [class_name(value) for value in np.atleast_1d(np.asarray(y, dtype=object))]
            unknown = [name for name in names if name not in index]
            if unknown:
                raise UserError(
                    f"{recorded.source}: sequence {sequence_id!r} has the class {unknown[0]!r}, never seen in training ({what})"
                )
            encoded.append(
                np.asarray([index[name] for name in names], dtype=np.int32) if config["per_step"] else np.int32(index[names[0]])
            )
        return encoded

    def check_features(self, config: dict, recorded) -> None:
        expected = len(config["feature_names"])
        channels = recorded.x[0].shape[1]
        require(channels == expected, f"{recorded.source} has {channels} features a step, the training file {expected}: "
                f"the same features, in the same order, are needed")  # fmt: skip

    def split(self, config: dict) -> Split:
        recorded = read(config, config["train"])
        y = self.encode(config, recorded, "training")
        if config["validation"]:
            held = read(config, config["validation"])
            self.check_features(config, held)
            return Split(
                recorded.x, y, held.x, self.encode(config, held, "validation"), f"validation file {config['validation']}"
            )
        from sklearn.model_selection import train_test_split

        indices = np.arange(len(recorded.x))
        stratify = np.asarray(y) if config["kind"] == "class" and not config["per_step"] else None
        if stratify is not None and np.min(np.bincount(stratify)) < 2:
            stratify = None  # a class with one sequence cannot be on both sides
        train, val = train_test_split(
            indices, test_size=config["validation_fraction"], random_state=config["seed"], stratify=stratify
        )
        how = f"{'stratified ' if stratify is not None else ''}{len(val)} of the training file's {len(indices)} sequences"
        return Split(
            [recorded.x[i] for i in train], [y[i] for i in train], [recorded.x[i] for i in val], [y[i] for i in val], how
        )

    @functools.cache  # noqa: B019  one task object a process; the split is a function of the config only
    def cached_split(self, key: str):
        import json

        return self.split(json.loads(key))

    def split_of(self, config: dict) -> Split:
        import json

        return self.cached_split(json.dumps(config, sort_keys=True, default=str))

    def batch(self, config: dict, x: list, y: list, indices) -> tuple[np.ndarray, np.ndarray]:
        chosen = [x[i] for i in indices]
        inputs = pad(chosen, len(config["feature_names"]), compiled_steps(max(len(item) for item in chosen)))
        if config["per_step"]:
            fill = -1 if config["kind"] == "class" else 0.0
            targets = np.full(inputs.shape[:2], fill, dtype=np.int32 if config["kind"] == "class" else np.float32)
            for row, index in enumerate(indices):
                targets[row, : len(y[index])] = y[index]
            targets = np.maximum(targets, 0) if config["kind"] == "class" else targets  # masked steps: any value
            return inputs, targets[..., None] if config["kind"] == "value" else targets
        targets = np.asarray([y[i] for i in indices])
        return inputs, targets[:, None] if config["kind"] == "value" else targets

    def epoch_batches(self, config: dict, x: list, y: list, epoch: int | None) -> list:
        rng = seeded_rng(config["seed"], TRAIN_STREAM, epoch) if epoch is not None else None
        if rng is not None and config["crop"] < 1 and not config["per_step"]:
            x = [cropped(item, config["crop"], rng) for item in x]
        lengths = np.asarray([len(item) for item in x])
        return [self.batch(config, x, y, indices) for indices in length_batches(lengths, config["batch_size"], rng)]

    def training_data(self, config: dict, first_epoch: int = 0):
        import tensorflow as tf

        split = self.split_of(config)
        steps = math.ceil(len(split.x_train) / config["batch_size"])
        signature = self.signature(config)

        def generate():
            epoch = first_epoch
            while True:
                yield from self.epoch_batches(config, split.x_train, split.y_train, epoch)
                epoch += 1

        train = tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(2)
        validation_batches = self.epoch_batches(config, split.x_val, split.y_val, None)
        validation = tf.data.Dataset.from_generator(lambda: iter(validation_batches), output_signature=signature)
        # Its size said: Keras warns "ran out of data" at the end of a dataset of unknown length.
        validation = validation.apply(tf.data.experimental.assert_cardinality(len(validation_batches)))
        return train, validation, steps

    def signature(self, config: dict):
        import tensorflow as tf

        channels = len(config["feature_names"])
        x_spec = tf.TensorSpec((None, None, channels), tf.float32)
        target_dtype = tf.int32 if config["kind"] == "class" else tf.float32
        if config["per_step"]:
            shape = (None, None) if config["kind"] == "class" else (None, None, 1)
        else:
            shape = (None,) if config["kind"] == "class" else (None, 1)
        return x_spec, tf.TensorSpec(shape, target_dtype)

    def describe_data(self, config: dict) -> list[str]:
        """What a fit found in its files, for its log."""
        recorded, split = read(config, config["train"]), self.split_of(config)
        lengths = np.asarray([len(x) for x in recorded.x])
        lines = [f"kerasrnn: sequences: {len(recorded.x)} in {config['train']}, {lengths.min()}-{lengths.max()} steps "
                 f"(median {int(np.median(lengths))}), {len(config['feature_names'])} features a step"]  # fmt: skip
        if config["kind"] == "class":
            labels = self.encode(config, recorded, "training")  # the training file's own: a --validation file apart
            counts = np.bincount(np.concatenate([np.atleast_1d(y) for y in labels]), minlength=len(config["classes"]))
            shown = ", ".join(f"{name}: {count}" for name, count in zip(config["classes"], counts))
            lines.append(
                f"kerasrnn: sequences: {len(config['classes'])} classes{' per step' if config['per_step'] else ''} ({shown})"
            )
        else:
            lines.append(f"kerasrnn: sequences: a number to predict{' per step' if config['per_step'] else ''} (regression, MSE)")
        if config["fold_width"] > 1:
            lines.append(
                f"kerasrnn: sequences: a long univariate series read as rows of {config['fold_width']} values a step (-o fold=1: one value a step)"
            )
        lines.append(f"kerasrnn: sequences: validation on {split.how}; train on {len(split.x_train)}")
        return lines + [f"kerasrnn: sequences: {note}" for note in recorded.notes]

    # ---- model -----------------------------------------------------------------------------------
    def build_model(self, config: dict):
        import keras

        from kerasrnn.modeling.layers import FoldSteps, SequenceInput

        split = self.split_of(config)
        frames = np.concatenate(split.x_train)
        width = config["fold_width"]
        mean, variance = np.repeat(frames.mean(axis=0), width), np.repeat(frames.var(axis=0), width)
        variance = np.where(variance > 0, variance, 1.0)  # a constant feature: centred, not divided by zero
        inputs = keras.Input(shape=(None, len(config["feature_names"])), name="sequence")
        features = FoldSteps(width, name="fold")(inputs) if width > 1 else inputs
        features = SequenceInput(mean.tolist(), variance.tolist(), name="standardise")(features)
        if config["noise"]:
            features = keras.layers.GaussianNoise(config["noise"], seed=config["seed"], name="noise")(features)
        steps = features
        if width > 1 and config["conv_filters"]:  # the convolutions read a folded series value by value
            steps = SequenceInput(mean[:1].tolist(), variance[:1].tolist(), name="standardise_values")(inputs)
        answers = [self.member(config, features, steps, f"m{index}_" if config["members"] > 1 else "")
                   for index in range(config["members"])]  # fmt: skip
        outputs = keras.layers.Average(name="answer_of_members")(answers) if len(answers) > 1 else answers[0]
        if config["kind"] == "value":
            mean, scale = target_moments(split.y_train)
            outputs = keras.layers.Rescaling(scale, offset=mean, name="in_target_units")(outputs)
        return keras.Model(inputs, outputs, name="sequences")

    def member(self, config: dict, features, steps, prefix: str):
        """One answer: the recurrent layers over `features` (a folded series: its rows) and the convolution
        branch over `steps` (the sequence as recorded, standardised)."""
        import keras

        from kerasrnn.modeling.layers import TimeDistributed
        from kerasrnn.modeling.models import recurrent_body

        pooled = config["pool"] == "mean" and not config["per_step"]
        inputs = features
        features = recurrent_body(features, RecurrentSpec.from_config(config), config["per_step"] or pooled, prefix)
        if pooled:  # the mean over each sequence's own steps (the mask leaves the padding out)
            features = keras.layers.GlobalAveragePooling1D(name=f"{prefix}mean_of_steps")(features)
        if config["conv_filters"]:
            features = keras.layers.Concatenate(name=f"{prefix}recurrent_and_convolution")(
                [features, convolution_branch(config, steps, prefix)]
            )
        if config["summary"] and not config["per_step"]:
            means = keras.layers.GlobalAveragePooling1D(name=f"{prefix}mean_of_features")(inputs)
            features = keras.layers.Concatenate(name=f"{prefix}state_and_means")([features, means])
        units = len(config["classes"]) if config["kind"] == "class" else 1
        activation = "softmax" if config["kind"] == "class" else "linear"
        dense = keras.layers.Dense(units, activation=activation, name=f"{prefix}answer")
        return TimeDistributed(dense, name=f"{prefix}answer_per_step")(features) if config["per_step"] else dense(features)

    def loss_and_metrics(self, config: dict):
        import keras

        if config["kind"] == "class":
            return keras.losses.SparseCategoricalCrossentropy(), [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        return keras.losses.MeanSquaredError(), [
            keras.metrics.RootMeanSquaredError(name="rmse"),
            keras.metrics.MeanAbsoluteError(name="mae"),
        ]

    def callbacks(self, config: dict) -> list:
        from kerasrnn.training.callbacks import RelativeEarlyStopping

        return [RelativeEarlyStopping(config["min_improvement"], patience=config["patience"])]

    def typical_steps(self, config: dict) -> int:
        return int(np.median([len(x) for x in read(config, config["train"]).x]))

    def sample_inputs(self, rng: np.random.Generator, count: int, shape: tuple) -> np.ndarray:
        return rng.normal(0.0, 1.0, (count, *shape)).astype(np.float32)

    # ---- evaluation ------------------------------------------------------------------------------
    def evaluate(self, model, config: dict, lengths: list[int] | None = None) -> dict:
        if lengths:
            raise UserError("sequences are scored on their own lengths: leave out --lengths (give --data FILE)")
        if not config["test"]:
            return {"test": None}
        return {"test": self.score_file(model, config, config["test"])}

    def score_file(self, model, config: dict, path) -> dict:
        recorded = read(config, path)
        self.check_features(config, recorded)
        y = self.encode(config, recorded, "test")
        losses, answers, truths = [], [], []
        for indices in length_batches(np.asarray([len(x) for x in recorded.x]), 256, None):
            x_batch, y_batch = self.batch(config, recorded.x, y, indices)
            predicted = predict_batches(model, x_batch)
            for row, index in enumerate(indices):
                steps = len(recorded.x[index])
                answer = predicted[row, :steps] if config["per_step"] else predicted[row]
                truth = np.asarray(y[index])
                answers.append(answer)
                truths.append(truth)
                losses.append(self.loss_of(config, answer, truth))
        return {**self.scores(config, answers, truths, losses), "samples": len(recorded.x)}

    def loss_of(self, config: dict, answer: np.ndarray, truth: np.ndarray) -> float:
        if config["kind"] == "class":
            probabilities = np.clip(answer.reshape(-1, answer.shape[-1]), 1e-7, 1.0)
            return float(np.mean(-np.log(probabilities[np.arange(truth.size), truth.reshape(-1)])))
        return float(np.mean((answer.reshape(-1) - truth.reshape(-1)) ** 2))

    def scores(self, config: dict, answers: list, truths: list, losses: list) -> dict:
        if config["kind"] == "class":
            right = np.concatenate([np.atleast_1d(a.argmax(axis=-1) == t) for a, t in zip(answers, truths)])
            return {"loss": float(np.mean(losses)), "accuracy": float(right.mean())}
        errors = np.concatenate([a.reshape(-1) - t.reshape(-1) for a, t in zip(answers, truths)])
        return {
            "loss": float(np.mean(errors**2)),
            "rmse": float(np.sqrt(np.mean(errors**2))),
            "mae": float(np.mean(np.abs(errors))),
        }

    def validation_scores(self, model, config: dict, validation) -> dict:
        split = self.split_of(config)
        answers, truths, losses = [], [], []
        for x, t in zip(split.x_val, split.y_val):
            answer = predict_batches(model, pad([x], len(config["feature_names"])))[0]
            answers.append(answer)
            truths.append(np.asarray(t))
            losses.append(self.loss_of(config, answer, np.asarray(t)))
        return self.scores(config, answers, truths, losses)

    def check_data(self, config: dict, data) -> None:
        self.check_features(config, read(config, data))

    def with_data(self, config: dict, data) -> dict:
        return {**config, "test": str(data)}

    # ---- use -------------------------------------------------------------------------------------
    def check_inputs(self, config: dict, inputs: list[str]) -> None:
        self.read_inputs(config, inputs)

    def read_inputs(self, config: dict, inputs: list[str]):
        require(len(inputs) == 1, f"sequences predict takes one file of sequences, got {len(inputs)} inputs")
        recorded = read(config, inputs[0], needs_label=False)
        self.check_features(config, recorded)
        return recorded

    def model_input(self, config: dict, inputs: list[str]) -> tuple[np.ndarray, dict]:
        """The file's first sequence (for `inspect` and serve's /steps), its id and the run's class names."""
        recorded = self.read_inputs(config, inputs)
        return recorded.x[0][None], {"id": recorded.ids[0], "length": len(recorded.x[0]), "classes": config["classes"]}

    # The label of a sequence, probed in the states after each step (a number's: its quartile).
    probes = {"label": "the sequence's label (a number: its quartile; per-step labels: the step's), after each step"}

    def inspection_examples(self, config: dict, count: int, length: int | None) -> tuple[np.ndarray, dict]:
        """The training file's sequences of at least the median length, cut to it (the test file is never read):
        one length, so every probe's step has every sequence."""
        require(length is None, "sequences are inspected at their own lengths: leave out --length (or give a file)")
        recorded = read(config, config["train"])
        lengths = np.asarray([len(x) for x in recorded.x])
        steps = int(np.median(lengths))
        chosen = np.flatnonzero(lengths >= steps)[:count]
        x = np.stack([recorded.x[index][:steps] for index in chosen])
        labels = self.encode(config, recorded, "training")
        model_steps = math.ceil(steps / config["fold_width"])
        if config["per_step"]:
            targets = np.stack([np.asarray(labels[index])[:steps] for index in chosen])
        else:
            targets = np.repeat(np.asarray([labels[index] for index in chosen]).reshape(-1, 1), model_steps, axis=1)
        if config["kind"] == "value":  # a logistic read-out needs classes: the value's quartile
            targets = np.digitize(targets, np.quantile(targets, [0.25, 0.5, 0.75]))
        return x, {"label": targets.astype(np.int64)}

    def describe_inspection_input(self, x: np.ndarray) -> str:
        return f"a training sequence, its first {len(x)} steps"

    def predict(self, model, config: dict, inputs: list[str], show: str | None = None) -> dict:
        """Every sequence in the file answered; sequences of one length go together (no padding reaches an
        artifact, so a streaming LiteRT model answers as the run does)."""
        recorded = self.read_inputs(config, inputs)
        lengths = np.asarray([len(x) for x in recorded.x])
        answers = [None] * len(recorded.x)
        for length in np.unique(lengths):
            indices = np.flatnonzero(lengths == length)
            outputs = np.asarray(model.predict(np.stack([recorded.x[i] for i in indices]), verbose=0))
            for row, index in enumerate(indices):
                answers[index] = outputs[row]
        return {
            "predictions": [
                self.describe_answer(config, sequence_id, answer) for sequence_id, answer in zip(recorded.ids, answers)
            ]
        }

    def answers_by_prefix(self, model, config: dict, x: np.ndarray) -> np.ndarray:
        """One batch of the sequence's prefixes (a model step each: a folded series' row), the rest NaN padding
        that SequenceInput masks: each answer has read its prefix only, a bidirectional model's too."""
        width, values = config["fold_width"], x.shape[1]
        rows = math.ceil(values / width)
        prefixes = np.full((rows, values, x.shape[2]), PAD, dtype=np.float32)
        for row in range(rows):
            prefixes[row, : (row + 1) * width] = x[0, : (row + 1) * width]
        outputs = np.asarray(model.predict(prefixes, verbose=0))
        return outputs[np.arange(rows), np.arange(rows)] if config["per_step"] else outputs

    def describe_answer(self, config: dict, sequence_id: str, answer: np.ndarray) -> dict:
        if config["kind"] == "class" and config["per_step"]:
            return {"id": sequence_id, "labels": [config["classes"][int(i)] for i in answer.argmax(axis=-1)],
                    "confidence": [round(float(p), 6) for p in answer.max(axis=-1)]}  # fmt: skip
        if config["kind"] == "class":
            return {
                "id": sequence_id,
                "label": config["classes"][int(answer.argmax())],
                "confidence": round(float(answer.max()), 6),
            }
        if config["per_step"]:
            return {"id": sequence_id, "values": [round(float(v), 6) for v in answer.reshape(-1)]}
        return {"id": sequence_id, "value": round(float(answer.reshape(-1)[0]), 6)}

    def describe_prediction(self, result: dict) -> str:
        lines = []
        for answer in result["predictions"]:
            if "label" in answer:
                lines.append(f"{answer['id']}: {answer['label']} (confidence {answer['confidence']:.3f})")
            elif "value" in answer:
                lines.append(f"{answer['id']}: {answer['value']:.6g}")
            else:
                lines.append(f"{answer['id']}: {' '.join(map(str, answer.get('labels', answer.get('values', []))))}")
        return "\n".join(lines)


def check_options(config: dict) -> None:
    """The model and training options, each refused in one line before any file is read."""
    require(config["target"] in TARGETS, f"target must be one of {', '.join(TARGETS)}, got {config['target']!r}")
    fraction, crop = config["validation_fraction"], config["crop"]
    require(isinstance(fraction, float | int) and 0 < fraction < 1, f"validation fraction must be in (0, 1), got {fraction!r}")
    require(isinstance(crop, float | int) and 0 < crop <= 1, f"crop must be in (0, 1], got {crop!r}")
    for key in ("noise", "min_improvement"):
        require(isinstance(config[key], float | int) and config[key] >= 0, f"{key} must be >= 0, got {config[key]!r}")
    require_whole_numbers(config, ("patience", "members"))
    require(isinstance(config["summary"], bool), f"summary must be true or false, got {config['summary']!r}")
    require(config["pool"] in POOLS, f"pool must be one of {', '.join(POOLS)}, got {config['pool']!r}")
    for key in ("conv_filters", "conv_widths"):
        require(isinstance(config[key], list) and all(whole(n) and n >= 1 for n in config[key]),
                f"{key} must be a list of whole numbers >= 1 (e.g. [128,256,128]), got {config[key]!r}")  # fmt: skip
    require(len(config["conv_filters"]) == len(config["conv_widths"]),
            f"conv_filters and conv_widths must be as long, got {config['conv_filters']} and {config['conv_widths']}")  # fmt: skip


def convolution_branch(config: dict, features, prefix: str):
    """Convolutions over each sequence's own steps (batch-normalised over the real steps only, ReLU), as a fully
    convolutional classifier reads a series: their mean over the steps, or each step's for per-step labels."""
    import keras

    from kerasrnn.modeling.layers import StepConvolution

    for index, (filters, width) in enumerate(zip(config["conv_filters"], config["conv_widths"])):
        # No bias: the normalisation after it takes out any constant (a bias would train on rounding noise alone).
        features = StepConvolution(filters, width, use_bias=False, name=f"{prefix}convolution_{index}")(features)
        features = keras.layers.BatchNormalization(name=f"{prefix}convolution_{index}_normalised")(features)
        features = keras.layers.Activation("relu", name=f"{prefix}convolution_{index}_relu")(features)
    if config["per_step"]:
        return features
    return keras.layers.GlobalAveragePooling1D(name=f"{prefix}convolution_mean")(features)


def fold_width(asked, recorded) -> int:
    """How many values of a univariate series make one step: `asked`, or for "auto" the square root of the
    median length from 100 steps on (a 1,500-step series: 39 rows of 39); 1 for several channels or per-step labels."""
    if asked != "auto":
        require(isinstance(asked, int) and asked >= 1, f"fold must be auto or a whole number >= 1, got {asked!r}")
        require(asked == 1 or (len(recorded.features) == 1 and not recorded.per_step),
                "fold reads a univariate series with one label as rows: it needs one feature and no per-step labels")  # fmt: skip
        return asked
    median = int(np.median([len(x) for x in recorded.x]))
    if len(recorded.features) != 1 or recorded.per_step or median < 100:
        return 1
    return int(math.ceil(math.sqrt(median)))


def whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def cropped(x: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A random stretch of `x`, at least `fraction` of its steps (one step at least)."""
    shortest = max(1, math.ceil(fraction * len(x)))
    length = int(rng.integers(shortest, len(x) + 1))
    start = int(rng.integers(0, len(x) - length + 1))
    return x[start : start + length]


def natural_key(name: str):
    """Class names in a person's order: 2 before 10."""
    return (0, float(name), name) if name.replace(".", "", 1).lstrip("-").isdigit() else (1, 0.0, name)


TASK = SequencesTask()
