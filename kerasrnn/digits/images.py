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
MNIST_STROKE = 2.8  # MNIST's median stroke width in pixels, as stroke_width measures it (docs/handwriting.md)
WORK_SCALE = 4  # strokes are measured and widened at 4x MNIST's scale, where a pixel is a quarter stroke
WORKING_MIN, WORKING_MAX = 160, 640  # the longer side of the image while finding the digit
BACKGROUND_FRACTION = 0.3  # paper is estimated over windows this fraction of the image: wider than strokes
BACKGROUND_PIXELS = 3  # ...and at least this many of the original's pixels, on a tiny scan upsampled
BRIDGE_FRACTION = 0.01  # gaps in grainy strokes this fraction of the image are bridged when finding the digit
SPECK_FRACTION = 0.1  # parts with less ink than this fraction of the strongest part are specks
MAX_PIXELS = 50_000_000  # larger than any phone photo; more is refused before decoding (decompression bombs)
CORE_PERCENTILE = 60  # ink above this percentile of the digit's pixels saturates, as MNIST's cores do
LOCAL_PEAK_FRACTION = 0.03  # ...or above LOCAL_CORE of the peak within this fraction of the image, if fainter
LOCAL_CORE = 0.8
SMOOTH_LIGHT_MISFIT = 0.02  # light a quadratic surface fits this well (mean error / light) is divided out


def load_grey(path: str | Path) -> np.ndarray:
    """Any common image file -> float grey in [0, 1]; one clear error for missing, empty or non-image files."""
    path = Path(path)
    problem = file_problem(path)
    if problem:
        raise UserError(problem)
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                raise UserError(f"image too large: {path} has {image.width}x{image.height} pixels (at most {MAX_PIXELS:,})")
            grey = grey_of(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise UserError(f"not a readable image: {path} ({type(error).__name__})") from None
    if grey.size == 0 or min(grey.shape) < 2:
        raise UserError(f"image is too small to hold a digit: {path}")
    return grey


def file_problem(path: str | Path) -> str | None:
    """Why `path` cannot be an image file (missing, a folder, empty), without opening it; None if it may be one."""
    path = Path(path)
    if not path.exists():
        return f"image not found: {path} (an mnist model reads image files of single digits: png, jpg, ...)"
    if path.is_dir():
        return f"expected an image file, got a directory: {path}"
    if path.stat().st_size == 0:
        return f"image file is empty: {path}"
    return None


def grey_of(image: Image.Image) -> np.ndarray:
    """A PIL image -> float grey in [0, 1], upright, transparent parts as white paper."""
    image = ImageOps.exif_transpose(image)  # phone photos store their rotation in EXIF
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)  # transparent = paper
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def undo_upscale(grey: np.ndarray) -> np.ndarray:
    """A tiny scan blown up by the scanner's software (repeated pixels, bilinear or bicubic) is brought
    back to its own pixels, which are then upsampled smoothly like any small image."""
    height, width = grey.shape
    if max(height, width) > WORKING_MAX:  # a photo, not a blown-up scan: it is shrunk anyway
        return grey
    for factor in range(min(16, min(grey.shape) // 4), 1, -1):
        if height % factor or width % factor:
            continue
        # each small pixel is where the upscale passes through it: the middle of its block
        first, second = (factor - 1) // 2, factor // 2
        small = (grey[first::factor, first::factor] + grey[second::factor, second::factor]) / 2
        for resample in (Image.NEAREST, Image.BILINEAR, Image.BICUBIC):
            back = np.asarray(Image.fromarray(small).resize((width, height), resample))
            if np.abs(back - grey)[factor:-factor, factor:-factor].mean() < 0.004:
                return small
    return grey


def working_size(grey: np.ndarray) -> np.ndarray:
    """Upsample small inputs smoothly, before anything else, and shrink huge photos (speed, nothing lost)."""
    longest = max(grey.shape)
    factor = WORKING_MIN / longest if longest < WORKING_MIN else WORKING_MAX / longest if longest > WORKING_MAX else 1.0
    if factor == 1.0:
        return grey
    size = (max(2, round(grey.shape[1] * factor)), max(2, round(grey.shape[0] * factor)))
    resample = Image.BICUBIC if factor > 1 else Image.BOX  # bicubic turns a blocky scan into smooth strokes
    return np.clip(np.asarray(Image.fromarray(grey).resize(size, resample), dtype=np.float32), 0.0, 1.0)


def dark_ink_on_light(grey: np.ndarray) -> bool:
    """Dark ink on paper, or light chalk on a board?

    Ink is what stands out from its surroundings (the median around it): pens make dark outliers,
    chalk bright ones. Where neither clearly dominates (a digit filling the image), paper is the
    bright case and a board the dark one.
    """
    small = grey if max(grey.shape) <= 64 else np.asarray(Image.fromarray(grey).reduce(max(grey.shape) // 48))
    surroundings = ndimage.median_filter(small, size=max(3, int(BACKGROUND_FRACTION * min(small.shape))))
    darker, brighter = np.percentile(surroundings - small, 99.5), np.percentile(small - surroundings, 99.5)
    if darker > 2 * brighter or brighter > 2 * darker:
        return bool(darker > brighter)
    return bool(np.median(grey) > 0.45)


def quadratic_light(background: np.ndarray, margin: int) -> tuple[np.ndarray, float]:
    """A smooth surface (a light gradient and a vignette) fitted to a background estimate away from the
    image's edges, evaluated `margin` pixels beyond them; and how badly it fits (mean error / mean light).

    Away from the edges the closing's estimate is sound; near them it is not (see `paper_estimate`).
    """
    height, width = background.shape
    y, x = np.mgrid[-margin : height + margin, -margin : width + margin].astype(np.float64)
    y, x = y / height - 0.5, x / width - 0.5
    terms = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1)
    inner = (slice(2 * margin, height), slice(2 * margin, width))  # the image less `margin` at each edge
    measured = background[margin : height - margin, margin : width - margin]
    if measured.size < 36:
        return np.full(x.shape, max(float(np.median(background)), 0.02), dtype=np.float32), 1.0
    coefficients, *_ = np.linalg.lstsq(terms[inner].reshape(-1, 6), measured.reshape(-1).astype(np.float64), rcond=None)
    light = np.maximum(terms @ coefficients, 0.02).astype(np.float32)
    misfit = float(np.abs(measured - light[inner]).mean() / max(float(light[inner].mean()), 0.05))
    return light, misfit


def paper_estimate(morphology, grey: np.ndarray, size: int, mirror_edges: bool = True) -> np.ndarray:
    """The paper (or board) under the digit: `morphology` (a closing or an opening) wider than any stroke.

    A closing follows the paper where it is seen and bridges the ink, but at the image's edge it must
    guess what lies beyond: mirrored, a page darkening toward its edge turns into a valley that the
    closing fills (the edge read as ink); point-mirrored, ink touching the edge turns into a dark band
    that it keeps (the stroke lost). So the smooth part of the light is fitted first. When it explains
    the background (a gradient, a vignette), it is divided out: the closing sees flat paper, and much
    ink on a small image cannot bias it. When it does not (a shadow's edge, which the closing follows
    exactly), the image is continued past its edges by that light times its mirrored remainder, or, with
    `mirror_edges` off, by the light alone: where the window is only a few strokes wide (a tiny scan),
    a thick stroke along the edge (an 8x8 scan's base of a 2) mirrored is a band the closing keeps.
    """
    pad = size // 2 + 1
    light, misfit = quadratic_light(morphology(grey, size=size), pad)
    inside = light[pad:-pad, pad:-pad]
    if misfit < SMOOTH_LIGHT_MISFIT:
        return morphology(grey / inside, size=size) * inside
    extended = np.pad(grey / inside, pad, mode="symmetric") * light if mirror_edges else light.copy()
    extended[pad:-pad, pad:-pad] = grey
    return morphology(extended, size=size)[pad:-pad, pad:-pad]


def ink_from_background(grey: np.ndarray, pixel: float = 1.0) -> np.ndarray:
    """How much each pixel differs from the paper (or board) around it, in [0, 1], grey levels kept.

    `pixel`: how many of `grey`'s pixels one pixel of the original spans (a small image upsampled).
    The paper is estimated over windows wider than any stroke, and a stroke is never thinner than one
    original pixel, which upsampling blurs over two. Dark ink is measured as a fraction of the local
    paper brightness, so a shadow over part of a stroke does not make it fainter.
    """
    few_pixels = round(BACKGROUND_PIXELS * pixel)
    size = min(max(3, int(BACKGROUND_FRACTION * min(grey.shape)), few_pixels), min(grey.shape))
    mirror_edges = size > few_pixels  # the window is many strokes wide, not a few of a tiny scan's pixels
    if dark_ink_on_light(grey):
        paper = paper_estimate(ndimage.grey_closing, grey, size, mirror_edges)
        return np.clip(1.0 - grey / np.maximum(paper, 0.05), 0.0, 1.0)
    board = paper_estimate(ndimage.grey_opening, grey, size, mirror_edges)
    return np.clip(grey - board, 0.0, 1.0)


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
    """Where the digit is: ink above Otsu's threshold, gaps in grainy strokes bridged, specks dropped, and
    lines running into the image's edge (a shadow's border, the edge of the page) dropped beside a digit.

    Only for finding the digit: the pixels the model reads keep their grey levels.
    """
    if ink.max() <= 0.02:
        raise UserError("no digit found: the image is blank")
    mask = ink > otsu_threshold(ink)
    bridge = max(1, round(BRIDGE_FRACTION * max(ink.shape)))
    joined = ndimage.binary_closing(mask, structure=np.ones((3, 3)), iterations=bridge) | mask
    labels, count = ndimage.label(joined, structure=np.ones((3, 3)))
    if count == 0:
        raise UserError("no digit found: the image has no ink")
    strength = ndimage.sum(ink * mask, labels, index=range(1, count + 1))  # ink, not area: a faint blot loses
    edge_lines = [
        edge_line(labels[box] == index + 1, box, ink.shape, bridge) for index, box in enumerate(ndimage.find_objects(labels))
    ]
    digit_parts = [value for value, is_edge in zip(strength, edge_lines) if not is_edge]
    strongest = max(digit_parts) if digit_parts else strength.max()
    keep = [
        index + 1
        for index, value in enumerate(strength)
        if value >= SPECK_FRACTION * strongest and (not edge_lines[index] or value >= strongest)
    ]
    return np.isin(labels, keep) & mask


def edge_line(part: np.ndarray, box: tuple[slice, slice], shape: tuple[int, int], margin: int) -> bool:
    """A long thin part that reaches the image's edge: the border of a shadow or of the page, not a stroke."""
    height, width = box[0].stop - box[0].start, box[1].stop - box[1].start
    at_edge = box[0].start < margin or box[1].start < margin or box[0].stop > shape[0] - margin or box[1].stop > shape[1] - margin
    return bool(at_edge and min(height, width) <= 0.25 * max(height, width) and part.any())


def crop_to_digit(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The digit's box, its ink kept near the mask only, paper noise at 0 and stroke cores saturated."""
    rows, cols = np.nonzero(mask)
    near = ndimage.binary_dilation(mask, iterations=max(1, round(0.02 * max(ink.shape))))
    floor = float(np.percentile(ink[~near], 99)) if np.any(~near) else 0.0  # the paper's own noise
    core = float(np.percentile(ink[mask], CORE_PERCENTILE))
    # A thin line on a coarse grid is darker where it crosses a pixel's centre than between two: each
    # stretch of stroke saturates at its own peak (within a factor of two of the digit's core), not gaps.
    local_peak = ndimage.maximum_filter(ink, size=2 * max(1, round(LOCAL_PEAK_FRACTION * max(ink.shape))) + 1)
    core = np.clip(LOCAL_CORE * local_peak, core / 2, core)
    stretched = np.clip((ink - floor) / np.maximum(core - floor, 1e-3), 0.0, 1.0) * near
    margin = max(1, round(0.03 * max(ink.shape)))
    top, left = max(0, rows.min() - margin), max(0, cols.min() - margin)
    return stretched[top : rows.max() + margin + 1, left : cols.max() + margin + 1]


def scaled_to_box(crop: np.ndarray, box: int) -> np.ndarray:
    """Scale so the digit's longer side is `box` pixels, aspect ratio kept, anti-aliased."""
    rows, cols = np.nonzero(crop > 0.05)
    crop = crop[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] if len(rows) else crop
    height, width = crop.shape
    scale = box / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resample = Image.BICUBIC if scale > 1 else Image.LANCZOS
    return np.clip(np.asarray(Image.fromarray(crop.astype(np.float32)).resize(size, resample), dtype=np.float32), 0, 1)


def resaturated(digit: np.ndarray) -> np.ndarray:
    """Shrinking a hair-thin line dims it: bring its cores back to full ink before measuring its width."""
    inked = digit[digit > 0.05]
    peak = float(np.percentile(inked, 90)) if inked.size else 1.0
    return np.clip(digit / max(peak, 0.05), 0.0, 1.0)


def stroke_width(digit: np.ndarray) -> float:
    """Mean stroke width in pixels: across a stroke of width w the distance to its edge runs 0..w/2."""
    mask = digit > 0.5
    if not mask.any():
        return 0.0
    return 4.0 * float(ndimage.distance_transform_edt(mask)[mask].mean())


def disk(radius: int) -> np.ndarray:
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return x**2 + y**2 <= radius**2 + radius


def match_stroke_width(digit: np.ndarray) -> np.ndarray:
    """Widen thin pen lines and thin marker strokes toward MNIST's stroke width (grey morphology)."""
    target = MNIST_STROKE * WORK_SCALE
    width = stroke_width(digit)
    padded = np.pad(digit, WORK_SCALE * 2)
    if width < target / 1.25:
        radius = max(1, round((target - width) / 2))
        return ndimage.grey_dilation(padded, footprint=disk(radius))
    if width > target * 1.6:  # thinning gently: a font's thin diagonal must survive its thick stems
        radius = max(1, round((width - target) / 4))
        thinner = ndimage.grey_erosion(padded, footprint=disk(radius))
        return thinner if stroke_width(thinner) > target / 2 else padded  # never erase a stroke
    return padded


def shrink(digit: np.ndarray) -> np.ndarray:
    """From the working scale down to MNIST's 20x20 box, anti-aliased."""
    if not (digit > 0.05).any():
        raise UserError("no digit found: the ink is too faint to tell from the paper")
    return scaled_to_box(digit, DIGIT_BOX)  # trims to the ink first


def centre_by_mass(digit: np.ndarray) -> np.ndarray:
    """Place in 28x28 with the centre of mass at the centre, as MNIST did."""
    canvas = np.zeros((CANVAS, CANVAS), dtype=np.float32)
    top, left = (CANVAS - digit.shape[0]) // 2, (CANVAS - digit.shape[1]) // 2
    canvas[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    row, col = ndimage.center_of_mass(canvas)
    shift = (np.round((CANVAS - 1) / 2 - row), np.round((CANVAS - 1) / 2 - col))
    return np.clip(ndimage.shift(canvas, shift, order=0, mode="constant"), 0.0, 1.0)


def preprocessing_steps(grey: np.ndarray) -> dict[str, np.ndarray]:
    """Every step from a grey photo to the 28x28 the model reads, by name, in order (what --show draws)."""
    steps = {"input": grey}
    native = undo_upscale(grey)
    steps["working size"] = working_size(native)
    steps["ink"] = ink_from_background(steps["working size"], max(steps["working size"].shape) / max(native.shape))
    mask = digit_mask(steps["ink"])
    steps["digit found"] = np.where(mask, 1.0, 0.35 * steps["ink"])
    steps["cropped, contrast"] = crop_to_digit(steps["ink"], mask)
    steps["stroke width"] = match_stroke_width(resaturated(scaled_to_box(steps["cropped, contrast"], DIGIT_BOX * WORK_SCALE)))
    steps["28x28"] = centre_by_mass(shrink(steps["stroke width"])).astype(np.float32)
    return steps


def mnist_like(grey: np.ndarray) -> np.ndarray:
    """Grey image in [0, 1] -> (28, 28) float32 in [0, 1], ink bright on black, like an MNIST digit."""
    return preprocessing_steps(grey)["28x28"]


def preprocess_file(path: str | Path) -> np.ndarray:
    return file_preprocessing_steps(path)["28x28"]


def file_preprocessing_steps(path: str | Path) -> dict[str, np.ndarray]:
    """preprocessing_steps of an image file; errors name the file."""
    try:
        return preprocessing_steps(load_grey(path))
    except UserError as error:
        message = str(error)
        raise UserError(message if str(path) in message else f"{path}: {message}") from None
