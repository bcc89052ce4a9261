"""kerasrnn: recurrent networks on three classic sequence tasks, on any Keras 3 backend.

    import kerasrnn
    run = kerasrnn.fit("adder", loss="mse")
    run.evaluate(lengths="1-64")

Importing this package does not import Keras: the backend is chosen by the first call that needs it
(`backend=...`, else $KERAS_BACKEND, else TensorFlow). Once Keras is imported, by this toolkit or by
anyone, the toolkit's layers and metrics are registered with it, so a run's model.keras loads with
plain `keras.models.load_model(path)`, compiled.
"""

import wrapt

from kerasrnn.api import Run, fit, load, resolve_config
from kerasrnn.errors import RunError, UserError

__version__ = "0.1.0"
__all__ = ["Run", "RunError", "UserError", "fit", "load", "resolve_config"]


@wrapt.when_imported("keras")
def _register_serializables(keras_module):
    import kerasrnn.layers  # noqa: F401  TimeDistributed
    import kerasrnn.metrics  # noqa: F401  exact_match
