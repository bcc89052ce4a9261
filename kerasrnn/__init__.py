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

    api, backend, config, errors, runs, tasks (the registry), tasks.base, tasks.adder, tasks.recall, tasks.mnist,
    tasks.sequences, sequences.readers, sequences.tsfile,
    modeling.spec, training.distribution, training.faults, serving.prediction, serving.routes (FastAPI),
    serving.server, export.artifacts, export.writers, studies.bench, studies.reports, studies.search,
    studies.sweep, studies.tables, digits.handwriting, digits.images, digits.mnist_data, insight.plots,
    torch.reference, and the command line (kerasrnn_cli.main)

Keras and a backend come in with the others (modeling.layers, modeling.metrics, modeling.models,
training.callbacks, training.candidates, training.fitting, training.precision, insight.inspection,
torch.forward, torch.kernels, torch.loop, torch.objectives, torch.optimizer, torch.step, torch.threads),
imported inside the functions that need them.
"""

import wrapt

from kerasrnn.api import Run, fit, load, resolve_config, tune
from kerasrnn.errors import RunError, UserError

__version__ = "0.1.0"
__all__ = ["Run", "RunError", "UserError", "fit", "load", "resolve_config", "tune"]


@wrapt.when_imported("keras")
def _register_serializables(keras_module):
    import kerasrnn.modeling.layers  # noqa: F401  TimeDistributed
    import kerasrnn.modeling.metrics  # noqa: F401  exact_match
