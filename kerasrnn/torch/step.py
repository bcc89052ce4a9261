"""The toolkit's training step on torch: what Keras' `train_step` computes, for the models it reproduces.

Keras' generic machinery on torch costs more than the work itself on these small models: its trainer, its
layer calls and functional graph walk, its per-variable clipping and its per-batch callback dispatch
(docs/performance.md measures each). `TorchStep` computes the same step with the forward pass
(kerasrnn.torch.forward), the loss and metrics (kerasrnn.torch.objectives) and Adam
(kerasrnn.torch.optimizer) on Keras' own variables, and writes the loss tracker and metrics into Keras'
metric variables. `toolkit_step` refuses, with a reason, whatever it does not reproduce: training then
stays with Keras' own `model.fit`. tests/test_torch_trainer.py checks the step against Keras' `train_step`,
and the evaluation against Keras' `evaluate`, for every supported case.
"""

from __future__ import annotations

import keras
import numpy as np
import torch
from keras import activations
from keras.callbacks import Callback, CallbackList

from kerasrnn.torch.forward import Unsupported, model_forward
from kerasrnn.torch.objectives import (
    compiled_metrics,
    loss_function,
    metric_function,
    metric_result,
    sparse_crossentropy,
    sparse_crossentropy_of_logits,
)
from kerasrnn.torch.optimizer import FusedAdam, check_optimizer, clip_by_norm

# The Keras releases whose trainer, losses and optimizer this module was checked against (the tests).
TESTED_KERAS = ((3, 15), (3, 15))


def keras_version_supported(version: str) -> bool:
    major_minor = tuple(int(part) for part in version.split(".")[:2])
    return TESTED_KERAS[0] <= major_minor <= TESTED_KERAS[1]


class TorchStep:
    """One training step of a compiled Keras model on torch, as Keras' `train_step` computes it.

    Built from the model (Unsupported when it is not reproduced); calling it trains on one batch and
    returns the logs Keras' step would return (loss and metrics over the epoch so far) as numbers. The
    running sums stay in Python between steps; `write_metrics` puts them into Keras' metric variables
    (the fit loop does at the end of each epoch, so `model.metrics` read then what Keras' would).
    """

    def __init__(self, model):
        if not keras_version_supported(keras.__version__):
            tested = "-".join(".".join(map(str, version)) for version in TESTED_KERAS)
            raise Unsupported(f"Keras {keras.__version__} (the toolkit's step is tested with Keras {tested})")
        if not model.compiled or model.optimizer is None:
            raise Unsupported("the model is not compiled")
        self.model = model
        self.forward, last_layer = model_forward(model)
        self.loss = loss_function(model.loss)
        self.from_logits = self.loss is sparse_crossentropy and last_layer.activation is activations.softmax
        if self.from_logits:  # the softmax and the loss in one: log-softmax, clipped as Keras clips probabilities
            self.forward, self.loss = model_forward(model, softmax=False)[0], sparse_crossentropy_of_logits
        check_optimizer(model.optimizer)
        self.optimizer = model.optimizer
        variables = list(model.trainable_weights)
        if not self.optimizer.built:
            self.optimizer.build(variables)
        self.adam = FusedAdam(self.optimizer, variables)
        self.values = [variable.value for variable in variables]
        self.means = [model._loss_tracker, *compiled_metrics(model)]  # Keras' Mean metrics, loss first
        self.metric_values = [metric_function(metric) for metric in self.means[1:]]
        self.results = [float, *(metric_result(metric) for metric in self.means[1:])]
        self.names = ["loss", *(metric.name for metric in self.means[1:])]
        self.reset()

    def reset(self) -> None:
        """Start the epoch's running sums (Keras resets its metrics at every epoch's start)."""
        self.totals, self.count = [0.0] * len(self.means), 0

    def __call__(self, x, y) -> dict:
        y_pred = self.forward(x, training=True)
        loss = self.mean_loss(y, y_pred)
        for value in self.values:
            value.grad = None
        loss.backward()
        with torch.no_grad():
            gradients = [value.grad for value in self.values]
            if self.optimizer.clipnorm:
                clip_by_norm(gradients, self.optimizer.clipnorm)
            self.adam.apply(gradients)
            self.add_batch(loss, y, y_pred)
        return self.logs()

    def mean_loss(self, y, y_pred):
        per_sample = self.loss(y, y_pred)
        return torch.sum(per_sample) / per_sample.numel()

    def add_batch(self, loss, y, y_pred) -> None:
        """The batch's loss and metric values into the running sums (Keras weights the loss by the batch size)."""
        batch = y.shape[0]
        sums = torch.stack([loss * batch, *(torch.sum(values(y, y_pred)) for values in self.metric_values)]).tolist()
        self.totals = [total + value for total, value in zip(self.totals, sums)]
        self.count += batch

    def evaluate(self, batches, callbacks: CallbackList) -> dict:
        """Keras' `evaluate(batches, callbacks=callbacks, return_dict=True)` over numpy (x, y) pairs: the forward
        pass in inference mode (the layers draw their dropout masks' random numbers as Keras' do, unused), the
        same callback hooks, the results read from Keras' metric variables, which keep them as Keras' would."""
        test_begin, test_end = batch_listeners(callbacks, "on_test_batch_begin"), batch_listeners(callbacks, "on_test_batch_end")
        self.reset()
        callbacks.on_test_begin()
        with torch.no_grad():
            for index, (x, y) in enumerate(batches):
                for callback in test_begin:
                    callback.on_test_batch_begin(index)
                x, y = as_tensor(x), as_tensor(y)
                y_pred = self.forward(x, training=False)
                self.add_batch(self.mean_loss(y, y_pred), y, y_pred)
                for callback in test_end:
                    callback.on_test_batch_end(index, self.logs())
        self.write_metrics()
        results = {name: float(value) for name, value in sorted(self.model.get_metrics_result().items())}  # as Keras
        callbacks.on_test_end(results)
        return results

    def logs(self) -> dict:
        """The loss and metrics over the epoch so far, as Keras' `metric.result()` gives them."""
        return {name: result(total / self.count) if self.count else 0.0
                for name, total, result in zip(self.names, self.totals, self.results)}  # fmt: skip

    def write_metrics(self) -> None:
        """The running sums into Keras' metric variables (Mean: total and count)."""
        for metric, total in zip(self.means, self.totals):
            metric.total.assign(total)
            metric.count.assign(self.count)


def batch_listeners(callbacks: CallbackList, hook: str) -> list:
    """The callbacks that act on `hook` (Keras' base class does nothing there): only they are called per batch."""
    aliases = {"on_train_batch_begin": "on_batch_begin", "on_train_batch_end": "on_batch_end"}
    return [
        callback
        for callback in callbacks.callbacks
        if getattr(type(callback), hook) is not getattr(Callback, hook)
        or (hook in aliases and getattr(type(callback), aliases[hook]) is not getattr(Callback, aliases[hook]))
    ]


def toolkit_step(model, config: dict, distributed: bool):
    """(the toolkit's step for `model`, None) where it reproduces Keras' step, else (None, the reason)."""
    if keras.backend.backend() != "torch":
        return None, "the toolkit's step is for the torch backend"
    refusals = {
        "asked for with train_step=keras": lambda: config.get("train_step", "auto") == "keras",
        "a distributed fit": lambda: distributed,
        "a GPU (there Keras' own step runs cuDNN's kernels)": torch.cuda.is_available,
        "jit_compile": lambda: model.jit_compile,
        "steps_per_execution > 1": lambda: model.steps_per_execution != 1,
        "side-by-side candidates": lambda: config.get("candidates", 1) > 1,
    }
    for reason, applies in refusals.items():
        if applies():
            return None, reason
    try:
        return TorchStep(model), None
    except Unsupported as reason:
        return None, str(reason)


def as_tensor(array):
    """A batch as a tensor on its memory; a read-only array (tf.data's) is copied first (torch writes nowhere
    in it, but warns of it)."""
    return torch.from_numpy(np.require(array, requirements="W"))
