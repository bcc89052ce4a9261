"""`kerasrnn serve`: /predict answers what `kerasrnn predict --json` prints, bad input never stops it."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from kerasrnn.serving.routes import MAX_UPLOAD_BYTES  # noqa: E402
from kerasrnn.serving.server import create_app  # noqa: E402

PRETRAINED = Path(__file__).resolve().parents[1] / "saved_models" / "mnist-pretrained"


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def drawn_one() -> Image.Image:
    image = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(image).line([(150, 40), (135, 240)], fill=0, width=20)
    return image


@pytest.fixture(scope="module")
def adder_run(tmp_path_factory):
    from kerasrnn.tasks import get_task
    from kerasrnn.training import fitting

    out = tmp_path_factory.mktemp("serve") / "adder"
    fitting.fit(get_task("adder").make_config({"epochs": 1}), out, verbose=0, log=lambda *_: None)
    return out


@pytest.fixture(scope="module")
def mnist_client():
    return TestClient(create_app(PRETRAINED))


def test_adder_predict_is_what_the_command_prints(adder_run, cli_here):
    client = TestClient(create_app(adder_run))
    assert client.get("/health").json() == {"status": "ok", "task": "adder", "model": str(adder_run)}
    served = client.post("/predict", json={"inputs": ["1011", "110"]})
    printed = cli_here("predict", str(adder_run), "1011", "110", "--json")
    assert served.status_code == 200 and served.json() == json.loads(printed.stdout)
    steps = client.post("/steps", json={"inputs": ["1011", "110"]}).json()["steps"]
    bits = "".join("1" if step[0] > 0.5 else "0" for step in steps)[::-1].lstrip("0") or "0"
    assert len(steps) == 5 and bits == served.json()["sum"]  # the step-by-step answer is the answer


def test_a_token_guards_the_model_and_nothing_else(adder_run):
    client = TestClient(create_app(adder_run, token="s3cret key"))
    body = {"inputs": ["1011", "110"]}
    assert client.get("/health").status_code == 200 and client.get("/").status_code == 200
    for route in ("/predict", "/steps"):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret key"}):
            refused = client.post(route, json=body, headers=headers)
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
            assert "needs its token" in refused.json()["detail"]
        assert client.post(route, json=body, headers={"Authorization": "Bearer s3cret key"}).status_code == 200


def test_listening_beyond_this_machine_without_a_token_warns_and_with_one_does_not(adder_run):
    import subprocess
    import time
    import urllib.request

    from kerasrnn.backend import cli_command
    from kerasrnn.serving.server import free_port

    for extra, warned in (((), True), (("--token", "k"), False)):
        port = free_port()
        server = subprocess.Popen(
            cli_command("serve", str(adder_run), "--host", "0.0.0.0", "--port", str(port), *extra),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            for _ in range(240):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.5)
        finally:
            server.terminate()
            stderr = server.communicate(timeout=30)[1]
        assert ("anyone on the network can use this model" in stderr) is warned, stderr


def test_bad_input_gets_one_line_and_the_server_keeps_serving(adder_run):
    client = TestClient(create_app(adder_run))
    for body in ({"inputs": ["10x1", "110"]}, {"inputs": ["1"]}, {"inputs": "1011"}, [1, 2]):
        answer = client.post("/predict", json=body)
        assert answer.status_code == 422 and "\n" not in answer.json()["detail"], body
    assert client.post("/predict", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
    assert client.get("/health").status_code == 200


@pytest.mark.skipif(not (PRETRAINED / "metrics.json").exists(), reason="no pretrained run shipped")
def test_mnist_predict_is_what_the_command_prints(mnist_client, tmp_path, cli_here):
    path = tmp_path / "one.png"
    drawn_one().save(path)
    served = mnist_client.post("/predict", files=[("images", ("one.png", path.read_bytes(), "image/png"))])
    printed = cli_here("predict", str(PRETRAINED), str(path), "--json")
    expected = json.loads(printed.stdout)
    expected["predictions"][0]["input"] = "one.png"
    assert served.status_code == 200 and served.json() == expected
    assert expected["predictions"][0]["label"] == 1


@pytest.mark.skipif(not (PRETRAINED / "metrics.json").exists(), reason="no pretrained run shipped")
def test_mnist_steps_end_with_the_answer_and_show_the_28x28(mnist_client):
    files = [("images", ("one.png", png_bytes(drawn_one()), "image/png"))]
    answer = mnist_client.post("/predict", files=files).json()["predictions"][0]
    steps = mnist_client.post("/steps", files=files).json()
    assert len(steps["steps"]) == 28 and np.asarray(steps["image"]).shape == (28, 28)
    # After the last row the step-by-step model is the model itself.
    np.testing.assert_allclose(steps["steps"][-1], answer["probabilities"], atol=2e-5)


@pytest.mark.skipif(not (PRETRAINED / "metrics.json").exists(), reason="no pretrained run shipped")
def test_one_broken_upload_among_good_ones_gets_its_own_error(mnist_client):
    good = ("images", ("one.png", png_bytes(drawn_one()), "image/png"))
    files = [good, ("images", ("bad.png", b"not an image", "image/png")), good]
    answer = mnist_client.post("/predict", files=files)
    assert answer.status_code == 200
    document = answer.json()
    assert [entry["input"] for entry in document["predictions"]] == ["one.png", "one.png"]
    assert document["predictions"][0]["label"] == 1
    assert document["errors"] == [{"input": "bad.png", "error": "not a readable image: bad.png (UnidentifiedImageError)"}]


@pytest.mark.skipif(not (PRETRAINED / "metrics.json").exists(), reason="no pretrained run shipped")
def test_uploads_that_are_too_large_broken_or_bombs_are_refused(mnist_client):
    big = mnist_client.post("/predict", files=[("images", ("big.png", b"\0" * (MAX_UPLOAD_BYTES + 1), "image/png"))])
    assert big.status_code == 413
    broken = mnist_client.post("/predict", files=[("images", ("photo.png", b"not an image", "image/png"))])
    assert broken.status_code == 422 and broken.json()["detail"].startswith("not a readable image: photo.png")
    bomb = png_bytes(Image.new("1", (10000, 8000), 1))  # 80 megapixels in a few kilobytes
    assert len(bomb) < 100_000
    refused = mnist_client.post("/predict", files=[("images", ("bomb.png", bomb, "image/png"))])
    assert refused.status_code == 422 and "too large" in refused.json()["detail"]
    missing = mnist_client.post("/predict", data={"other": "field"})
    assert missing.status_code == 422
    assert mnist_client.post("/predict", files=[("images", ("one.png", png_bytes(drawn_one()), "image/png"))]).status_code == 200


@pytest.mark.slow
@pytest.mark.skipif(not (PRETRAINED / "metrics.json").exists(), reason="no pretrained run shipped")
def test_a_short_soak_answers_every_good_request_right_and_every_bad_one_4xx(tmp_path):
    """scripts/serve_soak.py, briefly: drawn and photographed digits, mixed requests, garbage, oversized uploads
    and clients that stall mid-upload, from several clients at once against a real server process."""
    import subprocess
    import sys

    report = tmp_path / "soak.json"
    done = subprocess.run(
        [sys.executable, str(Path(__file__).parents[1] / "scripts" / "serve_soak.py"), "--seconds", "6", "--clients", "4",
         "--per-condition", "2", "--seed", "3", "--json", str(report)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(report.read_text())
    assert result["server_alive_at_end"]
    assert sum(kind["requests"] for kind in result["by_kind"].values()) >= 20
    assert all(kind["failed"] == 0 for kind in result["by_kind"].values()), result["by_kind"]
