"""Metrics the toolkit adds to Keras' own, registered so that saved models load compiled anywhere."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kerasrnn")
def exact_match(y_true, y_pred):
    """1 for a sample whose every output bit is right (the whole sum), else 0."""
    wrong_bits = ops.not_equal(ops.cast(y_pred > 0.5, "float32"), ops.cast(y_true, "float32"))
    return 1.0 - ops.cast(ops.any(wrong_bits, axis=(1, 2)), "float32")
