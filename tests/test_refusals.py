"""Bad input is refused before Keras or a backend loads: each command here runs in a fresh process and must
answer without importing keras, tensorflow, jax or torch (scripts/refusal_times.py times them)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "saved_models" / "mnist-pretrained"
FRAMEWORKS = ("keras", "tensorflow", "jax", "torch")

# A fresh interpreter that runs the command line and, at exit, names the frameworks it imported.
PROBE = (
    "import atexit, sys\n"
    f"atexit.register(lambda: print('FRAMEWORKS', sorted(m for m in {FRAMEWORKS!r} if m in sys.modules), file=sys.stderr))\n"
    "from kerasrnn_cli.main import run\n"
    "run(sys.argv[1:])\n"
)


def run_cli(*args: str, cwd: Path) -> tuple[int, str, str, list]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120, cwd=cwd)
    lines = done.stderr.strip().splitlines()
    frameworks = eval(lines[-1].removeprefix("FRAMEWORKS "))  # noqa: S307  the list the probe printed
    return done.returncode, done.stdout, "\n".join(lines[:-1]), frameworks


REFUSALS = {
    "evaluate a missing run": (["evaluate", "runs/nope"], "no such run directory: runs/nope"),
    "predict a missing image": (["predict", str(PRETRAINED), "nope.png"], "image not found: nope.png"),
    "fit with a misspelt option": (["fit", "adder", "-o", "epoch=2"], "did you mean 'epochs'?"),
    "fit with a bad cell": (["fit", "adder", "--cell", "bad"], "'bad' is not one of"),
    "fit with a bad value": (["fit", "recall", "--units", "0"], "units must be a whole number >= 1"),
    "fit an unknown task": (["fit", "nosuch"], "unknown task 'nosuch'"),
    "another task's option": (["fit", "mnist", "-o", "index=3"], "option 'index' applies to task recall"),
    "export a missing run": (["export", "runs/nope"], "no such run directory: runs/nope"),
    "inspect a missing run": (["inspect", "runs/nope"], "no such run directory: runs/nope"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_bad_input_is_one_line_and_exit_2_before_any_framework_loads(case, tmp_path):
    args, message = REFUSALS[case]
    status, stdout, stderr, frameworks = run_cli(*args, cwd=tmp_path)
    assert status == 2, stderr
    assert stderr.startswith("error: ") and len(stderr.splitlines()) == 1 and message in stderr, stderr
    assert frameworks == [] and stdout == ""
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_dry_run_prints_the_configuration_without_any_framework(tmp_path):
    status, stdout, stderr, frameworks = run_cli("fit", "recall", "--units", "2", "--cell", "gru", "--dry-run", cwd=tmp_path)
    assert status == 0, stderr
    config = json.loads(stdout)
    assert config["task"] == "recall" and config["units"] == 2 and config["backend"] == "tensorflow"
    assert "small-state" in stderr or "defaults for gru 2" in stderr  # the recipe it applied is said
    assert frameworks == []


def test_the_backend_still_loads_for_work_that_needs_it(tmp_path):
    """The probe itself sees a framework when one is imported: a prediction on the pretrained run loads Keras."""
    from PIL import Image, ImageDraw

    digit = tmp_path / "digit.png"
    image = Image.new("L", (56, 56), 255)
    ImageDraw.Draw(image).line([(28, 8), (28, 48)], fill=0, width=5)  # a 1
    image.save(digit)
    status, stdout, stderr, frameworks = run_cli("predict", str(PRETRAINED), str(digit), "--json", cwd=tmp_path)
    assert status == 0, stderr
    assert "keras" in frameworks and "tensorflow" in frameworks
    assert json.loads(stdout)["predictions"][0]["input"] == str(digit)
