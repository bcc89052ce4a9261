"""MNIST-style preprocessing of a person's digit images, on synthetic images made here."""

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from kerasrnn.digits.images import (
    CANVAS,
    digit_mask,
    ink_from_background,
    load_grey,
    mnist_like,
    otsu_threshold,
    preprocess_file,
    preprocessing_steps,
    undo_upscale,
)
from kerasrnn.errors import UserError


def drawn_digit(size=(200, 160), box=(60, 40, 110, 150), width=8, ink=0, paper=255, mode="L"):
    """A '7'-like stroke figure drawn on paper, like a photographed digit."""
    image = Image.new(mode, size, paper if mode == "L" else (paper,) * 3)
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = box
    colour = ink if mode == "L" else (ink, ink // 2, 200 if ink < 128 else ink)
    draw.line([(left, top), (right, top), (left + (right - left) // 3, bottom)], fill=colour, width=width)
    return image


def assert_mnist_like(digit):
    assert digit.shape == (CANVAS, CANVAS) and digit.dtype == np.float32
    assert 0.0 <= digit.min() and digit.max() <= 1.0 and digit.max() > 0.8
    rows, cols = np.nonzero(digit > 0.1)
    height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert max(height, width) in range(18, 23)  # scaled to fit the 20x20 box (anti-aliasing may add a pixel)
    row, col = ndimage.center_of_mass(digit)
    assert abs(row - 13.5) <= 1.0 and abs(col - 13.5) <= 1.0  # centred by mass
    border = np.concatenate([digit[0], digit[-1], digit[:, 0], digit[:, -1]])
    assert border.max() < 0.05  # background black, nothing cut off at the edge
    assert (digit < 0.05).mean() > 0.6  # mostly background, as in MNIST


def save(image, tmp_path, name):
    path = tmp_path / name
    image.save(path)
    return path


@pytest.mark.parametrize(
    "name,image",
    [
        ("dark_on_light.png", drawn_digit()),
        ("inverted.png", drawn_digit(ink=255, paper=0)),
        ("off_centre.png", drawn_digit(size=(400, 400), box=(280, 20, 360, 160))),
        ("small.png", drawn_digit(size=(40, 36), box=(10, 6, 24, 30), width=2)),
        ("large_thin.png", drawn_digit(size=(1600, 1200), box=(400, 300, 800, 1100), width=6)),
        ("colour.jpg", drawn_digit(mode="RGB", ink=20)),
        ("wide.png", drawn_digit(size=(300, 300), box=(30, 120, 270, 180), width=10)),
    ],
)
def test_preprocessing_lands_centred_in_28x28(name, image, tmp_path):
    assert_mnist_like(preprocess_file(save(image, tmp_path, name)))


def test_noise_and_uneven_light_are_removed(tmp_path):
    rng = np.random.default_rng(0)
    clean = np.asarray(drawn_digit(), dtype=np.float32)
    gradient = np.linspace(-50, 30, clean.shape[1])[None, :]  # a shadow across the page
    noisy = clean + gradient + rng.normal(0, 12, clean.shape)
    noisy[5:8, 5:8] = 0  # a speck far from the digit
    digit = preprocess_file(save(Image.fromarray(np.uint8(np.clip(noisy, 0, 255))), tmp_path, "noisy.png"))
    assert_mnist_like(digit)
    reference = mnist_like(clean / 255.0)
    assert np.abs(digit - reference).mean() < 0.08  # the same digit as the clean image


def test_otsu_separates_two_levels():
    values = np.concatenate([np.full(900, 0.1), np.full(100, 0.8)])
    assert 0.1 < otsu_threshold(values) < 0.8


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: p, "not found"),
        (lambda p: (p.write_bytes(b""), p)[1], "empty"),
        (lambda p: (p.write_text("not an image at all"), p)[1], "not a readable image"),
        (lambda p: (p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40), p)[1], "not a readable image"),
    ],
)
def test_bad_files_are_refused_clearly(make, message, tmp_path):
    with pytest.raises(UserError, match=message):
        load_grey(make(tmp_path / "digit.png"))


@pytest.mark.parametrize("size,level", [((50, 50), 255), ((50, 50), 0), ((8, 8), 0), ((8, 8), 128), ((3, 200), 0)])
def test_blank_image_is_refused(size, level, tmp_path):
    path = save(Image.new("L", size, level), tmp_path, "blank.png")
    with pytest.raises(UserError, match="no digit"):
        preprocess_file(path)


def test_every_step_is_kept_for_show():
    grey = np.asarray(drawn_digit(), dtype=np.float32) / 255.0
    steps = preprocessing_steps(grey)
    assert list(steps) == ["input", "working size", "ink", "digit found", "cropped, contrast", "stroke width", "28x28"]
    assert np.array_equal(steps["28x28"], mnist_like(grey)) and steps["input"] is grey
    assert steps["ink"].max() > 0.5 and steps["ink"][0, 0] < 0.05  # the paper is gone, the ink is bright


def test_huge_images_are_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (10000, 8000), 1).save(path)  # 80 megapixels in a few kilobytes
    with pytest.raises(UserError, match="too large"):
        load_grey(path)


@pytest.mark.parametrize("resample", [Image.NEAREST, Image.BILINEAR, Image.BICUBIC], ids=["nearest", "bilinear", "bicubic"])
def test_scans_blown_up_by_software_are_brought_back_to_their_pixels(resample):
    rng = np.random.default_rng(3)
    scan = np.float32(ndimage.zoom(rng.uniform(0.2, 1.0, (4, 4)), 2, order=1))  # an 8x8 grey scan
    blown_up = np.asarray(Image.fromarray(scan).resize((48, 48), resample), dtype=np.float32)
    small = undo_upscale(blown_up)
    assert small.shape == (8, 8)
    assert np.abs(small - scan)[1:-1, 1:-1].mean() < 0.02


def test_a_photo_is_not_mistaken_for_a_blown_up_scan():
    grey = np.asarray(drawn_digit(), dtype=np.float32) / 255
    assert undo_upscale(grey).shape == grey.shape


def page(size=160, vignette=0.0, gradient=0.0):
    y, x = np.mgrid[0:size, 0:size] / (size - 1) - 0.5
    return np.float32(0.9 * (1 - vignette * 2 * (x**2 + y**2)) * (1 - gradient * (x + 0.5)))


def test_a_page_darkening_toward_its_edges_stays_paper():
    grey = page(vignette=0.3, gradient=0.2)
    grey[60:100, 76:84] *= 0.4  # a stroke in the middle
    ink = ink_from_background(grey)
    assert ink[60:100, 77:83].min() > 0.5
    assert np.delete(ink, np.s_[50:110], axis=0).max() < 0.03  # no frame of ink at the edges


def test_a_stroke_along_the_edge_stays_ink():
    grey = page(gradient=0.2)
    grey[0:12, 30:130] *= 0.4  # the bar of a 7 touching the top of a tight crop
    grey[12:120, 110:120] *= 0.4
    ink = ink_from_background(grey)
    assert ink[1:11, 35:125].min() > 0.5
    assert ink[40:, :60].max() < 0.03


def test_an_8x8_scans_2_keeps_its_base_along_the_bottom_edge():
    grey = np.float32([
        [196, 199, 204, 205, 208, 212, 214, 217],
        [194, 196, 77, 55, 53, 126, 212, 215],
        [193, 147, 114, 202, 204, 50, 210, 212],
        [189, 194, 196, 200, 195, 52, 208, 211],
        [188, 190, 194, 198, 91, 133, 206, 208],
        [184, 188, 192, 110, 90, 200, 203, 205],
        [182, 147, 68, 58, 170, 195, 201, 202],
        [178, 108, 76, 82, 79, 68, 163, 199],
    ]) / 255  # fmt: skip
    digit = mnist_like(grey) > 0.5
    rows, columns = np.nonzero(digit.any(axis=1))[0], np.nonzero(digit.any(axis=0))[0]
    base = digit[rows.max() - 3 : rows.max() + 1].any(axis=0).sum()
    assert base >= 0.75 * (columns.max() - columns.min() + 1)  # the base spans the digit, not a 7's tail


def test_a_shadows_soft_edge_stays_paper():
    y, x = np.mgrid[0:200, 0:200] / 199
    grey = np.float32(0.9 * (1 - 0.45 / (1 + np.exp(-(x + 0.5 * y - 0.9) / 0.05))))  # shadow across a corner
    grey[50:150, 46:54] *= 0.4
    ink = ink_from_background(grey)
    assert ink[55:145, 47:53].min() > 0.5
    assert np.delete(ink, np.s_[40:60], axis=1).max() < 0.15  # faint at most where the shadow meets the edge
    columns = np.nonzero(digit_mask(ink).any(axis=0))[0]
    assert columns.min() >= 40 and columns.max() < 60  # what is found is the stroke alone
