"""The toolkit's Keras callbacks: per-iteration loss, training time, Ctrl-C between steps, early stopping on a
relative improvement, and the resumable state and best weights written so that a process killed at any moment
leaves only whole files."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from pathlib import Path

import keras

from kerasrnn import runs
from kerasrnn.training import faults


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
        self.losses: list[tuple[int, int, float]] = []  # (iteration, epoch, loss) of this epoch's batches
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
        self.epoch, self.previous_mean, self.previous_batches, self.losses = epoch, 0.0, 0, []

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
        self.losses.append((self.iteration, self.epoch, batch_loss))

    def on_epoch_end(self, epoch, logs=None):
        with self.path.open("a") as handle:  # one append per epoch: a crash loses at most that epoch
            handle.writelines(f"{iteration},{epoch},{loss:.8g}\n" for iteration, epoch, loss in self.losses)
        if self.tensorboard_dir is not None:
            self._write_tensorboard()
        self.losses = []

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def _write_tensorboard(self):
        import tensorflow as tf  # tf.summary writes TensorBoard's files on every backend

        if self.writer is None:
            self.writer = tf.summary.create_file_writer(str(self.tensorboard_dir))
        with self.writer.as_default():
            for iteration, _, loss in self.losses:
                tf.summary.scalar("iteration_loss", loss, step=iteration)
        self.writer.flush()


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback without its per-batch cost when it writes once an epoch.

    With `update_freq="epoch"` Keras' callback still calls `tf.summary.scalar` for every log value on
    every batch, with no writer active: nothing is written, yet each call costs (docs/performance.md).
    Here the batch's logs are not handed on in that case; tracing, the graph and every epoch's
    summaries are Keras' own.
    """

    def on_train_batch_end(self, batch, logs=None):
        writes_batches = self.update_freq != "epoch" or self.write_steps_per_second
        super().on_train_batch_end(batch, logs if writes_batches else None)


class TrainingClock(keras.callbacks.Callback):
    """Training time per epoch (validation excluded) and the last epoch finished."""

    def __init__(self):
        super().__init__()
        self.epoch_seconds: list[float] = []
        self.last_epoch = -1

    def on_epoch_begin(self, epoch, logs=None):
        faults.point("epoch-begin")
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


class RelativeEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras' EarlyStopping on a loss, where a better value counts only if it is below the best so far by
    `fraction` of the first epoch's value (Keras' `min_delta` is absolute, and a loss's scale is the data's):
    once a fit has learnt what it can, its validation loss creeping down by hundredths (the model growing
    surer of what it already gets right) no longer runs it to the last epoch. The epoch kept is still the one
    with the lowest value (the checkpoint's)."""

    def __init__(self, fraction: float, monitor: str = "val_loss", **kwargs):
        super().__init__(monitor=monitor, mode="min", **kwargs)
        self.fraction, self.scale = fraction, None

    def on_epoch_end(self, epoch, logs=None):
        if self.scale is None and logs and self.monitor in logs:
            self.scale = abs(float(logs[self.monitor]))
        super().on_epoch_end(epoch, logs)

    def _is_improvement(self, monitor_value, reference_value):
        if reference_value is None:
            return True
        return float(monitor_value) < float(reference_value) - self.fraction * (self.scale or 0.0)


class KillSafeBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore with every epoch's state written so that a kill at any moment leaves a
    consistent one, kept until the run is complete.

    Keras overwrites its weights file in place and writes the epoch record after it: a kill mid-write leaves
    a broken file, a kill between the two an epoch record that does not match the weights. Here each epoch's
    weights go to their own file, and the record naming them (training_metadata.json, Keras' name and keys)
    is replaced atomically after they are complete; older weights are removed only then. The backup is not
    deleted when training ends (Keras' default) but by the fit once metrics.json is written, so a fit killed
    during its final evaluation resumes there instead of training again from the start.
    """

    def __init__(self, backup_dir: str):
        super().__init__(backup_dir, delete_checkpoint=False)

    def on_train_begin(self, logs=None):
        self._load_model()

    def _load_model(self):
        record = Path(self._training_metadata_path)
        if not record.exists():
            return
        metadata = json.loads(record.read_text())
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)  # its variables must exist to be loaded
        self.model.load_weights(str(Path(self.backup_dir) / metadata["weights"]))
        self.model._initial_epoch = metadata["epoch"]

    def _save_model(self):
        folder = Path(self.backup_dir)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{self._current_epoch}.weights.h5"
        with runs.atomic_path(folder / name) as temporary:
            self.model.save_weights(str(temporary), overwrite=True)
        faults.point("backup-weights-written")
        runs.write_json_atomic(
            Path(self._training_metadata_path), {"epoch": self._current_epoch, "batch": self._last_batch_seen, "weights": name}
        )
        for old in folder.glob("epoch-*.weights.h5"):
            if old.name != name:
                old.unlink(missing_ok=True)


class KillSafeModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """Keras' ModelCheckpoint (weights of the best epoch) writing to a temporary file renamed into place: a kill
    mid-write leaves the previous best whole. `initial_value_threshold` carries the best so far across a resume."""

    def __init__(self, filepath: Path, **kwargs):
        self.final_path = Path(filepath)
        self.temporary = runs.temporary_path(self.final_path)
        super().__init__(str(self.temporary), save_best_only=True, save_weights_only=True, **kwargs)

    def on_epoch_end(self, epoch, logs=None):
        self.temporary.unlink(missing_ok=True)
        super().on_epoch_end(epoch, logs)
        if self.temporary.exists():
            faults.point("best-weights-written")
            self.temporary.replace(self.final_path)
