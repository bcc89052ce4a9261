"""The import boundary that lets `--backend` work: the modules kerasrnn/__init__.py names import no framework."""

import re
import subprocess
import sys
from pathlib import Path

import kerasrnn

FRAMEWORKS = ("keras", "tensorflow", "jax", "torch")


def keras_free_modules() -> list[str]:
    """The modules the package docstring lists as Keras-free, as import paths."""
    listed = kerasrnn.__doc__.split("bad input and choose the backend first:")[1].split("Keras and a backend")[0]
    names = re.findall(r"[a-z_.]+", re.sub(r"\(.*?\)", "", listed, flags=re.S))
    names = [name for name in names if name not in ("and", "the", "command", "line")]
    return [f"kerasrnn.{name}" for name in names] + ["kerasrnn_cli.main"]


def test_the_listed_modules_import_no_framework():
    modules = keras_free_modules()
    assert "kerasrnn.runs" in modules and "kerasrnn_cli.main" in modules and len(modules) >= 20
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(name for name in {FRAMEWORKS!r} if name in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_every_module_is_on_one_side_of_the_boundary():
    """A new module is listed as Keras-free or named among the others, so the docstring stays the whole truth."""
    package = Path(kerasrnn.__file__).parent
    modules = {".".join(path.relative_to(package).with_suffix("").parts) for path in package.rglob("*.py")}
    modules = {name for name in modules if not name.endswith("__init__")}
    named = set(re.findall(r"[a-z_.]*[a-z_]", kerasrnn.__doc__.split("The import boundary")[1]))
    assert modules <= named, sorted(modules - named)
    assert not named & {"torch_trainer", "export", "training"}, "a module named that is a wing now"
