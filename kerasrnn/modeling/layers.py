"""Layers the toolkit needs beyond Keras' own: a TimeDistributed right for every length, and LSTM and GRU
that use PyTorch's fused kernels on the torch backend.

`TimeDistributed` fixes Keras 3.15's wrapper for inputs whose time dimension is
unknown (the adder is trained on one length and evaluated on many). When the
static time dimension is None, `keras.layers.TimeDistributed.call` maps over
`ops.arange(ops.shape(inputs)[0])` taken *before* it swaps batch and time, so
it runs the wrapped layer once per *batch element* instead of once per time
step: after a first `predict` on one length fixes a traced function, a
`predict` on another length returns `batch_size` steps instead of `time`
steps (silently wrong) or fails in the vectorized map. Here the dynamic case
folds time into the batch, runs the layer once, and unfolds again: correct for
every length, on every backend, and exportable (two reshapes, no loop).
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kerasrnn")
class TimeDistributed(keras.layers.TimeDistributed):
    """`keras.layers.TimeDistributed` that is right for any sequence length."""

    def call(self, inputs, training=None, mask=None):
        shape = ops.shape(inputs)
        batch, time = shape[0], shape[1]
        # Fold (batch, time, *features) into (batch * time, *features); the
        # feature dimensions are static, so only the first one is inferred.
        flat = ops.reshape(inputs, (-1, *inputs.shape[2:]))
        kwargs = {}
        if self.layer._call_has_training_arg:
            kwargs["training"] = training
        if mask is not None and self.layer._call_has_mask_arg:
            kwargs["mask"] = ops.reshape(mask, (-1,))
        outputs = self.layer.call(flat, **kwargs)
        return ops.reshape(outputs, (batch, time, *outputs.shape[1:]))


def input_dropout(layer, sequences, training):
    """The layer's input dropout, one mask for every step, as Keras' fused (cuDNN) path applies it."""
    if not (training and layer.dropout):
        return sequences
    mask = ops.expand_dims(layer.cell.get_dropout_mask(sequences[:, 0, :]), axis=1)
    return sequences * ops.broadcast_to(mask, ops.shape(sequences))


def fused_kernel_applies(layer) -> bool:
    """Whether PyTorch's fused kernel computes exactly what Keras' loop would (kerasrnn.torch.kernels).

    A mask applies where it keeps each sequence's first steps (right padding: `kernels.run_masked`; the layers
    check it, `fused_lengths`). Keras' own loop stays in charge of everything else: other backends, masks with
    gaps, recurrent dropout, unrolling, other activations or precisions, layers without biases, and
    use_cudnn=False.
    """
    return (
        keras.backend.backend() == "torch"
        and not layer.recurrent_dropout
        and not layer.unroll
        and layer.use_cudnn in ("auto", True)
        and layer.cell.use_bias
        and layer.cell.activation is keras.activations.tanh
        and layer.cell.recurrent_activation is keras.activations.sigmoid
        and layer.compute_dtype == "float32"
        and layer.cell.kernel.dtype == "float32"
    )


def fused_lengths(layer, mask) -> tuple[bool, object]:
    """(whether the fused kernel runs this call, the sequences' lengths under `mask` or None for no mask): a
    mask runs fused where it keeps each sequence's first steps (kerasrnn.torch.kernels.prefix_lengths)."""
    if not fused_kernel_applies(layer):
        return False, None
    if mask is None:
        return True, None
    from kerasrnn.torch.kernels import prefix_lengths

    lengths = prefix_lengths(mask)
    return lengths is not None, lengths


@keras.saving.register_keras_serializable(package="kerasrnn")
class LSTM(keras.layers.LSTM):
    """`keras.layers.LSTM` that runs PyTorch's fused LSTM kernel on the torch backend (oneDNN on CPUs)."""

    kernel_precision = "float32"  # bfloat16 while a fit trains in it (kerasrnn.training.precision); never saved

    def inner_loop(self, sequences, initial_state, mask, training=False):
        mask = mask[0] if isinstance(mask, (list, tuple)) else mask
        fused, lengths = fused_lengths(self, mask)
        if not fused:
            return super().inner_loop(sequences, initial_state, mask=mask, training=training)
        from kerasrnn.torch.kernels import lstm_parameters, run_lstm, run_masked

        sequences = input_dropout(self, sequences, training)
        kernels = (self.cell.kernel.value, self.cell.recurrent_kernel.value, self.cell.bias.value)
        if lengths is not None:
            return run_masked("lstm", sequences, lengths, list(initial_state), lstm_parameters(*kernels),
                              self.go_backwards, self.zero_output_for_mask, self.kernel_precision)  # fmt: skip
        return run_lstm(
            sequences,
            initial_state[0],
            initial_state[1],
            *kernels,
            go_backwards=self.go_backwards,
            precision=self.kernel_precision,
        )


@keras.saving.register_keras_serializable(package="kerasrnn")
class GRU(keras.layers.GRU):
    """`keras.layers.GRU` that runs PyTorch's fused GRU kernel on the torch backend (reset_after=True only)."""

    kernel_precision = "float32"  # as LSTM's

    def inner_loop(self, sequences, initial_state, mask, training=False):
        mask = mask[0] if isinstance(mask, (list, tuple)) else mask
        fused, lengths = fused_lengths(self, mask)
        if not (fused and self.cell.reset_after):
            return super().inner_loop(sequences, initial_state, mask=mask, training=training)
        from kerasrnn.torch.kernels import gru_parameters, run_gru, run_masked

        state = initial_state[0] if isinstance(initial_state, (list, tuple)) else initial_state
        sequences = input_dropout(self, sequences, training)
        kernels = (self.cell.kernel.value, self.cell.recurrent_kernel.value, self.cell.bias.value)
        if lengths is not None:
            return run_masked("gru", sequences, lengths, [state], gru_parameters(*kernels), self.go_backwards,
                              self.zero_output_for_mask, self.kernel_precision)  # fmt: skip
        return run_gru(sequences, state, *kernels, go_backwards=self.go_backwards, precision=self.kernel_precision)


@keras.saving.register_keras_serializable(package="kerasrnn")
class SequenceInput(keras.layers.Layer):
    """The first layer of a model of a person's own sequences: padding masked, each feature standardised.

    A batch of sequences of different lengths is padded with NaN (never a value a recording holds, unlike 0,
    which a sensor at rest or a standardised series does): the steps whose every value is NaN are masked for
    every layer after this one (the recurrent ones, bidirectional too, and the loss of per-step targets).
    Each feature is standardised with the training sequences' mean and variance, kept as the layer's
    (non-trainable) weights: saved with the model, and constants of every exported graph.
    """

    def __init__(self, mean, variance, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.mean_values, self.variance_values = [float(v) for v in mean], [float(v) for v in variance]

    def build(self, input_shape):
        features = len(self.mean_values)
        self.mean = self.add_weight(shape=(features,), initializer=keras.initializers.Constant(self.mean_values),
                                    trainable=False, name="mean")  # fmt: skip
        self.scale = self.add_weight(shape=(features,), trainable=False, name="scale",
                                     initializer=keras.initializers.Constant([1.0 / v**0.5 for v in self.variance_values]))  # fmt: skip

    def call(self, inputs):
        present = ops.where(ops.isnan(inputs), ops.zeros_like(inputs), inputs)
        return (present - self.mean) * self.scale

    def compute_mask(self, inputs, mask=None):
        return ops.logical_not(ops.all(ops.isnan(inputs), axis=-1))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mean": self.mean_values, "variance": self.variance_values}


@keras.saving.register_keras_serializable(package="kerasrnn")
class StepConvolution(keras.layers.Conv1D):
    """A Conv1D ("same" padding) over each sequence's own steps: the padded steps are zeroed before the
    convolution and stay masked after it, so a sequence's outputs are what the sequence alone would give,
    whatever the padding beside it in a batch (and a prefix padded with NaN answers as the prefix alone)."""

    def __init__(self, filters, kernel_size, **kwargs):
        kwargs["padding"] = "same"
        super().__init__(filters, kernel_size, **kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is not None:
            inputs = inputs * ops.cast(mask, inputs.dtype)[..., None]
        return super().call(inputs)

    def compute_mask(self, inputs, mask=None):
        return mask


@keras.saving.register_keras_serializable(package="kerasrnn")
class FoldSteps(keras.layers.Layer):
    """A long univariate series read as rows of `width` values a step, as the course reads a 784-pixel digit as
    28 rows of 28: (batch, steps, 1) -> (batch, ceil(steps / width), width), the last row padded with NaN
    (padding, as SequenceInput masks it: a row of NaN only where the series had ended)."""

    def __init__(self, width: int, **kwargs):
        super().__init__(**kwargs)
        self.width = int(width)

    def call(self, inputs):
        steps = ops.shape(inputs)[1]
        rows = (steps + self.width - 1) // self.width
        padding = ops.full((ops.shape(inputs)[0], rows * self.width - steps, 1), float("nan"), dtype=inputs.dtype)
        return ops.reshape(ops.concatenate([inputs, padding], axis=1), (-1, rows, self.width))

    def compute_output_shape(self, input_shape):
        steps = input_shape[1]
        return (input_shape[0], None if steps is None else -(-steps // self.width), self.width)

    def get_config(self):
        return {**super().get_config(), "width": self.width}
