"""Layers the toolkit needs beyond Keras' own.

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
