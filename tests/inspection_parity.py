"""Run by tests/test_inspection.py under KERAS_BACKEND=jax or torch: the largest difference between the states
kerasrnn.insight.inspection recomputes and each recurrent layer's own outputs, for every body the test checks, as JSON."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from test_inspection import BODIES, body_model, layer_outputs_from_traces  # noqa: E402

from kerasrnn.insight import inspection  # noqa: E402

largest = {}
x = np.random.default_rng(1).normal(size=(5, 7, 3)).astype("float32")
for cell, layers, bidirectional in BODIES:
    for return_sequences in (True, False):
        model = body_model(cell, layers, bidirectional, return_sequences)
        traces = inspection.trace_model(model, x)
        for layer in inspection.recurrent_layers(model):
            own = np.asarray(keras.Model(model.inputs, layer.output).predict(x, verbose=0))
            recomputed = layer_outputs_from_traces(layer, traces, layer.return_sequences)
            key = f"{cell}-{layers}-{'bi' if bidirectional else 'uni'}-{return_sequences}-{layer.name}"
            largest[key] = float(np.max(np.abs(recomputed - own)))
print(json.dumps({"backend": keras.backend.backend(), "largest": largest}))
