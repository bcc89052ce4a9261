"""Synthetic photographs and scans of handwritten digits, none of them from MNIST, from a seed.

A test set that looks like the world a person's digits come from: each digit is
a pen trajectory (several stroke templates per digit) drawn by a "writer" with
their own slant, proportions, jitter, stroke order, width and pressure, then
rendered as pencil, ballpoint, marker or chalk on paper or a board, under
uneven light and shadows, with noise and JPEG, at 16 to 1000 pixels, as
low-resolution scans, rotated, or printed in several fonts. It is what
`scripts/handwriting_report.py` and the tests read with the pretrained model.

`digit_image(digit, condition, rng)` draws one; `digit_set(seed, per_digit)`
draws a whole set over every condition. The tuning set (seed 0) is the one
preprocessing is tuned on; the held-out set (seed 1) never is.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

TUNING_SEED = 0
HELD_OUT_SEED = 1

# Stroke templates in a unit box (x right, y down): each digit has several ways of writing it, each
# way a list of strokes, each stroke a list of control points a smooth curve passes through.


def _ellipse(cx, cy, rx, ry, start, turn, points=14):
    angles = start + np.linspace(0.0, turn, points)
    return [(cx + rx * np.sin(a), cy - ry * np.cos(a)) for a in angles]


TEMPLATES: dict[int, list[list[list[tuple[float, float]]]]] = {
    0: [
        [_ellipse(0.5, 0.5, 0.4, 0.5, 0.0, -2 * np.pi - 0.3)],
        [_ellipse(0.5, 0.5, 0.33, 0.48, 0.5, 2 * np.pi - 0.2)],
    ],
    1: [
        [[(0.5, 0.0), (0.5, 1.0)]],
        [[(0.35, 0.2), (0.55, 0.0), (0.55, 1.0)]],
        [[(0.35, 0.18), (0.55, 0.0), (0.52, 1.0)], [(0.3, 1.0), (0.78, 1.0)]],
    ],
    2: [
        [[(0.12, 0.25), (0.35, 0.02), (0.7, 0.02), (0.85, 0.25), (0.75, 0.5), (0.4, 0.78), (0.1, 1.0), (0.5, 0.97), (0.95, 1.0)]],
        [[(0.1, 0.2), (0.5, 0.0), (0.85, 0.2), (0.6, 0.6), (0.2, 0.9), (0.15, 1.0), (0.3, 0.88), (0.6, 0.95), (0.9, 0.92)]],
    ],
    3: [
        [
            [
                (0.1, 0.15),
                (0.45, 0.0),
                (0.8, 0.12),
                (0.78, 0.35),
                (0.42, 0.48),
                (0.85, 0.62),
                (0.85, 0.88),
                (0.45, 1.0),
                (0.08, 0.85),
            ]
        ],
        [[(0.12, 0.02), (0.85, 0.0), (0.45, 0.42), (0.85, 0.6), (0.85, 0.88), (0.45, 1.0), (0.1, 0.86)]],
    ],
    4: [
        [[(0.62, 0.0), (0.05, 0.66), (0.95, 0.66)], [(0.7, 0.28), (0.7, 1.0)]],
        [[(0.2, 0.0), (0.12, 0.6), (0.9, 0.6)], [(0.72, 0.05), (0.72, 1.0)]],
    ],
    5: [
        [
            [(0.28, 0.0), (0.22, 0.45), (0.55, 0.38), (0.85, 0.58), (0.82, 0.88), (0.48, 1.0), (0.1, 0.88)],
            [(0.28, 0.0), (0.88, 0.0)],
        ],
        [[(0.88, 0.0), (0.28, 0.02), (0.22, 0.45), (0.58, 0.38), (0.88, 0.62), (0.8, 0.92), (0.45, 1.0), (0.1, 0.86)]],
    ],
    6: [
        [
            [
                (0.75, 0.0),
                (0.38, 0.22),
                (0.15, 0.62),
                (0.28, 0.96),
                (0.65, 0.98),
                (0.86, 0.72),
                (0.62, 0.5),
                (0.3, 0.55),
                (0.17, 0.72),
            ]
        ],
        [[(0.62, 0.0), (0.28, 0.42), (0.15, 0.75), (0.4, 1.0), (0.76, 0.9), (0.76, 0.6), (0.42, 0.55), (0.2, 0.75)]],
    ],
    7: [
        [[(0.05, 0.04), (0.95, 0.0), (0.95, 0.02), (0.45, 1.0)]],
        [[(0.05, 0.04), (0.95, 0.0), (0.95, 0.02), (0.42, 1.0)], [(0.35, 0.5), (0.88, 0.48)]],
        [[(0.05, 0.22), (0.1, 0.02), (0.95, 0.03), (0.62, 0.5), (0.45, 1.0)]],
    ],
    8: [
        [
            [
                (0.8, 0.12),
                (0.5, 0.0),
                (0.2, 0.12),
                (0.25, 0.35),
                (0.75, 0.62),
                (0.8, 0.88),
                (0.5, 1.0),
                (0.2, 0.88),
                (0.25, 0.62),
                (0.75, 0.35),
                (0.8, 0.12),
            ]
        ],
        [_ellipse(0.5, 0.24, 0.24, 0.24, 0.0, 2 * np.pi + 0.2), _ellipse(0.5, 0.72, 0.32, 0.28, 0.0, 2 * np.pi + 0.2)],
    ],  # fmt: skip
    9: [
        [[(0.85, 0.2), (0.55, 0.0), (0.2, 0.12), (0.2, 0.38), (0.5, 0.48), (0.85, 0.3), (0.85, 0.0), (0.8, 0.5), (0.75, 1.0)]],
        [_ellipse(0.5, 0.27, 0.32, 0.27, 1.6, 2 * np.pi + 0.4), [(0.82, 0.25), (0.8, 0.7), (0.55, 1.0), (0.25, 0.92)]],
    ],
}

CONDITIONS = ("ballpoint", "pencil", "marker", "small", "large", "scan-16", "scan-8", "rotated", "shadow", "chalk", "printed")

FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "STIXGeneral.ttf", "cmss10.ttf")


@dataclass
class Pen:
    width: tuple[float, float]  # stroke width, as a fraction of the digit's height
    darkness: tuple[float, float]  # how much light the ink absorbs at full pressure
    grain: float  # 0: smooth ink; towards 1: graphite or chalk that leaves paper showing through
    colour: tuple[int, int, int]


PENS = {
    "ballpoint": Pen((0.035, 0.06), (0.7, 0.95), 0.1, (30, 40, 110)),
    "pencil": Pen((0.04, 0.08), (0.3, 0.6), 0.55, (60, 60, 65)),
    "marker": Pen((0.1, 0.17), (0.85, 1.0), 0.0, (15, 15, 20)),
    "chalk": Pen((0.06, 0.11), (0.6, 0.9), 0.5, (235, 235, 225)),
}


# ---- the writer: a trajectory -------------------------------------------------------------------
def catmull_rom(points: np.ndarray, samples_per_segment: int = 12) -> np.ndarray:
    """A smooth curve through the control points (a pen does not turn corners at infinite speed)."""
    if len(points) < 3:
        t = np.linspace(0.0, 1.0, samples_per_segment * max(1, len(points) - 1) + 1)[:, None]
        return points[0] + t * (points[-1] - points[0])
    padded = np.vstack([2 * points[0] - points[1], points, 2 * points[-1] - points[-2]])
    t = np.linspace(0.0, 1.0, samples_per_segment, endpoint=False)[:, None]
    curve = []
    for p0, p1, p2, p3 in zip(padded[:-3], padded[1:-2], padded[2:-1], padded[3:]):
        curve.append(
            0.5 * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3)
        )
    curve.append(points[-1:])
    return np.vstack(curve)


def written_strokes(digit: int, rng: np.random.Generator, rotation: float) -> list[np.ndarray]:
    """One writer's version of a digit: template, proportions, slant, jitter and a wobble, in the unit box."""
    template = TEMPLATES[digit][rng.integers(len(TEMPLATES[digit]))]
    width_scale, slant = rng.uniform(0.6, 1.05), rng.uniform(-0.1, 0.4)
    angle = np.deg2rad(rotation)
    strokes = []
    for stroke in template:
        points = np.array(stroke, dtype=np.float64) + rng.normal(0.0, 0.025, (len(stroke), 2))
        curve = catmull_rom(points)
        phase, frequency = rng.uniform(0, 2 * np.pi, 2), rng.uniform(2, 5, 2)
        steps = np.linspace(0.0, 1.0, len(curve))[:, None]
        curve = curve + 0.012 * np.sin(2 * np.pi * frequency * steps + phase)  # a hand's small tremor
        x, y = (curve[:, 0] - 0.5) * width_scale, curve[:, 1] - 0.5
        x = x + slant * (-y)  # slanted writers lean the top to the right
        x, y = x * np.cos(angle) - y * np.sin(angle), x * np.sin(angle) + y * np.cos(angle)
        strokes.append(np.stack([x, y], axis=1) if rng.random() < 0.8 else np.stack([x, y], axis=1)[::-1])
    order = rng.permutation(len(strokes))
    return [strokes[i] for i in order]


def ink_of_strokes(strokes, size: int, digit_height: float, centre, pen: Pen, rng) -> np.ndarray:
    """Ink coverage in [0, 1] at (size, size), drawn 4x larger and shrunk, so edges are anti-aliased."""
    scale = 4 if size <= 500 else 2
    big = size * scale
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    width = max(1, int(round(rng.uniform(*pen.width) * digit_height * scale)))
    for stroke in strokes:
        pressure = np.clip(1.0 + 0.25 * np.sin(np.linspace(0, rng.uniform(2, 6), len(stroke)) + rng.uniform(0, 6)), 0.5, 1.0)
        points = (stroke * digit_height + np.asarray(centre)) * scale
        for (x0, y0), (x1, y1), level in zip(points[:-1], points[1:], pressure):
            draw.line([(x0, y0), (x1, y1)], fill=int(255 * level), width=width)
            radius = width / 2
            draw.ellipse([x1 - radius, y1 - radius, x1 + radius, y1 + radius], fill=int(255 * level))
    ink = np.asarray(canvas, dtype=np.float32) / 255.0
    if pen.grain:  # graphite and chalk skip over the paper's grain
        ink = ink * np.clip(1.0 - pen.grain * rng.random(ink.shape, dtype=np.float32) ** 2, 0.0, 1.0)
    return np.asarray(Image.fromarray(ink).resize((size, size), Image.BOX), dtype=np.float32)


def printed_ink(digit: int, size: int, digit_height: float, centre, rng) -> np.ndarray:
    import matplotlib

    font_file = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / FONTS[rng.integers(len(FONTS))]
    font = ImageFont.truetype(str(font_file), size=max(8, int(digit_height * 1.35)))
    canvas = Image.new("L", (size, size), 0)
    ImageDraw.Draw(canvas).text(tuple(float(c) for c in centre), str(digit), fill=255, font=font, anchor="mm")
    return np.asarray(canvas, dtype=np.float32) / 255.0


# ---- the photograph: paper, light, camera -----------------------------------------------------
def lighting(size: int, rng, shadow: bool) -> np.ndarray:
    """Brightness across the page: a gradient, a vignette and, sometimes, a soft-edged shadow."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    direction = rng.uniform(0, 2 * np.pi)
    light = 1.0 - rng.uniform(0.0, 0.25) * ((x - 0.5) * np.cos(direction) + (y - 0.5) * np.sin(direction) + 0.5)
    light -= rng.uniform(0.0, 0.15) * ((x - 0.5) ** 2 + (y - 0.5) ** 2) * 2
    if shadow:
        edge = rng.uniform(0.2, 0.8)
        angle = rng.uniform(0, 2 * np.pi)
        side = (x - 0.5) * np.cos(angle) + (y - 0.5) * np.sin(angle) + 0.5 - edge
        light *= 1.0 - rng.uniform(0.3, 0.55) / (1.0 + np.exp(-side / rng.uniform(0.02, 0.1)))
    return np.clip(light, 0.2, 1.0)


def photographed(ink: np.ndarray, pen: Pen, rng, shadow: bool = False, board: bool = False) -> Image.Image:
    size = ink.shape[0]
    if board:  # a dark green or black board
        surface = np.array(rng.choice([[30, 55, 40], [25, 28, 30]]), dtype=np.float32) + rng.uniform(-8, 8, 3)
    else:
        surface = np.array([rng.uniform(215, 250)] * 3, dtype=np.float32) + rng.uniform(-10, 5, 3)
    alpha = (ink * rng.uniform(*pen.darkness))[..., None]
    pixels = surface * (1 - alpha) + np.asarray(pen.colour, dtype=np.float32) * alpha
    pixels = pixels * lighting(size, rng, shadow)[..., None]
    pixels = pixels + rng.normal(0.0, rng.uniform(1.0, 6.0), pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if rng.random() < 0.4:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2) * size / 200))
    return image


def jpeg(image: Image.Image, rng) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(rng.integers(35, 92)))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def low_resolution_scan(image: Image.Image, pixels: int, rng) -> Image.Image:
    """A scan at `pixels` x `pixels` grey, as stored, or blown up by the scanner's software."""
    small = image.convert("L").resize((pixels, pixels), Image.BOX)
    choice = rng.integers(3)
    if choice == 0:
        return small
    factor = int(rng.integers(4, 9))
    return small.resize((pixels * factor, pixels * factor), Image.NEAREST if choice == 1 else Image.BILINEAR)


def digit_image(digit: int, condition: str, rng: np.random.Generator) -> Image.Image:
    """One digit as a person might photograph or scan it, under `condition` (one of CONDITIONS)."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}: choose from {', '.join(CONDITIONS)}")
    size = {"small": int(rng.integers(16, 33)), "large": int(rng.integers(600, 1001))}.get(condition)
    size = size or (64 if condition.startswith("scan") else int(rng.integers(80, 321)))
    fill = rng.uniform(0.45, 0.8) if condition not in ("small", "scan-8", "scan-16") else rng.uniform(0.6, 0.85)
    digit_height = fill * size
    margin = (size - digit_height) / 2
    centre = (size / 2 + rng.uniform(-0.6, 0.6) * margin, size / 2 + rng.uniform(-0.6, 0.6) * margin)
    pen_name = condition if condition in PENS else str(rng.choice(["ballpoint", "pencil", "marker"]))
    pen = PENS[pen_name]
    if condition == "printed":
        ink = printed_ink(digit, size, digit_height, centre, rng)
    else:
        rotation = rng.uniform(-15, 15) if condition == "rotated" else rng.uniform(-4, 4)
        ink = ink_of_strokes(written_strokes(digit, rng, rotation), size, digit_height, centre, pen, rng)
    image = photographed(ink, pen, rng, shadow=condition == "shadow", board=condition == "chalk")
    if condition.startswith("scan"):
        return low_resolution_scan(image, int(condition.split("-")[1]), rng)
    return jpeg(image, rng) if rng.random() < 0.7 else image


def digit_set(seed: int, per_digit: int, conditions=CONDITIONS):
    """[(condition, digit, image)], `per_digit` images of each digit in each condition, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    return [
        (condition, digit, digit_image(digit, condition, rng))
        for condition in conditions
        for digit in range(10)
        for _ in range(per_digit)
    ]


def read_digits(model, samples) -> tuple[np.ndarray, np.ndarray]:
    """(the 28x28 each sample's image becomes, the digit `model` reads in it), for samples from digit_set.

    An image in which preprocessing finds no digit reads as a blank 28x28 and the digit -1: a miss.
    """
    from kerasrnn.digits import images
    from kerasrnn.errors import UserError

    def read(image) -> np.ndarray:
        try:
            return images.mnist_like(images.grey_of(image))
        except UserError:
            return np.zeros((images.CANVAS, images.CANVAS), dtype=np.float32)

    prepared = np.stack([read(image) for _, _, image in samples])
    predicted = np.asarray(model.predict(prepared, batch_size=256, verbose=0)).argmax(axis=-1)
    return prepared, np.where(prepared.max(axis=(1, 2)) > 0, predicted, -1)
