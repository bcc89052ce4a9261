"""Pick the Keras backend once, before any test imports Keras (KERAS_BACKEND, default tensorflow)."""

import os
import subprocess
import sys

import pytest

from kerasrnn.backend import select_backend

BACKEND = select_backend(os.environ.get("KERAS_BACKEND"))


def run_cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `kerasrnn ARGS...` in a fresh process, as a user would."""
    env = {**os.environ, "KERAS_BACKEND": BACKEND}
    return subprocess.run(
        [sys.executable, "-m", "kerasrnn_cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture
def cli():
    return run_cli
