"""The front page stays a front page, and every page and link it leads to exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def relative_links(page: Path) -> list[str]:
    """Targets of Markdown links and images that are not web addresses or anchors."""
    targets = re.findall(r"\]\(([^)\s]+)\)", page.read_text())
    return [target.split("#")[0] for target in targets if not re.match(r"[a-z]+:|#", target)]


def test_readme_is_short_and_links_every_docs_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 12 * 1024
    linked = {Path(target).name for target in relative_links(ROOT / "README.md")}
    assert {page.name for page in PAGES[1:]} <= linked


def test_every_relative_link_resolves():
    broken = [
        f"{page.relative_to(ROOT)} -> {target}"
        for page in PAGES
        for target in relative_links(page)
        if not (page.parent / target).exists()
    ]
    assert not broken


def test_readme_python_block_runs_as_written(tmp_path):
    """In a fresh process in an empty folder, on the default backend, with what the first install command installs."""
    import json
    import os
    import subprocess
    import sys

    [block] = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    check = "\nimport json\nprint(json.dumps(run.predict(['1011', '110'])))\n"
    env = {key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"}
    done = subprocess.run(
        [sys.executable, "-c", block + check], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["sum"] == "10001"  # 11 + 6, learned
    metadata = json.loads((tmp_path / "adder.tflite.json").read_text())
    assert metadata["format"] == "tflite" and metadata["parity"]["max_abs_difference"] <= 1e-5
