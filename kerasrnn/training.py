"""Fit and evaluate a task's model with Keras' own machinery (callbacks, CSVLogger, TensorBoard, checkpoints).

Call `kerasrnn.backend.select_backend` before importing this module.
"""

from __future__ import annotations

import functools
import math
import platform
import sys
import time
from pathlib import Path

import keras

from kerasrnn import backend as backends
from kerasrnn import candidates, distribution, runs
from kerasrnn.callbacks import EpochTensorBoard, IterationLossLogger, StopOnCtrlC, TrainingClock
from kerasrnn.errors import RunError, UserError, option
from kerasrnn.tasks import get_task


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
        steps_per_execution=config["steps_per_execution"],
    )
    return model


def candidate_count(config: dict) -> int:
    return config.get("candidates", 1)  # an option of recall only


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
    devices: int | str = 1,
) -> dict | None:
    """Train `config`'s task into `run_dir` and write the complete run directory; return metrics.

    `lengths`: the sequence lengths to evaluate at the end (default: the task's). `devices`: data-parallel
    devices per process (kerasrnn.distribution, started by `distribution.start_devices`); in a multi-process
    run only process 0 writes `run_dir` and returns metrics, the others train alongside it and return None.
    """
    verbose = progress_verbosity(verbose)
    placement = distribution.place(devices)
    distribution.require_divisible(config["batch_size"], len(placement.devices))
    if placement.processes > 1 and resume:
        raise UserError(f"{option('resume', 'True')} continues one-process runs only: restart a multi-process fit from the start")
    with distribution.run_folder(Path(run_dir), placement) as folder:
        return fit_placed(config, Path(folder), placement, resume, overwrite, verbose, log, lengths)


def progress_verbosity(verbose: int | str) -> int | str:
    """'auto': Keras' progress bar on a terminal or in a notebook; one line per epoch (Keras' verbose=2) when the
    output goes to a file or a pipe, where a bar's hundreds of redraws and colour codes would fill the log."""
    if verbose != "auto":
        return verbose
    return 1 if sys.stdout.isatty() or "ipykernel" in sys.modules else 2


def fit_placed(config: dict, run_dir: Path, placement, resume: bool, overwrite: bool, verbose, log, lengths) -> dict | None:
    """`fit` on the devices of `placement`."""
    runs.prepare_run_dir(run_dir, resume=resume, overwrite=overwrite)
    if resume:
        config = runs.read_config(run_dir)
    task = get_task(config["task"])
    runs.write_json_atomic(run_dir / runs.CONFIG_FILE, config)

    device = backends.describe_device()
    log(f"kerasrnn: {task.name} on backend {keras.backend.backend()}, device {device}")
    if placement.distributed:
        log(f"kerasrnn: {placement.describe()}")
    make_deterministic(config["seed"], kernels=config["deterministic"])
    # A resumed fit's generated data goes on from the batch where the interrupted fit stopped.
    first_epoch = runs.completed_epochs(run_dir) if resume else 0
    train, validation, steps_per_epoch = task.training_data(config, first_epoch=first_epoch)
    with placement.scope():
        model = training_model(task, config, steps_per_epoch)

    best_weights = runs.best_weights(run_dir)
    best_weights.parent.mkdir(exist_ok=True)
    clock = TrainingClock()
    callbacks = [
        keras.callbacks.BackupAndRestore(str(runs.backup_dir(run_dir))),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.ModelCheckpoint(
            str(best_weights), save_best_only=True, save_weights_only=True, **checkpoint_monitor(config)
        ),
        keras.callbacks.CSVLogger(str(run_dir / runs.HISTORY_FILE), append=resume),
        # Loss, metrics and learning rate per epoch under tensorboard/train and tensorboard/validation.
        EpochTensorBoard(str(run_dir / runs.TENSORBOARD_DIR), write_graph=False),
        IterationLossLogger(run_dir / runs.ITERATIONS_FILE, tensorboard_dir=run_dir / runs.TENSORBOARD_DIR / "train"),
        clock,
    ]
    ctrl_c = StopOnCtrlC()  # last: every other callback has finished an epoch before it can stop the fit
    started = time.perf_counter()
    with ctrl_c.handling_ctrl_c():
        fit_model = training_loop(task, config, model, placement, validation, log)
        history = fit_model(
            distribution.slice_for_process(train, placement),
            epochs=config["epochs"],
            steps_per_epoch=steps_per_epoch,
            validation_data=distribution.slice_for_process(validation, placement),
            callbacks=[*callbacks, ctrl_c],
            verbose=verbose,
        )
        ctrl_c.stop_if_requested()  # pressed during the last epoch's end
    train_seconds = time.perf_counter() - started
    losses = history.history.get("loss", [])
    if any(not math.isfinite(value) for value in losses):
        raise RunError(
            f"training stopped: the loss became non-finite at epoch {clock.last_epoch + 2}; "
            f"the best weights so far are in {best_weights}; try a lower {option('lr')}"
        )

    # Keep the epoch that did best on validation, not merely the last one.
    if best_weights.exists():
        model.load_weights(best_weights)
    if placement.distributed:
        model = on_one_device(task, config, model, placement, steps_per_epoch)
    if not placement.writes_run:
        log(f"kerasrnn: process {placement.process_id} of {placement.processes} done; process 0 writes the run")
        return None
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
        "distribution": placement.record(),
        "predict_samples_per_second": round(prediction_speed(task, config, model), 1),
        **chosen,
        **public(evaluation),
    }
    runs.write_json_atomic(run_dir / runs.METRICS_FILE, metrics)  # last: marks the run complete
    return metrics


def training_loop(task, config: dict, model, placement, validation, log):
    """`fit(train, epochs=, steps_per_epoch=, validation_data=, callbacks=, verbose=)`: Keras' `model.fit`, or on
    torch the toolkit's own step and loop where they reproduce Keras' (kerasrnn.torch_trainer); the log says which."""
    if keras.backend.backend() != "torch":
        return functools.partial(model.fit, shuffle=False)  # the data pipelines shuffle (or generate) themselves
    from kerasrnn import torch_trainer

    x, y = next(iter(validation.take(1)))  # builds the metrics, the loss and the optimizer, as Keras' fit does first
    model._symbolic_build(data_batch=(x.numpy(), y.numpy()))
    step, reason = torch_trainer.toolkit_step(model, config, placement.distributed)
    if step is None:
        log(f"kerasrnn: training step: Keras' train_step ({reason})")
        return functools.partial(model.fit, shuffle=False)
    log("kerasrnn: training step: the toolkit's own on torch (fused kernels, one Adam call; docs/performance.md)")

    def fit_with_toolkit_step(train, epochs, steps_per_epoch, validation_data, callbacks, verbose):
        batches = task.training_batches(config) or torch_trainer.dataset_batches(train, steps_per_epoch)
        return torch_trainer.fit(model, step, batches, epochs, steps_per_epoch, validation_data, callbacks, verbose)

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
