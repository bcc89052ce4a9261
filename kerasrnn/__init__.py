"""kerasrnn: recurrent networks on three classic sequence tasks, on any Keras 3 backend.

Importing this package does not import Keras: choose the backend first with
`kerasrnn.backend.select_backend`, then import `kerasrnn.training` and friends.
"""

__version__ = "0.1.0"
