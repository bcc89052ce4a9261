"""Result tables as Markdown and CSV: the one renderer `kerasrnn bench` and `kerasrnn sweep` share."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

from kerasrnn.runs import atomic_path


def plain(value) -> str:
    return "" if value is None else str(value)


def markdown(rows: list[dict], columns: list[str], titles: list[str] | None = None, format_cell: Callable = plain) -> str:
    """A Markdown table of `columns` of `rows` (a missing value is None), headed by `titles`."""
    lines = ["| " + " | ".join(titles or columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(format_cell(row.get(key)) for key in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    """`columns` of `rows` as CSV; a missing value is an empty field, other keys are left out."""
    with atomic_path(path) as temporary, temporary.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
