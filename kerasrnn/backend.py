"""Choose the Keras backend before Keras is first imported.

Keras reads KERAS_BACKEND once, at import; afterwards the backend is fixed for
the life of the process. Every entry point calls `select_backend` first.
"""

from __future__ import annotations

import contextlib
import os
import sys

from kerasrnn.errors import UserError

BACKENDS = ("tensorflow", "jax", "torch")
DEFAULT_BACKEND = "tensorflow"
INSTALL_HINTS = {
    "tensorflow": 'pip install "kerasrnn"',
    "jax": 'pip install "kerasrnn[jax]"',
    "torch": 'pip install "kerasrnn[torch]"',
}


def cli_command(*args: str) -> list[str]:
    """The command line of `kerasrnn ARGS...` in a fresh process with this Python (a process keeps one backend)."""
    return [sys.executable, "-m", "kerasrnn_cli.main", *args]


def quiet_native_logs() -> None:
    """Silence TensorFlow's C++ start-up chatter (CUDA probes on CPU machines)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # errors still raise in Python
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def requested_backend(name: str | None = None) -> str:
    """The backend asked for: the argument, else KERAS_BACKEND, else TensorFlow."""
    chosen = name or os.environ.get("KERAS_BACKEND") or DEFAULT_BACKEND
    if chosen not in BACKENDS:
        raise UserError(f"unknown backend {chosen!r}: choose one of {', '.join(BACKENDS)}")
    return chosen


def backend_installed(name: str) -> bool:
    """Whether the backend's framework can be imported (checked without importing it)."""
    import importlib.util

    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[name]
    return importlib.util.find_spec(module) is not None


def choose_backend(name: str | None = None) -> str:
    """Fix the Keras backend for this process and return its name, without importing any framework (the
    command line checks a user's input first, and says what was wrong in a fraction of a second).

    Must run before `import keras`; if Keras is already loaded with another backend the request cannot be
    honoured, and we say so instead of silently running on the wrong one.
    """
    chosen = requested_backend(name)
    quiet_native_logs()
    if "keras" in sys.modules:
        import keras

        active = keras.backend.backend()
        if active != chosen:
            raise UserError(
                f"Keras is already running on {active!r} in this process; "
                f"start a new process (in a notebook: restart the kernel) to use {chosen!r}"
            )
        return chosen
    if not backend_installed(chosen):
        raise UserError(f"backend {chosen!r} is not installed: {INSTALL_HINTS[chosen]}")
    os.environ["KERAS_BACKEND"] = chosen
    return chosen


def select_backend(name: str | None = None) -> str:
    """`choose_backend`, then import TensorFlow and Keras quietly: for the work that needs them."""
    chosen = choose_backend(name)
    if "keras" not in sys.modules:
        import_frameworks_quietly()
    return chosen


@contextlib.contextmanager
def native_stderr_silenced():
    """Send the C++ libraries' start-up lines on file descriptor 2 to /dev/null.

    TensorFlow's CUDA probe logs through absl before any log level applies, so
    no environment variable silences it; Python exceptions still propagate.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_frameworks_quietly() -> None:
    """Import TensorFlow (tf.data runs every input pipeline) and Keras without start-up noise."""
    with native_stderr_silenced():
        import tensorflow

        tensorflow.config.list_physical_devices()  # the CUDA probe logs here, once
        import keras  # noqa: F401


def describe_device() -> str:
    """One line naming the device the active backend computes on (GPU name or CPU)."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return f"GPU ({details.get('device_name', gpus[0].name)})"
    elif backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform != "cpu":
            return f"GPU ({device.device_kind})"
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            return f"GPU ({torch.cuda.get_device_name(0)})"
    return f"CPU ({os.cpu_count()} cores)"
