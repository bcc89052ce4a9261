"""Pick the Keras backend once, before any test imports Keras (KERAS_BACKEND, default tensorflow)."""

import os
import subprocess

import pytest

from kerasrnn.backend import cli_command, select_backend

BACKEND = select_backend(os.environ.get("KERAS_BACKEND"))


def run_cli(*args: str, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `kerasrnn ARGS...` in a fresh process, as a user would (KERAS_BACKEND as in this process unless `env` says)."""
    env = {**os.environ, "KERAS_BACKEND": BACKEND, **(env or {})}
    return subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=timeout, env=env)


def run_cli_here(capfd, *args: str) -> tuple[int, str, str]:
    """`kerasrnn ARGS` through the console entry point in this process (spares a TensorFlow import per
    call; `run_cli` runs the same entry point in a real process): (exit status, stdout, stderr)."""
    from kerasrnn_cli.main import run

    with pytest.raises(SystemExit) as exit_status:
        run(list(args))
    out, err = capfd.readouterr()
    return exit_status.value.code, out, err


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def cli_here(capfd):
    """`kerasrnn ARGS` in this process, answered as `run_cli` answers (returncode, stdout, stderr): for tests
    of what a command does, not of the process around it (a TensorFlow import spared a call)."""

    def call(*args: str) -> subprocess.CompletedProcess:
        capfd.readouterr()  # what the test printed before: not the command's
        status, out, err = run_cli_here(capfd, *args)
        return subprocess.CompletedProcess(args, status, out, err)

    return call
