"""Keras' losses and metrics, as the toolkit's step computes them in torch: the same formulas (probabilities
clipped to [epsilon, 1 - epsilon], a mean over the batch), per sample, for the losses and metrics the tasks use."""

from __future__ import annotations

import math

import numpy as np
import torch
from keras import backend as keras_backend
from keras import losses, metrics

from kerasrnn.modeling.metrics import exact_match
from kerasrnn.torch.forward import Unsupported


def clipped(probabilities):
    epsilon = keras_backend.epsilon()
    return torch.clip(probabilities, epsilon, 1.0 - epsilon)


def sparse_crossentropy(y_true, y_pred):
    """Keras' sparse categorical cross-entropy of probabilities, per sample."""
    y_pred = clipped(y_pred / torch.sum(y_pred, dim=-1, keepdim=True))
    return torch.nn.functional.nll_loss(torch.log(y_pred), y_true.long(), reduction="none")


def sparse_crossentropy_of_logits(y_true, logits):
    """`sparse_crossentropy` of softmax(logits), in one: log-softmax clipped where Keras clips the probabilities
    (the same value, and no gradient beyond the clip, as there), without the softmax's own pass."""
    epsilon = keras_backend.epsilon()
    log_probabilities = torch.clip(torch.log_softmax(logits, dim=-1), np.log(epsilon), np.log1p(-epsilon))
    return torch.nn.functional.nll_loss(log_probabilities, y_true.long(), reduction="none")


def binary_crossentropy(y_true, y_pred):
    return torch.mean(torch.nn.functional.binary_cross_entropy(clipped(y_pred), y_true, reduction="none"), dim=-1)


def mean_squared_error(y_true, y_pred):
    return torch.mean(torch.square(y_true - y_pred), dim=-1)


def loss_function(loss):
    """The per-sample loss of a Keras loss object the step reproduces; Unsupported otherwise."""
    if getattr(loss, "reduction", None) != "sum_over_batch_size":
        raise Unsupported(f"loss reduction {getattr(loss, 'reduction', None)!r}")
    settings = loss.get_config()
    if isinstance(loss, losses.SparseCategoricalCrossentropy):
        if settings["from_logits"] or settings.get("ignore_class") is not None or settings.get("axis", -1) != -1:
            raise Unsupported("sparse cross-entropy from logits, with an ignored class or another axis")
        return sparse_crossentropy
    if isinstance(loss, losses.BinaryCrossentropy):
        if settings["from_logits"] or settings["label_smoothing"] or settings.get("axis", -1) != -1:
            raise Unsupported("binary cross-entropy from logits, with label smoothing or another axis")
        return binary_crossentropy
    if isinstance(loss, losses.MeanSquaredError):
        return mean_squared_error
    raise Unsupported(f"loss {type(loss).__name__}")


def sparse_accuracy(y_true, y_pred):
    return (torch.argmax(y_pred, dim=-1) == y_true.reshape(y_pred.shape[:-1])).float()


def bit_accuracy(y_true, y_pred):
    """Keras' binary accuracy (threshold 0.5), averaged over each sample's outputs."""
    right = ((y_pred > 0.5).to(y_true.dtype) == y_true).float()
    return right.reshape(right.shape[0], -1).mean(dim=1)


def whole_answer_right(y_true, y_pred):
    wrong = (y_pred > 0.5).float() != y_true.float()
    return 1.0 - wrong.reshape(wrong.shape[0], -1).any(dim=1).float()


def squared_error(y_true, y_pred):
    return mean_squared_error(y_true.reshape(y_pred.shape), y_pred)


def absolute_error(y_true, y_pred):
    return torch.mean(torch.abs(y_pred - y_true.reshape(y_pred.shape)), dim=-1)


def metric_result(metric):
    """What Keras reports of the mean of `metric_function`'s values: the mean itself, or its square root (RMSE)."""
    return math.sqrt if isinstance(metric, metrics.RootMeanSquaredError) else float


def metric_function(metric):
    """The per-sample values of a Keras metric the step reproduces (a Mean of them is what Keras reports, or its
    square root: `metric_result`)."""
    if isinstance(metric, metrics.RootMeanSquaredError):
        return squared_error
    if isinstance(metric, metrics.MeanAbsoluteError):
        return absolute_error
    if isinstance(metric, metrics.SparseCategoricalAccuracy):
        return sparse_accuracy
    if isinstance(metric, metrics.BinaryAccuracy) and metric._fn_kwargs.get("threshold", 0.5) == 0.5:
        return bit_accuracy
    if type(metric) is metrics.MeanMetricWrapper and metric._fn is exact_match:
        return whole_answer_right
    raise Unsupported(f"metric {metric.name} ({type(metric).__name__})")


def compiled_metrics(model) -> list:
    """The compiled metric objects (built), in the order Keras reports them."""
    compiled = model._compile_metrics
    if compiled is None:
        return []
    if not compiled.built:
        raise Unsupported("metrics not built yet")
    if compiled._user_weighted_metrics:
        raise Unsupported("weighted metrics")
    return list(compiled.metrics)
