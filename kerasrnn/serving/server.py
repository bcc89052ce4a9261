"""An HTTP server for a trained run or an exported artifact: `kerasrnn serve RUN` (FastAPI + uvicorn).

    GET  /         one page: draw a digit (mnist) or type inputs (adder, recall), see the answer
    GET  /health   {"status": "ok", "task": ...}
    POST /predict  what `kerasrnn predict --json` prints for the same inputs:
                   adder, recall: JSON {"inputs": ["1011", "110"]}; mnist: multipart files in `images`
    POST /steps    the model's answer after each time step (mnist: after each row), for the page

Bad input is a 4xx with a one-line `detail`; the server keeps serving. Among several images, each
unreadable one is an entry of the answer's `errors` (200 while at least one image was read). Uploads over
kerasrnn.serving.routes.MAX_UPLOAD_BYTES are refused before they are read, and so are images with more pixels
than kerasrnn.digits.images.MAX_PIXELS (decompression bombs).
"""

import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from kerasrnn.backend import cli_command
from kerasrnn.errors import RunError, UserError
from kerasrnn.serving import prediction

MAX_CONNECTIONS = 64
KEEP_ALIVE_SECONDS = 5


class Predictor:
    """The loaded model, called by one request at a time (Keras models are not made for concurrent calls)."""

    def __init__(self, path: Path):
        self.path = path
        self.task, self.config, model = prediction.load_predictor(path)
        self.model = FastKerasCalls(model) if hasattr(model, "predict_on_batch") else model
        self.stepwise, self.tracer = None, None
        if hasattr(model, "layers"):  # a Keras model, not an exported artifact
            from kerasrnn.insight import inspection

            self.stepwise, self.tracer = inspection.stepwise_model(model), inspection.Tracer(model)
        self.lock = threading.Lock()

    def predict(self, inputs: list[str]) -> dict:
        with self.lock:
            return prediction.predict_with(self.task, self.config, self.model, inputs)

    def steps(self, inputs: list[str]) -> dict:
        """Per time step: the model's answer had the sequence ended there, and the last recurrent layer's hidden
        state where the model is a Keras one (mnist: the 28x28 it read, too)."""
        with self.lock:
            x, extra = self.task.model_input(self.config, inputs)
            if self.stepwise is not None:
                outputs = np.asarray(self.stepwise.predict_on_batch(x))[0]
            else:
                outputs = self.task.answers_by_prefix(self.model, self.config, x)
            if outputs is None:
                raise UserError("this model cannot show its answer step by step (bidirectional, or an exported artifact)")
            states = self.tracer.trace(x[:1])[-1].hidden[0] if self.tracer is not None else None
        return {
            "steps": [[round(float(v), 5) for v in np.atleast_1d(step)] for step in outputs],
            **({"states": np.round(states, 3).tolist()} if states is not None else {}),
            **extra,
        }


class FastKerasCalls:
    """`predict(x)` through Keras' compiled predict_on_batch: no per-call data pipeline (milliseconds saved)."""

    def __init__(self, model):
        self.model = model

    def predict(self, x, verbose=0, batch_size=None):
        return self.model.predict_on_batch(np.asarray(x))


def create_app(path: str | Path, token: str | None = None):
    """The FastAPI application serving the run or artifact at `path` (kerasrnn.serving.routes: one function per route);
    with a `token`, /predict and /steps answer only requests that send it."""
    from kerasrnn.serving import routes

    return routes.create_app(Predictor(Path(path)), token=token)


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host` (a name that does not resolve counts as reachable)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(path: str | Path, host: str = "127.0.0.1", port: int = 8000, announce=lambda: None, token: str | None = None) -> None:
    """Serve until stopped; `announce` is called once the model is loaded, just before the server listens.

    Bounded: at most MAX_CONNECTIONS at once (more are answered 503 at once, never queued), idle
    connections closed after KEEP_ALIVE_SECONDS.
    """
    try:
        import fastapi  # noqa: F401  (create_app's import, checked before anything is loaded)
        import uvicorn
    except ImportError:
        raise UserError("kerasrnn serve needs FastAPI and uvicorn: pip install 'kerasrnn[serve]'") from None
    app = create_app(path, token=token)
    announce()
    uvicorn.run(
        app, host=host, port=port, log_level="warning", limit_concurrency=MAX_CONNECTIONS, timeout_keep_alive=KEEP_ALIVE_SECONDS
    )


def free_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


def start_server_process(path: str | Path, env: dict | None = None, arguments: tuple = ()) -> tuple[subprocess.Popen, str]:
    """`kerasrnn serve PATH` on a free port of 127.0.0.1 in a child process, once /health answers: (process, URL).

    For scripts and tests; the caller terminates the process.
    """
    port = free_port()
    errors = tempfile.TemporaryFile()  # a file, not a pipe: a chatty server never blocks on a full pipe
    server = subprocess.Popen(
        cli_command("serve", str(path), "--port", str(port), *arguments), env=env, stdout=subprocess.DEVNULL, stderr=errors
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1).close()
            return server, url
        except OSError:
            if server.poll() is not None:
                errors.seek(0)
                raise RunError(f"kerasrnn serve stopped: {errors.read().decode(errors='replace').strip()}") from None
            time.sleep(0.5)
    server.terminate()
    raise RunError("kerasrnn serve did not start in 2 minutes")
