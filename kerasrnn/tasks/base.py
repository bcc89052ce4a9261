"""What every task provides, and the pieces the sequence tasks share."""

from __future__ import annotations

import difflib
import functools
import re

import numpy as np

from kerasrnn.config import COMMON_DEFAULTS, PRECISIONS, Recipe, format_settings, nullable_options
from kerasrnn.errors import UserError, require
from kerasrnn.modeling.spec import RecurrentSpec

GUIDE = "docs/add-a-task.md"


def required(hook):
    """Marks a hook every task must define: a fit refuses a task without it in one line, before anything trains."""
    hook.required_hook = True
    return hook


# Options whose values are names, accepted in any case (LSTM, Cosine, BCE).
NAMED_CHOICES = ("cell", "loss", "lr_schedule", "train_step", "jit_compile", "steps_per_execution", "precision")


class Task:
    """A learning problem: its data, its model head, its metrics, its inputs and outputs.

    The contract (docs/add-a-task.md walks through a whole task). A module in kerasrnn/tasks/ becomes a
    task by defining `TASK`, an instance of a subclass that sets `name` and `defaults` (its own options,
    and overrides of COMMON_DEFAULTS) and implements the hooks below, in the order a fit calls them:

    1. `validate(config)` -> the accepted config (`make_config` calls it; the others get its result);
    2. `build_model(config)` and `loss_and_metrics(config)`: the Keras model and how it is compiled;
    3. `training_data(config, first_epoch)`: tf.data for Keras' fit; `training_batches(config)`: numpy
       batches for the toolkit's torch trainer (None: it reads `training_data`'s);
    4. `evaluate(model, config, lengths)`: the results metrics.json records (keys starting with _ are
       for `plot` only), then `plot(run_dir, config, evaluation)`: the run's figures;
    5. for `predict` and `serve`: `model_input`, `predict`, `describe_prediction`, and `sample_inputs`
       (parity checks and speed measurements).

    Sequence tasks (inputs of any length, evaluated at many lengths) derive from `SequenceTask`, which
    owns the generated-data stream and the by-length evaluation.
    """

    name: str = ""
    defaults: dict = {}
    # Defaults measured to do better for some cells and sizes (kerasrnn.config.Recipe), in order.
    recipes: tuple[Recipe, ...] = ()
    # For the command line, which reads them from the module's FLAGS and PREDICT_INPUTS literals without
    # importing it (kerasrnn.tasks.declarations): options with their own `fit` flag, and what one INPUT of
    # `predict` is. Every option can be set with -o KEY=VALUE.
    flags: dict = {}
    predict_inputs: str = ""
    # Whether inputs are sequences of any length (evaluated by length), and whether `predict` can draw its inputs.
    is_sequence_task: bool = False
    shows_inputs: bool = False
    # Whether `predict`'s one input is a file of the person's own data (task sequences): a server then takes the
    # sequences as JSON numbers or an uploaded file, never a path on the server.
    reads_files: bool = False

    # ---- configuration -------------------------------------------------
    def make_config(self, overrides: dict, log=None) -> dict:
        """Defaults, the recipes that apply, then `overrides`, validated; `log` hears which recipes applied.

        Options of other tasks are refused; None means "none" where an option allows it.
        """
        self.require_hooks()
        base = self.base_defaults()
        overrides = {key: value.lower() if key in NAMED_CHOICES and isinstance(value, str) else value
                     for key, value in overrides.items()}  # fmt: skip
        unknown = sorted(set(overrides) - set(base))
        if unknown:
            raise UserError(self.unknown_option_message(unknown[0]))
        nulls = sorted(key for key, value in overrides.items() if value is None and key not in nullable_options(self.defaults))
        if nulls:
            raise UserError(f"option {', '.join(nulls)} cannot be null: give a value (or leave it out for the default)")
        chosen = {**base, **overrides}
        validate_common(chosen)  # recipes look at cell and size: they must be what they claim first
        for recipe in self.applicable_recipes(chosen):
            settings = {key: value for key, value in recipe.settings.items() if key not in overrides}
            base.update(settings)
            if log and settings:
                model = f"{'bidirectional ' if chosen['bidirectional'] else ''}{chosen['cell']} {chosen['units']}"
                log(f"kerasrnn: {self.name} defaults for {model}: {recipe.name} ({format_settings(settings)})")
        from kerasrnn.tasks import source_of

        config = {**base, **overrides, "task": self.name}
        validate_common(config)
        return {**self.validate(config), **source_of(self)}  # a task from outside: where to find it again

    def require_hooks(self) -> None:
        """Refuse, in one line, a task that lacks a hook every fit calls (those marked `required`)."""
        missing = [
            name for name in dir(type(self)) if getattr(getattr(type(self), name, None), "required_hook", False)
        ]  # still the base class's own: not defined by this task
        if missing:
            raise UserError(
                f"task {self.name!r} cannot train: it defines no {', '.join(sorted(missing))} ({GUIDE} lists the hooks)"
            )

    def unknown_option_message(self, key: str) -> str:
        """Why `key` is refused, with the closest options of this task, or the task it belongs to."""
        from kerasrnn.tasks import get_task, task_names

        owners = [name for name in task_names() if name != self.name and key in get_task(name).defaults]
        if owners:
            return f"option {key!r} applies to task {' and '.join(owners)}, not {self.name!r}"
        close = difflib.get_close_matches(key, self.base_defaults(), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(repr(name) for name in close)}? " if close else ""
        return (
            f"task {self.name!r} has no option {key!r}: {hint}"
            f"`kerasrnn fit {self.name} --dry-run` lists its options (docs/configuration.md says what each does)"
        )

    def base_defaults(self) -> dict:
        """Every option's default before recipes: the shared ones, then the task's own."""
        return {**COMMON_DEFAULTS, **self.defaults}

    def applicable_recipes(self, options: dict) -> list[Recipe]:
        return [recipe for recipe in self.recipes if recipe.applies_to(options)]

    def validate(self, config: dict) -> dict:
        """The config as the task accepts it (aliases resolved; the argument is not changed); a UserError
        names what is allowed otherwise."""
        return config

    # ---- model and training ---------------------------------------------
    @required
    def build_model(self, config: dict):
        """The Keras model (kerasrnn.modeling.models.build_model builds the recurrent body). Required."""
        raise NotImplementedError

    @required
    def loss_and_metrics(self, config: dict):
        """(a Keras loss, [Keras metrics]) the model is compiled with. Required."""
        raise NotImplementedError

    @required
    def training_data(self, config: dict, first_epoch: int = 0):
        """(train dataset, validation dataset, steps per epoch).

        `first_epoch`: the epoch a resumed fit starts from; data generated batch by batch starts
        with that epoch's first batch. Required.
        """
        raise NotImplementedError

    def training_batches(self, config: dict):
        """The training batches as numpy arrays without tf.data, for a trainer that feeds its backend directly
        (kerasrnn.torch.step): a function `epoch -> iterator of (x, y)`, one epoch's batches.

        Generated tasks give exactly the batches `training_data` gives; fixed data sets give the same
        examples in a seeded order of their own. None where only the tf.data pipeline makes them.
        """
        return None

    def callbacks(self, config: dict) -> list:
        """Keras callbacks of the task's own for its fit (early stopping, say), after the toolkit's."""
        return []

    def describe_data(self, config: dict) -> list[str]:
        """Lines for the fit's log: what the task found in its data."""
        return []

    def candidates(self, config: dict) -> int:
        """How many starting points a fit trains side by side, keeping the best (kerasrnn.training.candidates); 1: an
        ordinary fit."""
        return 1

    @required
    def evaluate(self, model, config: dict, lengths: list[int] | None = None) -> dict:
        """{"test": {"loss", "accuracy", ...}, and "by_length": {...} for sequence tasks}: the test set, read once
        a fit is over (or after a search chose). Required."""
        raise NotImplementedError

    def check_data(self, config: dict, data) -> None:
        """Refuse `evaluate --data FILE` for a task that reads no files (the file task overrides this)."""
        raise UserError(f"{self.name} generates or ships its own data: --data applies to task sequences")

    def with_data(self, config: dict, data) -> dict:
        """The config that `evaluate` scores `data` with (checked by `check_data`)."""
        return config

    def typical_steps(self, config: dict) -> int:
        """The time steps of a typical input, where the model's input length is free: for speed measurements."""
        return 32

    # The validation score that searches and sweeps choose by, a key of `validation_scores` (higher is
    # better; a name ending in "loss" is lower-is-better); None: "accuracy" where the task measures it, else
    # the loss. The test set never chooses.
    objective: str | None = None

    def validation_scores(self, model, config: dict, validation) -> dict:
        """The kept model's scores on the validation data (`training_data`'s, never the test set): the loss and
        metrics Keras computes there. Tasks add what their objective needs."""
        scores = model.evaluate(validation, verbose=0, return_dict=True)
        return {name: float(value) for name, value in scores.items()}

    def objective_value(self, scores: dict) -> float:
        """`objective` of `validation_scores`, as a number to maximise."""
        name = self.objective_of(scores)
        if name not in scores:
            raise UserError(f"task {self.name!r} chooses by {name!r}, which its validation scores lack: {sorted(scores)}")
        value = float(scores[name])
        return -value if name.endswith("loss") else value

    def objective_of(self, scores: dict) -> str:
        return self.objective or ("accuracy" if "accuracy" in scores else "loss")

    def sample_inputs(self, rng: np.random.Generator, count: int, shape: tuple) -> np.ndarray:
        """`count` model inputs of `shape` (time steps first) like the task's own; for parity checks."""
        return rng.random((count, *shape), dtype=np.float32)

    # ---- use ------------------------------------------------------------
    def model_input(self, config: dict, inputs: list[str]) -> tuple[np.ndarray, dict]:
        """(the model's input array for a person's `inputs`, what a page shows beside the answer). Required for
        `predict`, `serve` and `inspect` of given inputs."""
        raise UserError(f"task {self.name!r} does not read a person's inputs (it defines no model_input): {GUIDE}")

    def check_inputs(self, config: dict, inputs: list[str]) -> None:
        """Refuse a person's `inputs` that cannot be answered, before a model or a framework loads (so that a
        mistyped input costs no start-up); the default builds them with `model_input`."""
        self.model_input(config, inputs)

    def predict(self, model, config: dict, inputs: list[str], show: str | None = None) -> dict:
        """The model's answer for a person's `inputs`; `show`: a figure of the inputs, where `shows_inputs`.
        The default: the model's outputs for `model_input`'s array, beside what it shows."""
        x, shown = self.model_input(config, inputs)
        return {**shown, "outputs": np.round(np.asarray(model.predict(x, verbose=0)), 6).tolist()}

    def describe_prediction(self, result: dict) -> str:
        """`predict`'s result as the lines `kerasrnn predict` prints (the default: its JSON)."""
        import json

        return json.dumps(result)

    def plot(self, run_dir, config: dict, evaluation: dict) -> list:
        """The run's figures from `evaluate`'s result (which it must not change); their paths."""
        return []

    # ---- looking inside (kerasrnn.insight.inspection: `kerasrnn inspect`) --------------------------------
    # What the state should hold, for linear probes: {name: what it is}; `inspection_examples` gives the targets.
    probes: dict = {}

    def inspection_examples(self, config: dict, count: int, length: int | None) -> tuple[np.ndarray, dict]:
        """(`count` model inputs, {probe name: (count, steps) int targets, the value at every step}); `length`
        as `kerasrnn inspect --length` takes it (None: the task's own); the probes shuffle them, then half fit
        and half score. Needed for `inspect` without inputs and for `probes`."""
        raise UserError(f"task {self.name!r} makes no examples of its own to inspect: give inputs, as predict takes them")

    def describe_inspection_input(self, x: np.ndarray) -> str:
        """One model input as a person would write it (the title of its figures)."""
        return ""

    def step_labels(self, x: np.ndarray) -> list[str]:
        """What one input holds at each step, for the figures' step axis."""
        return [str(step + 1) for step in range(len(x))]

    def answers_by_prefix(self, model, config: dict, x: np.ndarray) -> np.ndarray | None:
        """(steps, outputs): the answer had the one input `x` (1, steps, ...) ended at each step, for a model that
        reads ahead (bidirectional) or an artifact; None: the task cannot cut its inputs (serve's /steps)."""
        return None

    def inspection_extras(self, model, config: dict, x: np.ndarray) -> dict:
        """Task-specific findings for the inputs `x`, added to the inspection's JSON (keys with _: figures only)."""
        return {}

    def inspection_figures(self, out_dir, x: np.ndarray, extras: dict, labels: list[str]) -> list:
        """Figures of `inspection_extras`."""
        return []


class SequenceTask(Task):
    """A task of generated sequences of any length: an endless stream of fresh training batches, batch i a
    function of (seed, i) alone (so a resumed fit sees the batches an uninterrupted one would), and scores
    at every length asked for.

    Subclasses implement `training_batch`, `batch_shapes`, `score_length`, `default_lengths` and
    `typical_steps`; this class makes the tf.data stream, the torch trainer's batches and the by-length scores.
    """

    is_sequence_task = True

    @required
    def training_batch(self, config: dict, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Training batch `index` as (inputs, targets): it depends only on the config's seed and `index`."""
        raise NotImplementedError

    @required
    def batch_shapes(self, config: dict) -> tuple[tuple, tuple]:
        """(inputs' shape, targets' shape) of a training batch; None where each batch decides (its length)."""
        raise NotImplementedError

    @required
    def score_length(self, model, config: dict, length: int) -> dict:
        """The scores at one sequence length (at least `exact_accuracy` and `samples`)."""
        raise NotImplementedError

    @required
    def default_lengths(self, config: dict) -> list[int]:
        """The lengths a fit is evaluated at."""
        raise NotImplementedError

    def typical_steps(self, config: dict) -> int:
        """The time steps of a typical input, for speed measurements."""
        raise NotImplementedError

    def training_dataset(self, config: dict, first_epoch: int = 0):
        """The endless tf.data stream of `training_batch`es from `first_epoch`'s first batch on."""
        import tensorflow as tf

        x_shape, y_shape = self.batch_shapes(config)
        x, y = self.training_batch(config, 0)
        types = (tf.as_dtype(x.dtype), tf.as_dtype(y.dtype))

        def with_shapes(x, y):
            x.set_shape(x_shape)
            y.set_shape(y_shape)
            return x, y

        make_batch = functools.partial(self.training_batch, config)
        return (
            tf.data.Dataset.counter(start=first_epoch * config["steps_per_epoch"])
            .map(lambda index: tf.numpy_function(make_batch, [index], types, stateful=False))
            .map(with_shapes)
            .prefetch(tf.data.AUTOTUNE)
        )

    def training_batches(self, config: dict):
        """The same batches as `training_dataset`, as numpy arrays (kerasrnn.torch.step)."""
        return generated_epochs(functools.partial(self.training_batch, config), config["steps_per_epoch"])

    def scores_by_length(self, model, config: dict, lengths: list[int]) -> dict:
        """{"length": scores} at every length of `lengths`, in order."""
        return {str(length): self.score_length(model, config, length) for length in lengths}


def validate_common(config: dict) -> None:
    RecurrentSpec.from_config(config)  # validates cell, units, layers, dropout
    require_whole_numbers(config, ("epochs", "batch_size"))
    per_call = config["steps_per_execution"]
    whole = isinstance(per_call, int) and not isinstance(per_call, bool) and per_call >= 1
    require(per_call == "auto" or whole, f"steps per execution must be auto or a whole number >= 1, got {per_call!r}")
    require(isinstance(config["deterministic"], bool), f"deterministic must be true or false, got {config['deterministic']!r}")
    require(
        config["jit_compile"] in (True, False, "auto"), f"jit_compile must be true, false or auto, got {config['jit_compile']!r}"
    )
    lr = config["lr"]
    require(isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0, f"learning rate must be > 0, got {lr!r}")
    require(config["clipnorm"] is None or (isinstance(config["clipnorm"], (int, float)) and config["clipnorm"] > 0),
            f"clipnorm must be > 0 (or null for none), got {config['clipnorm']!r}")  # fmt: skip
    require(
        config["lr_schedule"] in ("constant", "cosine"), f"lr schedule must be constant or cosine, got {config['lr_schedule']!r}"
    )
    require(isinstance(config["seed"], int) and config["seed"] >= 0, f"seed must be a whole number >= 0, got {config['seed']!r}")
    require(config["train_step"] in ("auto", "keras"), f"train step must be auto or keras, got {config['train_step']!r}")
    require(config["precision"] in PRECISIONS, f"precision must be {', '.join(PRECISIONS)}, got {config['precision']!r}")


def require_whole_numbers(config: dict, keys, minimum: int = 1) -> None:
    """Each of `keys` must be an int >= `minimum`; the message names the option as people write it.

    true and false are refused: Python counts them as 1 and 0, a person does not mean a size by them.
    """
    for key in keys:
        value = config[key]
        whole = isinstance(value, int) and not isinstance(value, bool)
        require(whole and value >= minimum, f"{key.replace('_', ' ')} must be a whole number >= {minimum}, got {value!r}")


def parse_lengths(text: str | None, default: list[int] | None = None) -> list[int] | None:
    """'1-20' -> [1..20]; '5' -> [5]; '1-10,50,100' -> those. Lengths are >= 1."""
    if text is None:
        return default
    lengths: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise UserError(f"lengths must look like A-B, A or A-B,C (whole numbers >= 1), got {text!r}")
        start = int(match.group(1))
        stop = int(match.group(2)) if match.group(2) else start
        require(start >= 1, f"lengths must be >= 1, got {start} in {text!r}")
        require(start <= stop, f"a length range A-B needs A <= B, got {part.strip()!r}")
        lengths.extend(range(start, stop + 1))
    return sorted(set(lengths))


def predict_batches(model, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """`model.predict(x)` without its per-call set-up (a data adapter and an epoch iterator): that set-up
    is most of the time when a small model is scored at dozens of lengths (docs/recall.md has the measurement).
    On torch, the toolkit's forward pass where it reproduces the model (kerasrnn.torch.step)."""
    import keras

    predict = model.predict_on_batch
    if keras.backend.backend() == "torch" and isinstance(model, keras.Model):
        from kerasrnn.torch.forward import inference_function

        predict = inference_function(model) or predict
    return np.concatenate([np.asarray(predict(x[start : start + batch_size])) for start in range(0, len(x), batch_size)])


def generated_epochs(batch_at, steps_per_epoch: int):
    """`Task.training_batches` of a task whose batch i is `batch_at(i)`: epoch e is batches e*steps .. (e+1)*steps - 1."""

    def epoch_batches(epoch: int):
        return (batch_at(index) for index in range(epoch * steps_per_epoch, (epoch + 1) * steps_per_epoch))

    return epoch_batches


def shuffled_epochs(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int):
    """`Task.training_batches` of fixed arrays: each epoch a seeded shuffle of its own, full batches only."""
    steps = len(x) // batch_size

    def epoch_batches(epoch: int):
        order = seeded_rng(seed, TRAIN_STREAM, epoch).permutation(len(x))
        for index in range(steps):
            chosen = order[index * batch_size : (index + 1) * batch_size]
            yield x[chosen], y[chosen]

    return epoch_batches


def seeded_rng(*seed_parts: int) -> np.random.Generator:
    """A numpy generator for one stream of one seed: streams never share draws."""
    return np.random.default_rng([int(part) for part in seed_parts])


# Streams of random numbers, so that training, validation and test data never overlap.
TRAIN_STREAM, VALIDATION_STREAM, TEST_STREAM, EVALUATION_STREAM, INSPECTION_STREAM = 0, 1, 2, 3, 4
