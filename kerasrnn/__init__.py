"""kerasrnn: recurrent networks on three classic sequence tasks, on any Keras 3 backend.

    import kerasrnn
    run = kerasrnn.fit("adder", loss="mse")
    run.evaluate(lengths="1-64")

Importing this package does not import Keras: the backend is chosen by the first call that needs it
(`backend=...`, else $KERAS_BACKEND, else TensorFlow). Once Keras is imported, by this toolkit or by
anyone, the toolkit's layers and metrics are registered with it, so a run's model.keras loads with
plain `keras.models.load_model(path)`, compiled.

The import boundary (tests/test_imports.py holds every module to it): these modules import none of
keras, tensorflow, jax or torch when they are imported, so the command line can parse options, refuse
bad input and choose the backend first:

    api, backend, bench, config, datasets, distribution, errors, export, faults, handwriting, images, plots,
    prediction, reports, routes (FastAPI), runs, search, serve, sweep, tables, tasks (the registry; not the task modules),
    tasks.base, torch_reference, and the command line (kerasrnn_cli.main)

Keras and a backend come in with the others (callbacks, candidates, inspection, layers, metrics, models, precision,
training, torch_kernels, torch_trainer, the task modules), imported inside the functions that need them.
"""

import wrapt

from kerasrnn.api import Run, fit, load, resolve_config, tune
from kerasrnn.errors import RunError, UserError

__version__ = "0.1.0"
__all__ = ["Run", "RunError", "UserError", "fit", "load", "resolve_config", "tune"]


@wrapt.when_imported("keras")
def _register_serializables(keras_module):
    import kerasrnn.layers  # noqa: F401  TimeDistributed
    import kerasrnn.metrics  # noqa: F401  exact_match
