"""A photo or scan of one handwritten or printed digit -> an MNIST-like 28x28 array.

MNIST's digits are bright ink on black, cropped to the digit, scaled to fit a
20x20 box keeping their aspect ratio, anti-aliased, and placed in 28x28 with
their centre of mass at the centre. A person's photo is anything but: any
size, colour, dark ink on light paper, uneven light, specks. Each step below
undoes one of those differences, in the order MNIST was made.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

from kerasrnn.errors import UserError

DIGIT_BOX = 20  # MNIST scales the digit to fit 20x20...
CANVAS = 28  # ...then centres it by mass in 28x28
MNIST_STROKE = 2.2  # typical MNIST stroke width, in pixels of the 20x20 box


def load_grey(path: str | Path) -> np.ndarray:
    """Any common image file -> float grey in [0, 1]; one clear error for missing, empty or non-image files."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"image not found: {path}")
    if path.is_dir():
        raise UserError(f"expected an image file, got a directory: {path}")
    if path.stat().st_size == 0:
        raise UserError(f"image file is empty: {path}")
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)  # phone photos store their rotation in EXIF
            if image.mode in ("RGBA", "LA", "P"):
                image = image.convert("RGBA")
                background = Image.new("RGBA", image.size, (255, 255, 255, 255))
                image = Image.alpha_composite(background, image)  # transparent = paper
            grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise UserError(f"not a readable image: {path} ({type(error).__name__})") from None
    if grey.size == 0 or min(grey.shape) < 2:
        raise UserError(f"image is too small to hold a digit: {path}")
    return grey


def ink_bright_on_black(grey: np.ndarray) -> np.ndarray:
    """Invert dark-on-light images (paper is brighter than ink), judging by the border."""
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    return 1.0 - grey if np.median(border) > 0.5 else grey.copy()


def flatten_background(ink: np.ndarray) -> np.ndarray:
    """Subtract slowly varying light (shadows, gradients): an opening wider than a stroke sees only background."""
    size = max(3, min(ink.shape) // 6)
    small = ink[:: max(1, min(ink.shape) // 200), :: max(1, min(ink.shape) // 200)]
    scale = ink.shape[0] / small.shape[0], ink.shape[1] / small.shape[1]
    small_size = max(3, int(size / scale[0]))
    background = ndimage.uniform_filter(ndimage.grey_opening(small, size=small_size), size=small_size)
    background = ndimage.zoom(background, (ink.shape[0] / small.shape[0], ink.shape[1] / small.shape[1]), order=1)
    background = background[: ink.shape[0], : ink.shape[1]]
    if background.shape != ink.shape:  # zoom can round one pixel short
        background = np.pad(
            background, [(0, ink.shape[0] - background.shape[0]), (0, ink.shape[1] - background.shape[1])], mode="edge"
        )
    return np.clip(ink - background, 0.0, None)


def otsu_threshold(values: np.ndarray) -> float:
    """The threshold that best separates two classes of brightness (Otsu, 1979)."""
    histogram, edges = np.histogram(values, bins=256, range=(0.0, max(float(values.max()), 1e-6)))
    weights = histogram.astype(np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    below = np.cumsum(weights)
    above = below[-1] - below
    sum_below = np.cumsum(weights * centres)
    mean_below = sum_below / np.maximum(below, 1)
    mean_above = (sum_below[-1] - sum_below) / np.maximum(above, 1)
    between = below * above * (mean_below - mean_above) ** 2
    return float(centres[int(np.argmax(between))])


def digit_mask(ink: np.ndarray) -> np.ndarray:
    """Pixels of the digit: above Otsu's threshold, in components not much smaller than the largest (specks go)."""
    if ink.max() <= 0:
        raise UserError("no digit found: the image is blank")
    mask = ink > otsu_threshold(ink)
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count == 0:
        raise UserError("no digit found: the image has no ink")
    areas = ndimage.sum(mask, labels, index=range(1, count + 1))
    keep = [index + 1 for index, area in enumerate(areas) if area >= 0.08 * areas.max()]
    return np.isin(labels, keep)


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width: across a stroke of width w the distance to the edge runs 0..w/2, so w ~ 4 x mean distance."""
    distances = ndimage.distance_transform_edt(mask)
    return 4.0 * float(distances[mask].mean())


def crop_to_digit(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(mask)
    crop = np.where(mask, ink, 0.0)[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    peak = np.percentile(crop[crop > 0], 95) if np.any(crop > 0) else 1.0
    return np.clip(crop / max(peak, 1e-6), 0.0, 1.0)


def thicken_thin_strokes(crop: np.ndarray, width: float) -> np.ndarray:
    """A pen line photographed at high resolution would vanish when shrunk: widen it to MNIST's stroke."""
    target = MNIST_STROKE * max(crop.shape) / DIGIT_BOX
    if width >= target:
        return crop
    grow = int(round(target - width))
    if grow < 1:
        return crop
    # A grey dilation of size k widens a stroke by k - 1 pixels; pad so the edges have room.
    return ndimage.grey_dilation(np.pad(crop, grow), size=(grow + 1, grow + 1))


def fit_in_box(crop: np.ndarray) -> np.ndarray:
    """Scale so the longer side is 20 pixels, keeping the aspect ratio, with anti-aliasing."""
    height, width = crop.shape
    scale = DIGIT_BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = Image.fromarray(np.uint8(np.round(crop * 255)))
    return np.asarray(image.resize(size, Image.LANCZOS), dtype=np.float32) / 255.0


def centre_by_mass(digit: np.ndarray) -> np.ndarray:
    """Place in 28x28 with the centre of mass at the centre, as MNIST did."""
    canvas = np.zeros((CANVAS, CANVAS), dtype=np.float32)
    top, left = (CANVAS - digit.shape[0]) // 2, (CANVAS - digit.shape[1]) // 2
    canvas[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    row, col = ndimage.center_of_mass(canvas)
    shift = (np.round((CANVAS - 1) / 2 - row), np.round((CANVAS - 1) / 2 - col))
    return np.clip(ndimage.shift(canvas, shift, order=0, mode="constant"), 0.0, 1.0)


def mnist_like(grey: np.ndarray) -> np.ndarray:
    """Grey image in [0, 1] -> (28, 28) float32 in [0, 1], ink bright on black, like an MNIST digit."""
    ink = flatten_background(ink_bright_on_black(grey))
    mask = digit_mask(ink)
    crop = crop_to_digit(ink, mask)
    crop = thicken_thin_strokes(crop, stroke_width(mask))
    return centre_by_mass(fit_in_box(np.clip(crop, 0.0, 1.0))).astype(np.float32)


def preprocess_file(path: str | Path) -> np.ndarray:
    try:
        return mnist_like(load_grey(path))
    except UserError as error:
        message = str(error)
        raise UserError(message if str(path) in message else f"{path}: {message}") from None
