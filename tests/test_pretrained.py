"""The shipped pretrained MNIST run reads printed and pen-drawn digits photographed on paper."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from kerasrnn.serving import prediction

PRETRAINED = Path(__file__).resolve().parents[1] / "saved_models" / "mnist-pretrained"
pytestmark = pytest.mark.skipif(not (PRETRAINED / "metrics.json").exists(), reason="no pretrained run shipped")


def photographed_digit(digit: int, rng: np.random.Generator, size: int) -> Image.Image:
    """A digit printed in a large font on off-white paper, shifted, tilted, blurred and noisy, like a phone photo."""
    paper = tuple(int(v) for v in rng.integers(200, 250, 3))
    image = Image.new("RGB", (160, 200), paper)
    font = ImageFont.load_default(size=size)
    offset = rng.integers(-15, 16, 2)
    ImageDraw.Draw(image).text((80 + offset[0], 100 + offset[1]), str(digit), fill=(25, 25, 35), font=font, anchor="mm")
    image = image.rotate(float(rng.uniform(-8, 8)), fillcolor=paper).filter(ImageFilter.GaussianBlur(1.2))
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, 8, (200, 160, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def test_pretrained_run_is_small_and_complete():
    size = sum(path.stat().st_size for path in PRETRAINED.rglob("*") if path.is_file())
    assert size < 2 * 1024 * 1024
    assert (PRETRAINED / "model.keras").exists() and (PRETRAINED / "config.json").exists()


def test_pretrained_reads_photographed_printed_digits(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for digit in range(10):
        for size in (90, 120):
            path = tmp_path / f"{digit}-{size}.jpg"
            photographed_digit(digit, rng, size).save(path, quality=85)
            paths.append(path)
    result = prediction.predict_run(PRETRAINED, [str(path) for path in paths])
    right = sum(int(Path(p["input"]).name[0]) == p["label"] for p in result["predictions"])
    assert right >= 17, [(Path(p["input"]).name, p["label"]) for p in result["predictions"]]


def test_a_shipped_run_is_never_written_into(tmp_path, monkeypatch):
    """`inspect` and `export` write about the shipped run beside the other runs, and say where: a clean checkout
    stays clean (inspect's own work is tests/test_inspection.py's; here, where it is sent)."""
    import shutil

    import kerasrnn
    from kerasrnn.export import writers
    from kerasrnn.insight import inspection

    shipped = tmp_path / "saved_models" / "mnist-pretrained"
    shutil.copytree(PRETRAINED, shipped)
    assert (shipped / "SHIPPED").exists()
    monkeypatch.chdir(tmp_path)  # saved_models/ is relative to where the command runs
    sent = []
    monkeypatch.setattr(
        inspection, "inspect_model", lambda task, config, model, out_dir, inputs, length: sent.append(out_dir) or {}
    )
    said = []
    kerasrnn.load(shipped).inspect(["one.png"], log=said.append)
    expected = Path("saved_models") / "mnist-pretrained-inspect"
    assert sent == [expected]
    assert said == [f"kerasrnn: {shipped} is shipped with the toolkit or read-only: the figures go to {expected}"]
    assert writers.default_artifact_path(shipped, "tflite") == Path("saved_models") / "mnist-pretrained-export" / "model.tflite"
    (shipped / "SHIPPED").unlink()  # an ordinary run keeps its own
    kerasrnn.load(shipped).inspect(["one.png"], log=said.append)
    assert sent[-1] == shipped / "inspect" and len(said) == 1
    assert writers.default_artifact_path(shipped, "tflite") == shipped / "export" / "model.tflite"
