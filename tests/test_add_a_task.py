"""docs/add-a-task.md as written: its files make a package, pip installs it (into a folder of its own, put on the
path: the test's environment is left as it was), and every command of the page runs on the plugged-in task;
nothing is copied into kerasrnn/."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "add-a-task.md"
QUICK = ["-o", "steps_per_epoch=20", "--epochs", "2"]


def page_files() -> dict[str, str]:
    """{path: text} of every block the page introduces with `<!-- file: PATH -->`."""
    found = re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```", PAGE.read_text(), re.S)
    return dict(found)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(site folder the package is installed in, the package's source folder)."""
    root = tmp_path_factory.mktemp("plugin")
    for path, text in page_files().items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    (root / "kerasrnn-majority" / "kerasrnn_majority" / "__init__.py").write_text("")
    site = root / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site),
         str(root / "kerasrnn-majority")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return site, root / "kerasrnn-majority"


def kerasrnn_cli(*args: str, site: Path | None, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site) if site else ""}
    return subprocess.run([sys.executable, "-m", "kerasrnn_cli.main", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd, env=env)  # fmt: skip


def test_the_page_names_its_files():
    assert set(page_files()) == {
        "kerasrnn-majority/pyproject.toml",
        "kerasrnn-majority/kerasrnn_majority/task.py",
        "kerasrnn-majority/tests/test_task.py",
    }


@pytest.mark.slow
def test_every_command_runs_on_the_installed_task(installed, tmp_path):
    site, _ = installed
    run = tmp_path / "runs" / "majority"

    def ok(*args):
        done = kerasrnn_cli(*args, site=site, cwd=tmp_path)
        assert done.returncode == 0, (args, done.stderr[-2000:])
        return done

    assert "majority" in ok("fit", "--help").stdout  # listed beside the built-in tasks
    ok("fit", "majority", "--cell", "gru", "--out", str(run), "-q")
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == "majority" and config["task_source"] == "kerasrnn_majority.task:TASK"
    assert config["task_package"] == "kerasrnn-majority"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.9  # it learned to count
    evaluation = json.loads(ok("evaluate", str(run), "--lengths", "1-40", "--json").stdout)
    assert set(evaluation["by_length"]) == {str(n) for n in range(1, 41)}
    assert json.loads(ok("predict", str(run), "1", "0", "1", "1", "0", "--json").stdout)["more_ones"] is True
    exported = json.loads(ok("export", str(run), "--format", "savedmodel", "--json").stdout)
    search = json.loads(ok("tune", "majority", *QUICK, "--max-trials", "2", "--out", str(tmp_path / "tune"), "--json").stdout)
    assert len(search["trials"]) == 2 and search["best"]["test"]["accuracy"] >= 0.0

    # Without the package, one line says what to install; the SavedModel still runs, needing no task code.
    missing = kerasrnn_cli("evaluate", str(run), site=None, cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "not importable here: install 'kerasrnn-majority' (pip install kerasrnn-majority)" in missing.stderr
    serve = (
        "import numpy as np, tensorflow as tf, sys; model = tf.saved_model.load(sys.argv[1]);"
        "print(float(model.serve(np.array([[[1.0], [1.0], [0.0]]], np.float32))[0, 0]))"
    )
    alone = subprocess.run([sys.executable, "-c", serve, exported["artifact_path"]], capture_output=True, text=True, timeout=120)
    assert alone.returncode == 0 and float(alone.stdout.split()[-1]) > 0.5, alone.stderr[-1000:]


@pytest.mark.slow  # kerasrnn.fit(task object) is in the default suite: tests/test_task_contract.py
def test_a_module_reference_and_a_task_object_need_no_install(installed, tmp_path, monkeypatch):
    _, source = installed
    by_reference = kerasrnn_cli(
        "fit", "kerasrnn_majority.task:TASK", *QUICK, "--out", str(tmp_path / "ref"), "-q", site=source, cwd=tmp_path
    )
    assert by_reference.returncode == 0, by_reference.stderr[-2000:]
    assert json.loads((tmp_path / "ref" / "config.json").read_text())["task_source"] == "kerasrnn_majority.task:TASK"

    import kerasrnn

    monkeypatch.syspath_prepend(str(source))
    from kerasrnn_majority.task import MajorityTask

    run = kerasrnn.fit(MajorityTask(), steps_per_epoch=20, epochs=2, out=tmp_path / "object", verbose=0, log=lambda line: None)
    assert run.task == "majority" and run.predict(["1", "1", "1"])["more_ones"] is True


@pytest.mark.slow
def test_the_packages_own_test_passes(installed, tmp_path):
    site, source = installed
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", str(source / "tests")],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:]
