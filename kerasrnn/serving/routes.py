"""The FastAPI application of `kerasrnn serve`: one function per route (kerasrnn.serving.server describes the routes).

The loaded model is `app.state.predictor` (a kerasrnn.serving.server.Predictor). Imported only to serve: FastAPI is an extra.
"""

import asyncio
import hmac
import tempfile
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse

from kerasrnn.errors import RunError, UserError

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
# A request's sequences (task sequences): at most this many, each at most this many steps.
MAX_SEQUENCES, MAX_STEPS = 10_000, 100_000
SEQUENCE_SUFFIXES = (".csv", ".tsv", ".parquet", ".npz", ".ts")
# A client that stops sending mid-upload is answered 408 after this long, and its worker freed.
BODY_SECONDS = 10
PAGE = Path(__file__).parent / "page.html"


# Routes that run the model: with a token, only requests that send it.
GUARDED = ("/predict", "/steps")


def create_app(predictor, token: str | None = None) -> FastAPI:
    app = FastAPI(title=f"kerasrnn: {predictor.task.name}", docs_url=None, redoc_url=None)
    app.state.predictor, app.state.token = predictor, token
    app.add_exception_handler(UserError, user_error)
    app.add_exception_handler(RunError, run_error)
    app.middleware("http")(refuse_large_uploads)
    app.middleware("http")(require_token)  # added last, so it runs first: no upload is read without the token
    app.get("/health")(health)
    app.post("/predict")(predict)
    app.post("/steps")(steps)
    app.get("/", response_class=HTMLResponse)(page)
    return app


# ---- routes -------------------------------------------------------------------------
def health(request: Request):
    predictor = request.app.state.predictor
    return {"status": "ok", "task": predictor.task.name, "model": str(predictor.path)}


async def predict(request: Request):
    """What `kerasrnn predict --json` prints for the same inputs."""
    predictor = request.app.state.predictor
    inputs = await read_inputs(request, predictor.task)
    return await run_in_threadpool(answer, predictor.task, inputs, predictor.predict)


async def steps(request: Request):
    """The answer after each time step, for the page."""
    predictor = request.app.state.predictor
    inputs = await read_inputs(request, predictor.task)
    return await run_in_threadpool(answer, predictor.task, inputs, predictor.steps)


def page(request: Request):
    return PAGE.read_text().replace("{{TASK}}", request.app.state.predictor.task.name)


# ---- errors and limits ------------------------------------------------------------
async def user_error(request: Request, error: UserError):
    return JSONResponse({"detail": str(error)}, status_code=422)


async def run_error(request: Request, error: RunError):
    return JSONResponse({"detail": str(error)}, status_code=500)


async def require_token(request: Request, call_next):
    """401 for a guarded route without `Authorization: Bearer TOKEN` when the server has a token."""
    token = request.app.state.token
    if token and request.url.path in GUARDED:
        sent = request.headers.get("authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            return JSONResponse(
                {"detail": "this server needs its token: send the header Authorization: Bearer TOKEN"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
    return await call_next(request)


async def refuse_large_uploads(request: Request, call_next):
    """Refuse an upload over MAX_UPLOAD_BYTES before reading it (its Content-Length says so)."""
    if request.method == "POST":
        length = request.headers.get("content-length")
        if length is None:
            return JSONResponse({"detail": "send a Content-Length (chunked uploads are not accepted)"}, status_code=411)
        if not length.isdigit() or int(length) > MAX_UPLOAD_BYTES:
            return JSONResponse({"detail": f"upload too large: the limit is {MAX_UPLOAD_BYTES // 2**20} MB"}, status_code=413)
    return await call_next(request)


# ---- inputs and answers -----------------------------------------------------------
async def within_time(reading):
    """The request body, or 408 when the client has not sent it all within BODY_SECONDS."""
    try:
        return await asyncio.wait_for(reading, BODY_SECONDS)
    except TimeoutError:
        raise HTTPException(408, f"the upload stalled: the whole request must arrive within {BODY_SECONDS} s") from None


async def read_inputs(request: Request, task):
    """Inputs for the task: mnist's (client name, bytes) from multipart `images`, the others' strings from JSON."""
    if task.shows_inputs:
        return await read_images(request)
    if task.reads_files:
        return await read_sequence_upload(request)
    try:
        body = await within_time(request.json())
    except ValueError:
        raise UserError('send JSON like {"inputs": ["1011", "110"]}') from None
    inputs = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(inputs, list) or not all(isinstance(item, str | int) for item in inputs):
        raise UserError('send JSON like {"inputs": ["1011", "110"]}: a list of strings, the command\'s arguments')
    return [str(item) for item in inputs]


async def read_images(request: Request) -> list[tuple[str, bytes]]:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise UserError("send the images as multipart/form-data files in the field 'images'")
    form = await within_time(request.form(max_files=64))
    files = [item for item in form.getlist("images") if hasattr(item, "read")]
    if not files:
        raise UserError("no images: send one or more files in the multipart field 'images'")
    return [(item.filename or "", await item.read()) for item in files]


async def read_sequence_upload(request: Request) -> tuple[str, bytes]:
    """(a suffix, the bytes of a file of sequences): JSON numbers {"sequences": [[[...], ...], ...]} (one
    (steps, features) list a sequence) become an NPZ; a multipart `file` is taken as uploaded. A path on the
    server is never read."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await within_time(request.form(max_files=1))
        upload = form.get("file")
        if not hasattr(upload, "read"):
            raise UserError("send the file of sequences in the multipart field 'file'")
        suffix = Path(upload.filename or "").suffix.lower()
        if suffix not in SEQUENCE_SUFFIXES:
            raise UserError(
                f"an uploaded file of sequences is one of {', '.join(SEQUENCE_SUFFIXES)}, got {suffix or 'no suffix'!r}"
            )
        return suffix, await upload.read()
    try:
        body = await within_time(request.json())
    except ValueError:
        raise UserError(
            "send JSON like {\"sequences\": [[[0.1, 0.2], [0.3, 0.4]]]} or a file in the multipart field 'file'"
        ) from None
    sequences = body.get("sequences") if isinstance(body, dict) else None
    if sequences is None:
        raise UserError(
            'send the sequences themselves, {"sequences": [[[...], ...], ...]}, or upload a file: never a path on the server'
        )
    return ".npz", sequences_as_npz(sequences)


def sequences_as_npz(sequences) -> bytes:
    """JSON numbers (a list of sequences, each a list of steps of numbers) as NPZ bytes: x padded, lengths."""
    import io

    import numpy as np

    if not isinstance(sequences, list) or not sequences:
        raise UserError("sequences must be a non-empty list of sequences, each a list of steps, each a list of numbers")
    if len(sequences) > MAX_SEQUENCES:
        raise UserError(f"too many sequences: at most {MAX_SEQUENCES:,} a request")
    try:
        arrays = [np.asarray(sequence, dtype=np.float32) for sequence in sequences]
    except (TypeError, ValueError):
        raise UserError("every step holds numbers only, and every step of a sequence the same count") from None
    arrays = [array[:, None] if array.ndim == 1 else array for array in arrays]
    if any(array.ndim != 2 or len(array) == 0 for array in arrays) or len({array.shape[1] for array in arrays}) != 1:
        raise UserError("each sequence is a list of steps (at least one), each step the same number of features")
    if max(len(array) for array in arrays) > MAX_STEPS:
        raise UserError(f"a sequence too long: at most {MAX_STEPS:,} steps")
    padded = np.zeros((len(arrays), max(len(array) for array in arrays), arrays[0].shape[1]), dtype=np.float32)
    for index, array in enumerate(arrays):
        padded[index, : len(array)] = array
    buffer = io.BytesIO()
    np.savez(buffer, x=padded, lengths=np.array([len(array) for array in arrays]))
    return buffer.getvalue()


def answer_sequences(upload: tuple[str, bytes], call):
    """`call([a file of the upload])`, never unpickling what a client sent."""
    import numpy as np

    suffix, content = upload
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"sequences{suffix}"
        path.write_bytes(content)
        if suffix == ".npz":
            try:
                with np.load(path, allow_pickle=False) as archive:
                    [archive[name] for name in archive.files]
            except ValueError:
                raise UserError("an uploaded NPZ holds plain arrays (x padded, lengths): not a list of arrays") from None
            except (OSError, EOFError):
                raise UserError("the uploaded file is not a readable NPZ") from None
        try:
            return call([str(path)])
        except UserError as error:  # never name the server's folders
            raise UserError(str(error).replace(str(path), "the upload")) from None


def answer(task, inputs, call):
    """`call(inputs)`; uploads are saved to files first, and the answer names them as the client did."""
    if task.reads_files:
        return answer_sequences(inputs, call)
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
    for entry in result.get("errors", []):
        entry["error"] = entry["error"].replace(entry["input"], renamed.get(entry["input"], entry["input"]))
        entry["input"] = renamed.get(entry["input"], entry["input"])
    return result
