"""Fit and evaluate a task's model with Keras' own machinery (callbacks, CSVLogger, TensorBoard, checkpoints).

Call `kerasrnn.backend.select_backend` before importing this module.
"""

from __future__ import annotations

import functools
import math
import platform
import shutil
import sys
import time
from pathlib import Path

import keras
import numpy as np

from kerasrnn import backend as backends
from kerasrnn import runs
from kerasrnn.errors import RunError, UserError, option
from kerasrnn.tasks import task_of
from kerasrnn.tasks.base import predict_batches
from kerasrnn.training import candidates, distribution, faults, precision
from kerasrnn.training.callbacks import (
    EpochTensorBoard,
    IterationLossLogger,
    KillSafeBackupAndRestore,
    KillSafeModelCheckpoint,
    StopOnCtrlC,
    TrainingClock,
)


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
    if config["lr_schedule"] == "cosine" and steps_per_epoch:
        return keras.optimizers.schedules.CosineDecay(config["lr"], decay_steps=config["epochs"] * steps_per_epoch, alpha=0.01)
    return config["lr"]


# More batches per call into the backend gained little in docs/performance.md's measurements.
MOST_STEPS_PER_EXECUTION = 8


def steps_per_execution(config: dict, steps_per_epoch: int | None) -> int:
    """Batches per call into the backend: fewer of Keras' per-call round trips through Python for each batch.

    "auto": the largest divisor of the epoch's steps up to MOST_STEPS_PER_EXECUTION on TensorFlow and JAX; 1 on
    torch (the toolkit's own loop has no per-call overhead to save), where the steps are not known, and in a
    distributed fit (TensorFlow's MirroredStrategy fails on several steps a call). A divisor, because Keras runs
    whole executions: 8 a call over a 300-step epoch would train 304 steps.
    """
    chosen = config["steps_per_execution"]
    if chosen != "auto":
        if steps_per_epoch and steps_per_epoch % chosen:
            raise UserError(
                f"steps_per_execution={chosen} must divide the {steps_per_epoch} steps of an epoch "
                "(Keras would train extra steps): try steps_per_execution=auto"
            )
        return chosen
    if keras.backend.backend() == "torch" or not steps_per_epoch or distribution.inside_distribution():
        return 1
    return max(count for count in range(1, MOST_STEPS_PER_EXECUTION + 1) if steps_per_epoch % count == 0)


def compile_model(task, config: dict, model=None, steps_per_epoch: int | None = None, loss_and_metrics=None):
    """Compile `model` (a new one built from `config` when None) with the task's loss and metrics (or those given)."""
    model = model or task.build_model(config)
    loss, metrics = loss_and_metrics or task.loss_and_metrics(config)
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate(config, steps_per_epoch), clipnorm=config["clipnorm"])
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=metrics,
        jit_compile=config["jit_compile"],
        steps_per_execution=steps_per_execution(config, steps_per_epoch),
    )
    return model


def training_model(task, config: dict, steps_per_epoch: int, plan=None):
    """The compiled model that trains: the task's own, or side-by-side candidates of it (`plan`, else the task's:
    kerasrnn.training.candidates)."""
    plan = plan if plan is not None else candidates.training_plan(task.candidates(config))
    return plan.build(task, config, compiler(task, config, steps_per_epoch))


def compiler(task, config: dict, steps_per_epoch: int | None = None):
    """`compile(model, loss_and_metrics=None)` with this fit's optimizer and options."""

    def compile_this(model, loss_and_metrics=None):
        return compile_model(task, config, model, steps_per_epoch=steps_per_epoch, loss_and_metrics=loss_and_metrics)

    return compile_this


def fit(
    config: dict,
    run_dir: Path,
    resume: bool = False,
    overwrite: bool = False,
    verbose: int | str = "auto",
    log=print,
    lengths: list[int] | None = None,
    devices: int | str = 1,
    score_test: bool = True,
) -> dict | None:
    """Train `config`'s task into `run_dir` and write the complete run directory; return metrics.

    metrics.json's `validation` holds the task's validation scores of the kept model (what searches and sweeps
    choose by: `Task.objective`); `score_test=False` leaves the test set unread (`test` is null) until
    `score_test_set` reads it, once, for the report.
    `lengths`: the sequence lengths to evaluate at the end (default: the task's). `devices`: data-parallel
    devices per process (kerasrnn.training.distribution, started by `distribution.start_devices`); in a multi-process
    run only process 0 writes `run_dir` and returns metrics, the others train alongside it and return None.
    """
    verbose = progress_verbosity(verbose)
    placement = distribution.place(devices)
    distribution.require_divisible(config["batch_size"], len(placement.devices))
    if placement.processes > 1 and resume:
        raise UserError(f"{option('resume', 'True')} continues one-process runs only: restart a multi-process fit from the start")
    with distribution.run_folder(Path(run_dir), placement) as folder:
        return fit_placed(config, Path(folder), placement, resume, overwrite, verbose, log, lengths, score_test)


def progress_verbosity(verbose: int | str) -> int | str:
    """'auto': Keras' progress bar on a terminal or in a notebook; one line per epoch (Keras' verbose=2) when the
    output goes to a file or a pipe, where a bar's hundreds of redraws and colour codes would fill the log."""
    if verbose != "auto":
        return verbose
    return 1 if sys.stdout.isatty() or "ipykernel" in sys.modules else 2


def fit_placed(config: dict, run_dir: Path, placement, resume: bool, overwrite: bool, verbose, log, lengths,
               score_test: bool = True) -> dict | None:  # fmt: skip
    """`fit` on the devices of `placement`: start the run, train, keep the best model, evaluate, write metrics."""
    if not resume:
        precision.training_precision(config)  # refuses a precision that cannot run before the run directory exists
    task, config = start_run(config, run_dir, resume, overwrite)
    device = backends.describe_device()
    log(f"kerasrnn: {task.name} on backend {keras.backend.backend()}, device {device}")
    for line in task.describe_data(config):
        log(line)
    if placement.distributed:
        log(f"kerasrnn: {placement.describe()}")
    make_deterministic(config["seed"], kernels=config["deterministic"])
    # A resumed fit's generated data goes on from the batch where the interrupted fit stopped.
    first_epoch = runs.completed_epochs(run_dir) if resume else 0
    train, validation, steps_per_epoch = task.training_data(config, first_epoch=first_epoch)
    plan = candidates.training_plan(task.candidates(config))
    with placement.scope():
        model = training_model(task, config, steps_per_epoch, plan)
    per_call = model.steps_per_execution

    kernel_precision, why = precision.training_precision(config)
    if keras.backend.backend() == "torch":
        log(f"kerasrnn: recurrent kernels train in {kernel_precision} ({why})")

    clock = TrainingClock()
    started = time.perf_counter()
    with precision.kernels_in(model, kernel_precision):
        train_model(
            task, config, model, placement, (train, validation, steps_per_epoch), run_dir, plan, clock, resume, verbose, log
        )
    train_seconds = time.perf_counter() - started

    model = best_model(task, config, model, placement, steps_per_epoch, run_dir)
    if not placement.writes_run:
        log(f"kerasrnn: process {placement.process_id} of {placement.processes} done; process 0 writes the run")
        return None
    model, chosen = plan.keep_best(model, task, config, validation, compiler(task, config), log)
    runs.save_model_atomic(model, run_dir / runs.MODEL_FILE)
    faults.point("model-saved")

    validation_scores = kept_validation_scores(task, config, model, validation, run_dir, plan)
    evaluation = {"test": None}
    if score_test:
        log("kerasrnn: evaluating on held-out data")
        evaluation = task.evaluate(model, config, lengths)
        faults.point("evaluated")
        task.plot(run_dir, config, evaluation)
    metrics = {
        "task": task.name,
        "backend": keras.backend.backend(),
        "device": device,
        "keras_version": keras.__version__,
        "python": platform.python_version(),
        "config": config,
        **training_record(clock, train_seconds, steps_per_epoch * config["batch_size"], runs.completed_epochs(run_dir)),
        "distribution": placement.record(),
        "steps_per_execution": per_call,
        "precision": kernel_precision,
        "predict_samples_per_second": round(prediction_speed(task, config, model), 1),
        **chosen,
        "validation": validation_scores,
        "objective": {"name": task.objective_of(validation_scores), "value": task.objective_value(validation_scores)},
        **public(evaluation),
    }
    runs.write_json_atomic(run_dir / runs.METRICS_FILE, metrics)  # marks the run complete
    faults.point("metrics-written")
    shutil.rmtree(runs.backup_dir(run_dir), ignore_errors=True)  # kept until now: a kill before resumes here
    return metrics


def start_run(config: dict, run_dir: Path, resume: bool, overwrite: bool):
    """(task, config) of a run directory made ready to train: a resumed run trains its saved config."""
    runs.prepare_run_dir(run_dir, resume=resume, overwrite=overwrite)
    if resume:
        config = runs.read_config(run_dir)
        runs.remove_leftovers(run_dir)
        runs.forget_epochs_from(run_dir, runs.completed_epochs(run_dir))
    runs.write_json_atomic(run_dir / runs.CONFIG_FILE, config)
    return task_of(config), config


def fit_callbacks(run_dir: Path, plan, clock: TrainingClock, resume: bool) -> list:
    """Keras' callbacks (and the toolkit's few) that make the run directory, in the order they run.

    The epoch's records come first and its resumable state last: a process killed between them resumes
    from the epoch before, whose records `runs.forget_epochs_from` cut back, so nothing is missing or doubled.
    """
    best_weights = runs.best_weights(run_dir)
    best_weights.parent.mkdir(exist_ok=True)
    return [
        keras.callbacks.TerminateOnNaN(),
        KillSafeModelCheckpoint(best_weights, **plan.checkpoint_monitor, initial_value_threshold=best_so_far(run_dir, plan)),
        keras.callbacks.CSVLogger(str(run_dir / runs.HISTORY_FILE), append=resume),
        # Loss, metrics and learning rate per epoch under tensorboard/train and tensorboard/validation.
        EpochTensorBoard(str(run_dir / runs.TENSORBOARD_DIR), write_graph=False),
        IterationLossLogger(run_dir / runs.ITERATIONS_FILE, tensorboard_dir=run_dir / runs.TENSORBOARD_DIR / "train"),
        clock,
        KillSafeBackupAndRestore(str(runs.backup_dir(run_dir))),
    ]


def best_so_far(run_dir: Path, plan) -> float | None:
    """The best monitored value of the epochs a resumed run has finished (None: a fresh run)."""
    values = runs.read_history(run_dir).get(plan.checkpoint_monitor["monitor"], [])
    if not values:
        return None
    return min(values) if plan.checkpoint_monitor["mode"] == "min" else max(values)


def train_model(task, config: dict, model, placement, data, run_dir: Path, plan, clock, resume: bool, verbose, log) -> None:
    """All epochs of the fit (Ctrl-C stops after an epoch); a RunError when the loss became non-finite."""
    train, validation, steps_per_epoch = data
    ctrl_c = StopOnCtrlC()  # last: every other callback has finished an epoch before it can stop the fit
    with ctrl_c.handling_ctrl_c():
        fit_model = training_loop(task, config, model, placement, validation, log)
        history = fit_model(
            distribution.slice_for_process(train, placement),
            epochs=config["epochs"],
            steps_per_epoch=steps_per_epoch,
            validation_data=distribution.slice_for_process(validation, placement),
            callbacks=[*fit_callbacks(run_dir, plan, clock, resume), *task.callbacks(config), ctrl_c],
            verbose=verbose,
        )
        ctrl_c.stop_if_requested()  # pressed during the last epoch's end
    if any(not math.isfinite(value) for value in history.history.get("loss", [])):
        raise RunError(
            f"training stopped: the loss became non-finite at epoch {clock.last_epoch + 2}; "
            f"the best weights so far are in {runs.best_weights(run_dir)}; try a lower {option('lr')}"
        )


def best_model(task, config: dict, model, placement, steps_per_epoch: int, run_dir: Path):
    """The epoch that did best on validation, not merely the last one, on one device."""
    best_weights = runs.best_weights(run_dir)
    if best_weights.exists():
        model.load_weights(best_weights)
    if placement.distributed:
        model = on_one_device(task, config, model, placement, steps_per_epoch)
    return model


def training_record(clock: TrainingClock, train_seconds: float, samples_per_epoch: int, epochs_run: int) -> dict:
    """What metrics.json says about the training itself (a resumed fit: the speed of the epochs it ran itself;
    None when it only had the final evaluation left)."""
    speed = steady_samples_per_second(clock.epoch_seconds, samples_per_epoch) if clock.epoch_seconds else None
    return {
        "epochs_run": epochs_run,
        "train_seconds": round(train_seconds, 3),
        "train_samples_per_second": round(speed, 1) if speed is not None else None,
        "epoch_seconds": [round(seconds, 3) for seconds in clock.epoch_seconds],
    }


def training_loop(task, config: dict, model, placement, validation, log):
    """`fit(train, epochs=, steps_per_epoch=, validation_data=, callbacks=, verbose=)`: Keras' `model.fit`, or on
    torch the toolkit's own step and loop where they reproduce Keras' (kerasrnn.torch.step); the log says which."""
    if keras.backend.backend() != "torch":
        return functools.partial(model.fit, shuffle=False)  # the data pipelines shuffle (or generate) themselves
    from kerasrnn.torch import loop
    from kerasrnn.torch.step import toolkit_step

    x, y = next(iter(validation.take(1)))  # builds the metrics, the loss and the optimizer, as Keras' fit does first
    model._symbolic_build(data_batch=(x.numpy(), y.numpy()))
    step, reason = toolkit_step(model, config, placement.distributed)
    if step is None:
        log(f"kerasrnn: training step: Keras' train_step ({reason})")
        return functools.partial(model.fit, shuffle=False)
    log("kerasrnn: training step: the toolkit's own on torch (fused kernels, one Adam call; docs/performance.md)")

    def fit_with_toolkit_step(train, epochs, steps_per_epoch, validation_data, callbacks, verbose):
        batches = task.training_batches(config) or loop.dataset_batches(train, steps_per_epoch)
        # Fixed data: read once, not every epoch (copies: tf.data's arrays are read-only, torch's tensors are not).
        validation_batches = [(np.array(x), np.array(y)) for x, y in validation_data.as_numpy_iterator()]
        return loop.fit(model, step, batches, epochs, steps_per_epoch, validation_batches, callbacks, verbose)

    return fit_with_toolkit_step


def on_one_device(task, config: dict, trained, placement, steps_per_epoch: int):
    """The trained weights in the same model built outside the distribution: evaluation, prediction and
    the saved model use one device, as after any other fit."""
    weights = trained.get_weights()
    placement.end()
    model = training_model(task, config, steps_per_epoch)
    model.set_weights(weights)
    return model


def prediction_speed(task, config: dict, model, samples: int = 4096) -> float:
    """Samples/s of the toolkit's batch prediction (`predict_batches`, batch 512) on task-like inputs, after a
    warm-up call on the same inputs (the first call traces or allocates)."""
    shape = model.input_shape[1:]
    steps = shape[0] or task.typical_steps(config)
    x = task.sample_inputs(np.random.default_rng(0), samples, (steps, *shape[1:]))
    predict_batches(model, x, batch_size=512)
    started = time.perf_counter()
    predict_batches(model, x, batch_size=512)
    return samples / (time.perf_counter() - started)


def load_compiled_run(run_dir: Path):
    """(task, config, model) of a run directory, the model compiled with the task's loss and metrics."""
    config = runs.read_config(run_dir)
    task = task_of(config)
    model = compile_model(task, config, runs.load_model(run_dir))
    return task, config, model


def evaluate_run(run_dir: Path, lengths: list[int] | None = None, data=None) -> dict:
    """Re-evaluate a finished run, at `lengths` for sequence tasks, or on the file `data` (`Task.check_data`):
    the shape of metrics.json."""
    task, config, model = load_compiled_run(run_dir)
    previous = runs.read_metrics(run_dir) if runs.is_complete(run_dir) else {}
    evaluation = task.evaluate(model, task.with_data(config, data) if data is not None else config, lengths)
    return {
        **previous,
        "task": task.name,
        "backend": keras.backend.backend(),
        "config": config,
        **public(evaluation),
    }


def kept_validation_scores(task, config: dict, model, validation, run_dir: Path, plan) -> dict:
    """The kept model's validation scores: the task's own where it computes them; else the best epoch's val_*
    row of history.csv, which Keras computed on these weights and this validation set (a second pass would
    repeat it), when one model trained; else Keras' evaluate (the default `validation_scores`)."""
    from kerasrnn.tasks.base import Task

    history = runs.read_history(run_dir)
    monitored = history.get(plan.checkpoint_monitor["monitor"], [])
    if type(task).validation_scores is not Task.validation_scores or task.candidates(config) > 1 or not monitored:
        return task.validation_scores(model, config, validation)
    pick = min if plan.checkpoint_monitor["mode"] == "min" else max
    best = monitored.index(pick(monitored))
    return {name.removeprefix("val_"): float(values[best]) for name, values in history.items() if name.startswith("val_")}


def score_test_set(run_dir: Path, lengths: list[int] | None = None) -> dict:
    """Read the test set of a run fitted with `score_test=False`, once: its scores, by-length scores and
    figures join metrics.json (a search's best trial, every run of a sweep, after the choice is made)."""
    metrics = runs.read_metrics(run_dir)
    if metrics.get("test") is not None:
        return metrics
    task, config, model = load_compiled_run(run_dir)
    evaluation = task.evaluate(model, config, lengths)
    task.plot(run_dir, config, evaluation)
    metrics = {**metrics, **public(evaluation)}
    runs.write_json_atomic(run_dir / runs.METRICS_FILE, metrics)
    return metrics


def public(evaluation: dict) -> dict:
    """The evaluation without its private parts (keys starting with _, kept for figures only)."""
    return {key: value for key, value in evaluation.items() if not key.startswith("_")}
