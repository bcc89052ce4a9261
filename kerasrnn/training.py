"""Fit and evaluate a task's model with Keras' own machinery (callbacks, CSVLogger, checkpoints).

Call `kerasrnn.backend.select_backend` before importing this module.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import platform
import signal
import threading
import time
from pathlib import Path

import keras

from kerasrnn import backend as backends
from kerasrnn import candidates, runs
from kerasrnn.errors import RunError, UserError
from kerasrnn.plots import HISTORY_FILE, ITERATIONS_FILE
from kerasrnn.tasks import get_task

BEST_WEIGHTS = "best.weights.h5"


class IterationLossLogger(keras.callbacks.Callback):
    """Appends the training loss of every iteration to iterations.csv.

    Keras reports the running mean of the loss over the epoch; the loss of
    batch k is recovered exactly from two consecutive means:
    k * mean_k - (k - 1) * mean_(k-1). With steps_per_execution > 1 Keras
    reports once per execution; the row then holds the mean loss of the
    batches since the last report, at the iteration of the last of them.
    """

    def __init__(self, path: Path, tensorboard_dir: Path | None = None):
        super().__init__()
        self.path = Path(path)
        self.iteration = self._rows_already_written()
        self.rows: list[str] = []
        self.losses: list[tuple[int, float]] = []
        # The same losses as the scalar `iteration_loss`, beside Keras' own TensorBoard logs.
        self.tensorboard_dir = tensorboard_dir
        self.writer = None

    def _rows_already_written(self) -> int:
        if not self.path.exists():
            self.path.write_text("iteration,epoch,loss\n")
            return 0
        lines = self.path.read_text().splitlines()
        return int(lines[-1].split(",")[0]) if len(lines) > 1 else 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.previous_mean, self.previous_batches, self.rows = epoch, 0.0, 0, []

    def on_train_batch_end(self, batch, logs=None):
        if not logs or "loss" not in logs:
            return
        mean, batches = float(logs["loss"]), batch + 1
        new = batches - self.previous_batches
        if new <= 0:
            return
        batch_loss = (batches * mean - self.previous_batches * self.previous_mean) / new
        self.previous_mean, self.previous_batches = mean, batches
        self.iteration += new
        self.rows.append(f"{self.iteration},{self.epoch},{batch_loss:.8g}\n")
        self.losses.append((self.iteration, batch_loss))

    def on_epoch_end(self, epoch, logs=None):
        with self.path.open("a") as handle:  # one append per epoch: a crash loses at most that epoch
            handle.writelines(self.rows)
        if self.tensorboard_dir is not None:
            self._write_tensorboard()
        self.rows, self.losses = [], []

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def _write_tensorboard(self):
        import tensorflow as tf  # tf.summary writes TensorBoard's files on every backend

        if self.writer is None:
            self.writer = tf.summary.create_file_writer(str(self.tensorboard_dir))
        with self.writer.as_default():
            for iteration, loss in self.losses:
                tf.summary.scalar("iteration_loss", loss, step=iteration)
        self.writer.flush()


class TrainingClock(keras.callbacks.Callback):
    """Training time per epoch (validation excluded) and the last epoch finished."""

    def __init__(self):
        super().__init__()
        self.epoch_seconds: list[float] = []
        self.last_epoch = -1

    def on_epoch_begin(self, epoch, logs=None):
        self.started = self.last_batch_end = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.last_batch_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append(self.last_batch_end - self.started)
        self.last_epoch = epoch


class StopOnCtrlC(keras.callbacks.Callback):
    """Ctrl-C stops a fit between two steps, never in the middle of the epoch's end (checkpoints, history).

    Python raises KeyboardInterrupt wherever the main thread is when the signal arrives: inside a
    finalizer or a library's bare `except:` it is discarded and the fit runs on to its end; between
    two of Keras' epoch-end callbacks it leaves the backup and history.csv an epoch apart. While
    `handling_ctrl_c` is active the signal only sets a flag, and the fit raises KeyboardInterrupt
    itself at the next step. A second Ctrl-C raises at once.
    """

    def __init__(self):
        super().__init__()
        self.requested = False

    @contextlib.contextmanager
    def handling_ctrl_c(self):
        previous = signal.getsignal(signal.SIGINT)
        # Only where Python's own Ctrl-C handling is in place: not in other threads (signals cannot be set
        # there), not where Ctrl-C is ignored (a background job) or handled by someone else.
        if threading.current_thread() is not threading.main_thread() or previous is not signal.default_int_handler:
            yield
            return
        signal.signal(signal.SIGINT, self._request_stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _request_stop(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def stop_if_requested(self, *_, **__):
        if self.requested:
            raise KeyboardInterrupt

    on_epoch_begin = on_train_batch_end = on_test_batch_end = stop_if_requested


def steady_samples_per_second(epoch_seconds: list[float], samples_per_epoch: int) -> float:
    """Samples/s of the steady state: the first epoch (tracing, compiling) is left out when there are more."""
    steady = epoch_seconds[1:] if len(epoch_seconds) > 1 else epoch_seconds
    total = sum(steady)
    return samples_per_epoch * len(steady) / total if total > 0 else float("nan")


def make_deterministic(seed: int, kernels: bool = True) -> None:
    """Seed Python, numpy and the backend; with `kernels`, ask TensorFlow for deterministic kernels."""
    keras.utils.set_random_seed(seed)
    if kernels and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def learning_rate(config: dict, steps_per_epoch: int | None):
    """A constant rate, or a cosine decay to 1% of it over the whole fit (steadier last epochs)."""
    if config.get("lr_schedule", "constant") == "cosine" and steps_per_epoch:
        return keras.optimizers.schedules.CosineDecay(config["lr"], decay_steps=config["epochs"] * steps_per_epoch, alpha=0.01)
    return config["lr"]


def compile_model(task, config: dict, model=None, steps_per_epoch: int | None = None, loss_and_metrics=None):
    """Compile `model` (a new one built from `config` when None) with the task's loss and metrics (or those given)."""
    model = model or task.build_model(config)
    loss, metrics = loss_and_metrics or task.loss_and_metrics(config)
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate(config, steps_per_epoch), clipnorm=config.get("clipnorm"))
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=metrics,
        jit_compile=config.get("jit_compile", "auto"),
        steps_per_execution=config.get("steps_per_execution", 1),
    )
    return model


def candidate_count(config: dict) -> int:
    return config.get("candidates", 1)


def training_model(task, config: dict, steps_per_epoch: int):
    """The compiled model that trains: the task's own, or side-by-side candidates of it (kerasrnn.candidates)."""
    count = candidate_count(config)
    if count == 1:
        return compile_model(task, config, steps_per_epoch=steps_per_epoch)
    build_single = functools.partial(task.build_model, config)
    pool = candidates.build_pool(build_single(), count)
    candidates.initialize_pool(pool, build_single, config["seed"], count)
    loss, _ = task.loss_and_metrics(config)
    pool_loss_and_metrics = (candidates.CandidateLoss(loss), [candidates.BestCandidateAccuracy(count)])
    return compile_model(task, config, model=pool, steps_per_epoch=steps_per_epoch, loss_and_metrics=pool_loss_and_metrics)


def checkpoint_monitor(config: dict) -> dict:
    """Which epoch's weights to keep: lowest validation loss; with candidates, the best candidate's accuracy
    (the mean loss over candidates says little about the one that will be kept)."""
    if candidate_count(config) > 1:
        return {"monitor": "val_accuracy", "mode": "max"}
    return {"monitor": "val_loss", "mode": "min"}


def fit(
    config: dict,
    run_dir: Path,
    resume: bool = False,
    overwrite: bool = False,
    verbose: int | str = "auto",
    log=print,
    lengths: list[int] | None = None,
) -> dict:
    """Train `config`'s task into `run_dir` and write the complete run directory; return metrics.

    `lengths`: the sequence lengths to evaluate at the end (default: the task's).
    """
    run_dir = Path(run_dir)
    runs.prepare_run_dir(run_dir, resume=resume, overwrite=overwrite)
    if resume:
        config = runs.read_config(run_dir)
    task = get_task(config["task"])
    runs.write_json_atomic(run_dir / runs.CONFIG_FILE, config)

    device = backends.describe_device()
    log(f"kerasrnn: {task.name} on backend {keras.backend.backend()}, device {device}")
    make_deterministic(config["seed"], kernels=config.get("deterministic", True))
    # A resumed fit's generated data goes on from the batch where the interrupted fit stopped.
    first_epoch = runs.completed_epochs(run_dir) if resume else 0
    train, validation, steps_per_epoch = task.training_data(config, first_epoch=first_epoch)
    model = training_model(task, config, steps_per_epoch)

    checkpoints = run_dir / runs.CHECKPOINT_DIR
    checkpoints.mkdir(exist_ok=True)
    clock = TrainingClock()
    callbacks = [
        keras.callbacks.BackupAndRestore(str(runs.backup_dir(run_dir))),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.ModelCheckpoint(
            str(checkpoints / BEST_WEIGHTS), save_best_only=True, save_weights_only=True, **checkpoint_monitor(config)
        ),
        keras.callbacks.CSVLogger(str(run_dir / HISTORY_FILE), append=resume),
        # Loss, metrics and learning rate per epoch under tensorboard/train and tensorboard/validation.
        keras.callbacks.TensorBoard(str(run_dir / runs.TENSORBOARD_DIR), write_graph=False),
        IterationLossLogger(run_dir / ITERATIONS_FILE, tensorboard_dir=run_dir / runs.TENSORBOARD_DIR / "train"),
        clock,
    ]
    ctrl_c = StopOnCtrlC()  # last: every other callback has finished an epoch before it can stop the fit
    started = time.perf_counter()
    with ctrl_c.handling_ctrl_c():
        history = model.fit(
            train,
            epochs=config["epochs"],
            steps_per_epoch=steps_per_epoch,
            validation_data=validation,
            callbacks=[*callbacks, ctrl_c],
            verbose=verbose,
            shuffle=False,  # the data pipelines shuffle (or generate fresh data) themselves
        )
        ctrl_c.stop_if_requested()  # pressed during the last epoch's end
    train_seconds = time.perf_counter() - started
    losses = history.history.get("loss", [])
    if any(not math.isfinite(value) for value in losses):
        raise RunError(
            f"training stopped: the loss became non-finite at epoch {clock.last_epoch + 2}; "
            f"the best weights so far are in {checkpoints / BEST_WEIGHTS}; try a lower --lr"
        )

    # Keep the epoch that did best on validation, not merely the last one.
    if (checkpoints / BEST_WEIGHTS).exists():
        model.load_weights(checkpoints / BEST_WEIGHTS)
    chosen = {}
    if candidate_count(config) > 1:
        model, chosen["candidates"] = candidates.best_candidate(model, functools.partial(task.build_model, config), validation)
        model = compile_model(task, config, model=model)
        log(f"kerasrnn: kept candidate {chosen['candidates']['chosen']} of {candidate_count(config)} (best validation accuracy)")
    runs.save_model_atomic(model, run_dir / runs.MODEL_FILE)

    log("kerasrnn: evaluating on held-out data")
    evaluation = task.evaluate(model, config, lengths)
    task.plot(run_dir, config, evaluation)
    samples_per_epoch = steps_per_epoch * config["batch_size"]
    metrics = {
        "task": task.name,
        "backend": keras.backend.backend(),
        "device": device,
        "keras_version": keras.__version__,
        "python": platform.python_version(),
        "config": config,
        "epochs_run": clock.last_epoch + 1,
        "train_seconds": round(train_seconds, 3),
        "train_samples_per_second": round(steady_samples_per_second(clock.epoch_seconds, samples_per_epoch), 1),
        "epoch_seconds": [round(seconds, 3) for seconds in clock.epoch_seconds],
        "predict_samples_per_second": round(prediction_speed(task, config, model), 1),
        **chosen,
        **public(evaluation),
    }
    runs.write_json_atomic(run_dir / runs.METRICS_FILE, metrics)  # last: marks the run complete
    return metrics


def prediction_speed(task, config: dict, model, samples: int = 4096) -> float:
    """Samples/s of `model.predict` at batch 512 on task-like inputs, after one warm-up call."""
    import numpy as np

    shape = model.input_shape[1:]
    steps = shape[0] or task.typical_steps(config)
    x = task.sample_inputs(np.random.default_rng(0), samples, (steps, *shape[1:]))
    model.predict(x[:512], batch_size=512, verbose=0)
    started = time.perf_counter()
    model.predict(x, batch_size=512, verbose=0)
    return samples / (time.perf_counter() - started)


def load_compiled_run(run_dir: Path):
    """(task, config, model) of a run directory, the model compiled with the task's loss and metrics."""
    config = runs.read_config(run_dir)
    task = get_task(config["task"])
    model = compile_model(task, config, runs.load_model(run_dir))
    return task, config, model


def evaluate_run(run_dir: Path, lengths: list[int] | None = None) -> dict:
    """Re-evaluate a finished run, at `lengths` for sequence tasks: the shape of metrics.json."""
    task, config, model = load_compiled_run(run_dir)
    previous = runs.read_metrics(run_dir) if runs.is_complete(run_dir) else {}
    evaluation = task.evaluate(model, config, lengths)
    return {
        **previous,
        "task": task.name,
        "backend": keras.backend.backend(),
        "config": config,
        **public(evaluation),
    }


def public(evaluation: dict) -> dict:
    """The evaluation without its private parts (keys starting with _, kept for figures only)."""
    return {key: value for key, value in evaluation.items() if not key.startswith("_")}


def load_predictor(path: Path):
    """(task, config, model-like) for a run directory or an exported artifact (SavedModel, .tflite, .keras)."""
    from kerasrnn import export

    if export.artifact_format(path) in (None, "run"):
        return load_compiled_run(path)  # None: read_config says clearly what is wrong with the path
    metadata = export.read_metadata(path)
    return get_task(metadata["task"]), metadata["config"], export.load_artifact(path, metadata)


def predict_run(path: Path, inputs: list[str], show: str | None = None) -> dict:
    """A task's prediction for a person's inputs; `show` saves a figure where the task draws one."""
    return predict_with(*load_predictor(path), inputs, show=show)


def predict_with(task, config: dict, model, inputs: list[str], show: str | None = None) -> dict:
    """`task`'s prediction with an already loaded model or artifact (anything with `predict(x)`)."""
    if not inputs:
        raise UserError(f"predict needs inputs for {task.name}: {task.predict_inputs}")
    if show is None:
        return task.predict(model, config, inputs)
    if "show" not in inspect.signature(task.predict).parameters:
        raise UserError(f"--show applies to image tasks; {task.name} draws no figure of its inputs")
    return task.predict(model, config, inputs, show=show)
