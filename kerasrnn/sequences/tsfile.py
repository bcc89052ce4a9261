"""The UCR/UEA archive's `.ts` format (as sktime and aeon write it), read without either package.

`#` comment lines, then `@` header lines whose keywords come in any case (`@problemName`, `@equalLength`,
`@classLabel true 1 2 3` for classification, `@targetLabel true` for regression, `@timeStamps`), then
`@data`: one series a line, its channels separated by `:`, the values by `,`, the label last; `?` is a
missing value; series may differ in length.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kerasrnn.errors import UserError


def read_ts(path: Path) -> tuple[list[np.ndarray], list, dict]:
    """(series as (steps, channels) float32 arrays, their labels (str, or float for regression), the header)."""
    header, series, labels = {}, [], []
    in_data = False
    with open(path, encoding="utf-8", errors="replace") as lines:
        for number, raw in enumerate(lines, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                in_data = read_header_line(line, header, path, number)
                continue
            values, label = parse_series(line, header, path, number)
            series.append(values)
            labels.append(label)
    if not in_data:
        raise UserError(f"{path}: no @data line: not a .ts file of the UCR/UEA archive")
    if not series:
        raise UserError(f"{path}: the file holds no series after @data")
    return series, labels, header


def read_header_line(line: str, header: dict, path: Path, number: int) -> bool:
    """Record one `@keyword value` line; True at `@data`."""
    if not line.startswith("@"):
        raise UserError(f"{path}, line {number}: expected an @ header line or @data before the series, got {line[:40]!r}")
    keyword, _, value = line[1:].partition(" ")
    keyword = keyword.lower()
    if keyword == "data":
        if header.get("timestamps") == "true":
            raise UserError(f"{path}: @timeStamps true is not read (give the values without time stamps)")
        return True
    if keyword == "classlabel":
        parts = value.split()
        header["kind"] = "class" if parts and parts[0].lower() == "true" else None
        header["classes"] = parts[1:]
    elif keyword == "targetlabel":
        header["kind"] = "value" if value.strip().lower() == "true" else None
    else:
        header[keyword] = (
            value.strip().lower() if keyword in ("timestamps", "univariate", "equallength", "missing") else value.strip()
        )
    return False


def parse_series(line: str, header: dict, path: Path, number: int) -> tuple[np.ndarray, object]:
    parts = line.split(":")
    label = None
    if header.get("kind"):
        if len(parts) < 2:
            raise UserError(f"{path}, line {number}: a series and its label are separated by ':'")
        label = parts.pop().strip()
        if header["kind"] == "value":
            label = parse_number(label, path, number, "target")
        elif header.get("classes") and label not in header["classes"]:
            raise UserError(f"{path}, line {number}: class {label!r} is not among @classLabel's {' '.join(header['classes'])}")
    channels = [[parse_number(value, path, number, f"channel {channel + 1}") for value in part.split(",")]
                for channel, part in enumerate(parts)]  # fmt: skip
    lengths = {len(channel) for channel in channels}
    if len(lengths) != 1:
        raise UserError(f"{path}, line {number}: the channels of one series differ in length ({sorted(lengths)})")
    return np.asarray(channels, dtype=np.float32).T, label


def parse_number(text: str, path: Path, number: int, what: str) -> float:
    text = text.strip()
    if text in ("?", "NaN", "nan", ""):
        return float("nan")
    try:
        return float(text)
    except ValueError:
        raise UserError(f"{path}, line {number}, {what}: {text[:20]!r} is not a number") from None
