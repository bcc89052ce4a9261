"""The page `kerasrnn serve` shows, in a real browser: headless Chromium (Debian's package) driven by Playwright.

A digit is drawn on the canvas with the mouse and the prediction is read back from the page. Screenshots
are kept in test-artifacts/ (or $KERASRNN_TEST_ARTIFACTS). Without Chromium or Playwright the tests are skipped.
"""

import math
import os
import shutil
from pathlib import Path

import pytest
from conftest import BACKEND, run_cli

from kerasrnn.serving.server import start_server_process

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "saved_models" / "mnist-pretrained"
ARTIFACTS = Path(os.environ.get("KERASRNN_TEST_ARTIFACTS") or ROOT / "test-artifacts")
CHROMIUM = next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: apt-get install chromium"),
    pytest.mark.skipif(not (PRETRAINED / "metrics.json").exists(), reason="no pretrained run shipped"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (the dev extra has it)")


@pytest.fixture
def served():
    """Start `kerasrnn serve RUN` on a free port; yields a function that serves a run and returns its URL."""
    servers = []

    def start(run: Path, *arguments: str) -> str:
        server, url = start_server_process(run, env={**os.environ, "KERAS_BACKEND": BACKEND}, arguments=arguments)
        servers.append(server)
        return url

    yield start
    for server in servers:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def draw(page, points) -> None:
    """Draw one stroke through `points` (in the pad's 280x280 pixels) with the mouse."""
    box = page.locator("#pad").bounding_box()
    scale = box["width"] / 280
    (x0, y0), rest = points[0], points[1:]
    page.mouse.move(box["x"] + x0 * scale, box["y"] + y0 * scale)
    page.mouse.down()
    for x, y in rest:
        page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=3)
    page.mouse.up()


def read_digit(page) -> str:
    page.wait_for_function("document.getElementById('digit').textContent !== '?'", timeout=30_000)
    return page.locator("#digit").text_content()


STROKES = {
    1: [(150, 40), (145, 140), (138, 240)],
    0: [(140 + 70 * math.sin(t / 20 * 2 * math.pi), 140 - 100 * math.cos(t / 20 * 2 * math.pi)) for t in range(22)],
    7: [(60, 50), (215, 45), (160, 140), (120, 245)],
}


def test_drawn_digits_are_read_on_the_page(served, browser):
    page = browser.new_page()
    page.goto(served(PRETRAINED))
    assert page.locator("#task").text_content() == "mnist"
    for digit, stroke in STROKES.items():
        page.click("#clear")
        draw(page, stroke)
        assert read_digit(page) == str(digit)
        assert page.locator("#bars .bar").count() == 10
        assert page.locator("#rows tr").count() == 28  # the answer after each of the 28 rows
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"page-mnist-{digit}.png"), full_page=True)
    # The 28x28 the model read is drawn: its centre is bright, its corner black.
    pixels = page.evaluate("Array.from(document.getElementById('read').getContext('2d').getImageData(0, 0, 28, 28).data)")
    brightness = [pixels[i] for i in range(0, len(pixels), 4)]
    assert max(brightness) > 200 and brightness[0] == 0


FOUR = [[(95, 40), (60, 170), (215, 170)], [(175, 60), (170, 250)]]  # two strokes, as most people write a 4


@pytest.mark.slow  # the default suite's time
def test_clear_resets_the_whole_page_and_the_state_fills_row_by_row(served, browser):
    page = browser.new_page()
    page.goto(served(PRETRAINED))
    draw(page, STROKES[7])
    assert read_digit(page) == "7"
    page.wait_for_function("document.getElementById('states').dataset.filled === '28'", timeout=10_000)
    units, painted = page.evaluate(
        """() => { const c = document.getElementById('states'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                   let painted = 0; for (let i = 3; i < d.length; i += 4) painted += d[i] > 0; return [c.height, painted]; }"""
    )
    assert units == 128 and painted == 28 * 128  # every unit at every row
    page.click("#clear")
    assert page.locator("#digit").text_content() == "?" and page.locator("#confidence").text_content() == ""
    assert page.locator("#bars .bar").count() == 0 and page.locator("#rows tr").count() == 0
    preview = page.evaluate("Array.from(document.getElementById('read').getContext('2d').getImageData(0, 0, 28, 28).data)")
    assert max(preview[i] for i in range(0, len(preview), 4)) == 0  # the 28x28 preview is black again
    left = page.evaluate(
        """() => { const c = document.getElementById('states'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                   return d.some((v, i) => i % 4 === 3 && v > 0); }"""
    )
    assert left is False


def test_a_drawing_is_answered_once_it_pauses_and_never_by_an_older_answer(served, browser):
    page = browser.new_page()
    # The first answer the page asks for arrives 2 s late, as on a busy server.
    page.add_init_script(
        """const realFetch = window.fetch; let delayed = false;
           window.fetch = (...args) => { if (!delayed && String(args[0]).endsWith('/predict')) { delayed = true;
             return new Promise((done) => setTimeout(() => done(realFetch(...args)), 2000)); } return realFetch(...args); };"""
    )
    problems, asked = [], []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("response", lambda response: problems.append(f"{response.status} {response.url}") if response.status >= 400 else None)
    page.on("request", lambda request: asked.append(request.url) if request.url.endswith("/predict") else None)
    page.goto(served(PRETRAINED))
    draw(page, STROKES[1])
    page.click("#predict")  # this answer is the late one
    page.click("#clear")
    for stroke in FOUR:  # a second stroke soon after the first: one answer, for the whole 4
        draw(page, stroke)
    assert read_digit(page) == "4"
    page.wait_for_timeout(2500)  # the late answer has arrived by now ...
    assert page.locator("#digit").text_content() == "4"  # ... and was dropped
    assert len(asked) == 2  # the late "1", and one for the 4 (none after its first stroke)
    assert problems == []  # no favicon 404, no script errors
    page.screenshot(path=str(ARTIFACTS / "page-mnist-4.png"), full_page=True)


@pytest.mark.slow  # the default suite's time; the token's refusals without a browser: tests/test_serve.py
def test_a_server_with_a_token_asks_for_it_once_and_keeps_it_for_the_tab(served, browser):
    page = browser.new_page()
    asked = []
    page.on("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept("tab key")))
    page.goto(served(PRETRAINED, "--token", "tab key"))
    draw(page, STROKES[1])
    assert read_digit(page) == "1"
    page.click("#clear")
    draw(page, STROKES[7])
    assert read_digit(page) == "7"
    assert len(asked) == 1 and "needs its token" in asked[0]  # both requests of the first drawing shared one question


@pytest.mark.slow  # trains a run and starts a second server: left out of the default suite for time
def test_adder_page_answers_step_by_step(served, browser, tmp_path):
    run = tmp_path / "adder"
    assert run_cli("fit", "adder", "--epochs", "1", "--out", str(run), "--quiet").returncode == 0
    page = browser.new_page()
    page.goto(served(run))
    page.fill("#inputs", "1011 110")
    page.click("form button")
    page.wait_for_function("document.getElementById('answer').textContent !== '?'", timeout=30_000)
    assert page.locator("#answer").text_content().startswith("1011 + 110 = ")
    assert page.locator("#steps tr").count() == 1 + 5  # a header and one row per output bit
    page.fill("#inputs", "10x1 110")
    page.click("form button")
    page.wait_for_function("document.getElementById('error').textContent.includes('not a binary number')", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "page-adder.png"), full_page=True)


@pytest.mark.slow  # the default suite's time
def test_sequences_page_answers_numbers_and_files_step_by_step(served, browser, tmp_path):
    """A bidirectional sequences run: numbers typed and a file uploaded are answered; the first sequence's answer
    after each step ends on the answer itself; what is not JSON numbers is one line on the page."""
    import json

    import numpy as np
    from test_sequences import LONG, peak_sequences, write_long

    import kerasrnn

    xs, ys = peak_sequences(8, 60)
    write_long(tmp_path / "train.csv", xs, ys)
    run = kerasrnn.fit("sequences", train=str(tmp_path / "train.csv"), **LONG, units=8, epochs=2, out=tmp_path / "run",
                       verbose=0, log=lambda line: None)  # fmt: skip
    page = browser.new_page()
    page.goto(served(run.path))
    assert page.locator("#task").text_content() == "sequences"
    numbers = [np.round(xs[0], 4).tolist(), np.round(xs[1], 4).tolist()]
    page.fill("#numbers", json.dumps(numbers))
    page.click("#sequence-form button")
    page.wait_for_function("document.getElementById('answers').rows.length === 3", timeout=30_000)
    last = page.locator("#answers tr").nth(1).locator("td").nth(1).text_content()
    steps = page.locator("#sequence-steps tr")
    assert steps.count() == 1 + len(xs[0])  # a header and one row per step
    assert steps.nth(len(xs[0])).locator("td").nth(1).text_content().split(" ")[0] == last.split(" ")[0]
    assert last.split(" ")[0] in {"c0", "c1", "c2"}
    write_long(tmp_path / "mine.csv", xs[:5], ys[:5])
    page.set_input_files("#sequence-file", str(tmp_path / "mine.csv"))
    page.click("#sequence-form button")
    page.wait_for_function("document.getElementById('answers').rows.length === 6", timeout=30_000)
    page.set_input_files("#sequence-file", [])
    page.fill("#numbers", "[[1, 2], [3")
    page.click("#sequence-form button")
    page.wait_for_function("document.getElementById('error').textContent.includes('not JSON numbers')", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "page-sequences.png"), full_page=True)
