"""Keras' fit loop on torch around the toolkit's step: Keras' callbacks (CallbackList, History, progress bar,
checkpoints, backup) in the same order with the same logs, in-memory batches, validation by
`TorchStep.evaluate` (Keras' `evaluate` computed the same way), and the thread governor."""

from __future__ import annotations

from keras.callbacks import CallbackList

from kerasrnn.torch.step import TorchStep, as_tensor, batch_listeners
from kerasrnn.torch.threads import ThreadGovernor


def fit(model, step: TorchStep, batches, epochs: int, steps_per_epoch: int, validation_data, callbacks, verbose):
    """Keras' TorchTrainer.fit with `step` for its training step and `batches(epoch)` (numpy (x, y) pairs,
    `Task.training_batches`) for its data: the same callbacks in the same order with the same logs, and
    `step.evaluate` over `validation_data` (numpy (x, y) pairs) for validation; returns the History."""
    callback_list = CallbackList(
        callbacks, add_history=True, add_progbar=verbose != 0, verbose=verbose, epochs=epochs, steps=steps_per_epoch, model=model
    )
    begin, end = batch_listeners(callback_list, "on_train_batch_begin"), batch_listeners(callback_list, "on_train_batch_end")
    model.stop_training = False
    training_logs = {}
    threads = ThreadGovernor()
    callback_list.on_train_begin()
    for epoch in range(model._initial_epoch or 0, epochs):
        model.reset_metrics()
        step.reset()
        callback_list.on_epoch_begin(epoch)
        model.train()
        threads.restart()
        logs = {}
        for index, (x, y) in enumerate(batches(epoch)):
            for callback in begin:
                callback.on_train_batch_begin(index)
            logs = step(as_tensor(x), as_tensor(y))
            threads.tick()
            for callback in end:
                callback.on_train_batch_end(index, logs)
            if model.stop_training:
                break
        step.write_metrics()
        epoch_logs = dict(logs)
        model.eval()
        if validation_data is not None:
            scores = step.evaluate(validation_data, callback_list)
            epoch_logs.update({f"val_{name}": value for name, value in scores.items()})
        callback_list.on_epoch_end(epoch, epoch_logs)
        training_logs = epoch_logs
        if model.stop_training:
            break
    callback_list.on_train_end(logs=training_logs)
    threads.use(threads.counts[0])  # evaluation and prediction after the fit start from the usual count
    return model.history


def dataset_batches(dataset, steps_per_epoch: int):
    """`batches(epoch)` from an endless tf.data pipeline (augmented images): its next `steps_per_epoch` batches."""
    iterator = dataset.as_numpy_iterator()

    def batches(epoch: int):
        return (next(iterator) for _ in range(steps_per_epoch))

    return batches
