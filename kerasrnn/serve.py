"""An HTTP server for a trained run or an exported artifact: `kerasrnn serve RUN` (FastAPI + uvicorn).

    GET  /         one page: draw a digit (mnist) or type inputs (adder, recall), see the answer
    GET  /health   {"status": "ok", "task": ...}
    POST /predict  what `kerasrnn predict --json` prints for the same inputs:
                   adder, recall: JSON {"inputs": ["1011", "110"]}; mnist: multipart files in `images`
    POST /steps    the model's answer after each time step (mnist: after each row), for the page

Bad input is a 4xx with a one-line `detail`; the server keeps serving. Uploads over
MAX_UPLOAD_BYTES are refused before they are read, and so are images with more pixels
than kerasrnn.images.MAX_PIXELS (decompression bombs).
"""

import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from kerasrnn import prediction
from kerasrnn.backend import cli_command
from kerasrnn.errors import RunError, UserError

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
PAGE = Path(__file__).parent / "web" / "index.html"


class Predictor:
    """The loaded model, called by one request at a time (Keras models are not made for concurrent calls)."""

    def __init__(self, path: Path):
        self.path = path
        self.task, self.config, model = prediction.load_predictor(path)
        self.model = FastKerasCalls(model) if hasattr(model, "predict_on_batch") else model
        self.stepwise = stepwise_model(model) if hasattr(model, "layers") else None
        self.lock = threading.Lock()

    def predict(self, inputs: list[str]) -> dict:
        with self.lock:
            return prediction.predict_with(self.task, self.config, self.model, inputs)

    def steps(self, inputs: list[str]) -> dict:
        """Per time step: the model's answer had the sequence ended there (mnist: the 28x28 it read, too)."""
        if self.stepwise is None:
            raise UserError("this model cannot show its answer step by step (bidirectional, or an exported artifact)")
        with self.lock:
            x, extra = self.task.model_input(self.config, inputs)
            outputs = np.asarray(self.stepwise.predict_on_batch(x))[0]
        return {"steps": [[round(float(v), 5) for v in np.atleast_1d(step)] for step in outputs], **extra}


class FastKerasCalls:
    """`predict(x)` through Keras' compiled predict_on_batch: no per-call data pipeline (milliseconds saved)."""

    def __init__(self, model):
        self.model = model

    def predict(self, x, verbose=0, batch_size=None):
        return self.model.predict_on_batch(np.asarray(x))


def stepwise_model(model):
    """The same weights, answering after every time step: the last recurrent layer returns sequences.

    None for bidirectional models, whose backward half has read the whole sequence at every step.
    """
    import keras

    recurrent = [layer for layer in model.layers if isinstance(layer, keras.layers.RNN | keras.layers.Bidirectional)]
    if not recurrent or isinstance(recurrent[-1], keras.layers.Bidirectional):
        return None
    last = recurrent[-1]
    if last.return_sequences:
        return model

    def clone(layer):
        if layer is last:
            return layer.__class__.from_config({**layer.get_config(), "return_sequences": True})
        return layer.__class__.from_config(layer.get_config())

    stepwise = keras.models.clone_model(model, clone_function=clone)
    stepwise.set_weights(model.get_weights())
    return stepwise


def saved_uploads(folder: Path, uploads: list[tuple[str, bytes]]) -> list[str]:
    """Each upload as a file named as the client named it (the answer's `input`), in its own folder."""
    paths = []
    for index, (name, content) in enumerate(uploads):
        safe = Path(name or f"image-{index}").name or f"image-{index}"
        path = folder / str(index) / safe
        path.parent.mkdir()
        path.write_bytes(content)
        paths.append(str(path))
    return paths


def with_client_names(result: dict, paths: list[str], names: list[str]) -> dict:
    """The answer names each image as the client did, as `kerasrnn predict` names its arguments."""
    renamed = dict(zip(paths, names))
    for entry in result.get("predictions", []):
        entry["input"] = renamed.get(entry["input"], entry["input"])
    return result


def create_app(path: str | Path):
    """The FastAPI application serving the run or artifact at `path`."""
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import HTMLResponse, JSONResponse

    predictor = Predictor(Path(path))
    task = predictor.task
    app = FastAPI(title=f"kerasrnn: {task.name}", docs_url=None, redoc_url=None)

    @app.exception_handler(UserError)
    async def user_error(request, error: UserError):
        return JSONResponse({"detail": str(error)}, status_code=422)

    @app.exception_handler(RunError)
    async def run_error(request, error: RunError):
        return JSONResponse({"detail": str(error)}, status_code=500)

    @app.middleware("http")
    async def refuse_large_uploads(request: Request, call_next):
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is None:
                return JSONResponse({"detail": "send a Content-Length (chunked uploads are not accepted)"}, status_code=411)
            if not length.isdigit() or int(length) > MAX_UPLOAD_BYTES:
                return JSONResponse({"detail": f"upload too large: the limit is {MAX_UPLOAD_BYTES // 2**20} MB"}, status_code=413)
        return await call_next(request)

    async def read_inputs(request: Request):
        """(inputs for the task, client names or None): mnist from multipart `images`, the others from JSON."""
        if task.shows_inputs:
            if not request.headers.get("content-type", "").startswith("multipart/form-data"):
                raise UserError("send the images as multipart/form-data files in the field 'images'")
            form = await request.form(max_files=64)
            files = [item for item in form.getlist("images") if hasattr(item, "read")]
            if not files:
                raise UserError("no images: send one or more files in the multipart field 'images'")
            return [(item.filename or "", await item.read()) for item in files]
        try:
            body = await request.json()
        except ValueError:
            raise UserError('send JSON like {"inputs": ["1011", "110"]}') from None
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(inputs, list) or not all(isinstance(item, str | int) for item in inputs):
            raise UserError('send JSON like {"inputs": ["1011", "110"]}: a list of strings, the command\'s arguments')
        return [str(item) for item in inputs]

    def answer(inputs, call):
        if not task.shows_inputs:
            return call(inputs)
        with tempfile.TemporaryDirectory() as folder:
            paths = saved_uploads(Path(folder), inputs)
            names = [name for name, _ in inputs]
            try:
                return with_client_names(call(paths), paths, names)
            except UserError as error:  # name the upload as the client did, never the server's folders
                message = str(error)
                for path, name in zip(paths, names):
                    message = message.replace(path, name)
                raise UserError(message) from None

    @app.get("/health")
    def health():
        return {"status": "ok", "task": task.name, "model": str(predictor.path)}

    @app.post("/predict")
    async def predict(request: Request):
        inputs = await read_inputs(request)
        return await run_in_threadpool(answer, inputs, predictor.predict)

    @app.post("/steps")
    async def steps(request: Request):
        inputs = await read_inputs(request)
        return await run_in_threadpool(answer, inputs, predictor.steps)

    @app.get("/", response_class=HTMLResponse)
    def page():
        return PAGE.read_text().replace("{{TASK}}", task.name)

    return app


def serve(path: str | Path, host: str = "127.0.0.1", port: int = 8000, announce=lambda: None) -> None:
    """Serve until stopped; `announce` is called once the model is loaded, just before the server listens."""
    try:
        import fastapi  # noqa: F401  (create_app's import, checked before anything is loaded)
        import uvicorn
    except ImportError:
        raise UserError("kerasrnn serve needs FastAPI and uvicorn: pip install 'kerasrnn[serve]'") from None
    app = create_app(path)
    announce()
    uvicorn.run(app, host=host, port=port, log_level="warning")


def free_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


def start_server_process(path: str | Path, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """`kerasrnn serve PATH` on a free port of 127.0.0.1 in a child process, once /health answers: (process, URL).

    For scripts and tests; the caller terminates the process.
    """
    port = free_port()
    errors = tempfile.TemporaryFile()  # a file, not a pipe: a chatty server never blocks on a full pipe
    server = subprocess.Popen(
        cli_command("serve", str(path), "--port", str(port)), env=env, stdout=subprocess.DEVNULL, stderr=errors
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
