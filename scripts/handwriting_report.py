"""Accuracy of an MNIST run on synthetic photographed and scanned handwriting, per condition (Markdown).

    python scripts/handwriting_report.py [RUN] [--set held-out|tuning] [--per-digit 20] [--mistakes FILE]

RUN defaults to saved_models/mnist-pretrained. The images come from
kerasrnn.digits.handwriting (none from MNIST): the held-out set (seed 1) is never
tuned on; the tuning set (seed 0) is the one to look at while changing the
preprocessing. `--mistakes` saves each misread image beside the 28x28 the model read.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from kerasrnn.digits import handwriting
from kerasrnn.serving import prediction
from kerasrnn.studies.reports import machine_line
from kerasrnn.studies.tables import markdown

SEEDS = {"tuning": handwriting.TUNING_SEED, "held-out": handwriting.HELD_OUT_SEED}


def read_set(run: Path, seed: int, per_digit: int):
    """[(condition, digit, image, 28x28 read, predicted)] for the whole set."""
    _, _, model = prediction.load_predictor(run)
    samples = handwriting.digit_set(seed, per_digit)
    prepared, predicted = handwriting.read_digits(model, samples)
    return [(c, d, image, read, int(p)) for (c, d, image), read, p in zip(samples, prepared, predicted)]


def save_mistakes(path: Path, results) -> None:
    from PIL import Image, ImageDraw

    wrong = [r for r in results if r[1] != r[4]][:120]
    tile = 84
    sheet = Image.new("L", (tile * 2 * 6, tile * ((len(wrong) + 5) // 6 or 1)), 0)
    for index, (condition, digit, image, read, predicted) in enumerate(wrong):
        x, y = (index % 6) * tile * 2, (index // 6) * tile
        sheet.paste(image.convert("L").resize((tile, tile)), (x, y))
        sheet.paste(Image.fromarray(np.uint8(read * 255)).resize((tile, tile), Image.NEAREST), (x + tile, y))
        ImageDraw.Draw(sheet).text((x + 2, y + 2), f"{condition} {digit}->{predicted}", fill=128)
    sheet.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", type=Path, default=Path("saved_models/mnist-pretrained"))
    parser.add_argument("--set", choices=sorted(SEEDS), default="held-out")
    parser.add_argument("--per-digit", type=int, default=20, help="images of each digit in each condition")
    parser.add_argument("--mistakes", type=Path, help="save a sheet of the misread images here")
    args = parser.parse_args()
    started = time.perf_counter()
    results = read_set(args.run, SEEDS[args.set], args.per_digit)
    right, total = Counter(), Counter()
    for condition, digit, _, _, predicted in results:
        total[condition] += 1
        right[condition] += digit == predicted
    rows = [{"condition": c, "images": total[c], "accuracy": f"{right[c] / total[c]:.1%}"} for c in handwriting.CONDITIONS]
    handwritten = [c for c in handwriting.CONDITIONS if c != "printed"]
    rows.append({
        "condition": "**all handwritten**",
        "images": sum(total[c] for c in handwritten),
        "accuracy": f"**{sum(right[c] for c in handwritten) / sum(total[c] for c in handwritten):.1%}**",
    })  # fmt: skip
    if args.mistakes:
        save_mistakes(args.mistakes, results)
    print(f"{machine_line()}, {time.perf_counter() - started:.0f} s")
    print(f"Run: {args.run}; set: {args.set} (seed {SEEDS[args.set]}), {len(results)} images\n")
    print(markdown(rows, ["condition", "images", "accuracy"]))
    print(f"\n`python scripts/handwriting_report.py {args.run} --set {args.set} --per-digit {args.per_digit}`", file=sys.stderr)


if __name__ == "__main__":
    main()
