"""Files of recorded sequences -> `Recorded`: one (steps, channels) float32 array a sequence, and its targets.

- long CSV, TSV or Parquet (one row a step; `id` names the sequence column, `order` sorts the steps, else
  file order; the features are the other numeric columns, or `features`; `label` the target column);
- wide CSV, TSV or Parquet (one row a univariate series: the label column and the values in column order,
  empty cells at the end of a shorter series);
- NPZ (`x` (N, T, C) with optional `lengths` (N,), or `x` a list of (T, C) arrays; `y` (N,) or (N, T));
- the UCR/UEA archive's `.ts` (kerasrnn.sequences.tsfile), with no options at all.

pyarrow reads the tables (a 2-million-row CSV in seconds, as float32: docs/sequences.md); every refusal is one
line naming the file, row and column, and what to do.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kerasrnn.errors import UserError

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": ",", ".parquet": None, ".pq": None}
SUFFIXES = (*TABLE_SUFFIXES, ".npz", ".ts")
LABEL_NAMES = ("label", "class", "target", "y")  # a wide file's label column when `label` is not given
MISSING = ("error", "zero", "previous")  # what a missing value becomes: refused, 0, the step before's (0 at the start)
MEMORY_FRACTION = 0.5  # of the machine's available memory, the most a file's float32 values may take


@dataclass
class Recorded:
    """Sequences read from a file: `x` a list of (steps, channels) float32 arrays, `y` one target a sequence
    (a (steps,) array each for per-step labels), `ids` their names, `features` the channels' names."""

    x: list
    y: list
    ids: list
    features: list
    per_step: bool = False
    source: str = ""
    notes: list = field(default_factory=list)


def read_sequences(path, id: str | None = None, order: str | None = None, label: str | None = None,
                   features: str | list | None = None, missing: str = "error", allow_pickle: bool = True,
                   needs_label: bool = True) -> Recorded:  # fmt: skip
    """Read any supported file; `needs_label=False` for files to predict, whose label column may be absent."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"no such file: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a folder: give a file of sequences ({', '.join(SUFFIXES)})")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise UserError(f"{path}: unknown kind of file {suffix or '(no suffix)'!r}: give one of {', '.join(SUFFIXES)}")
    if path.stat().st_size == 0:
        raise UserError(f"{path} is empty")
    if missing not in MISSING:
        raise UserError(f"missing must be one of {', '.join(MISSING)}, got {missing!r}")
    if suffix == ".ts":
        recorded = read_ts_file(path)
    elif suffix == ".npz":
        recorded = read_npz(path, allow_pickle)
    elif (
        id is not None
        and TABLE_SUFFIXES[suffix] is not None
        and (streamed := long_csv_streamed(path, id, order, label, features))
    ):
        recorded = streamed
    else:
        table = Columns(read_table(path, text_columns={id, order, label} - {None}))
        names = list(table.column_names)
        if id is not None:
            recorded = long_sequences(path, table, names, id, order, label, features, needs_label)
        else:
            refuse_long_only_options(path, order)
            recorded = wide_sequences(path, table, names, label, features, needs_label)
    recorded.source = str(path)
    recorded.x = [fill_missing(path, recorded, index, missing) for index in range(len(recorded.x))]
    check_recorded(path, recorded, needs_label)
    return recorded


# ---- tables --------------------------------------------------------------------------------------------
class Columns:
    """A table's columns, each let go once read (`pop`): a large file's values are held once, not twice."""

    def __init__(self, table):
        self.num_rows, self.column_names = table.num_rows, table.column_names
        self.columns = {name: table.column(name) for name in table.column_names}

    def column(self, name: str):
        return self.columns[name]

    def pop(self, name: str):
        return self.columns.pop(name)


def read_table(path: Path, text_columns: set = frozenset()):
    """A pyarrow Table of the file, refused when its values would not fit in memory. A CSV's columns other than
    `text_columns` are read as float32 straight away (half of float64's memory); where one is not numbers, the
    file is read again as it is, so that the cell can be named."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    require_memory(path, path.stat().st_size * (1 if path.suffix.lower() in (".parquet", ".pq") else 0.5))
    try:
        if TABLE_SUFFIXES[path.suffix.lower()] is None:
            return pq.read_table(path)
        delimiter = TABLE_SUFFIXES[path.suffix.lower()]
        options, reading = pacsv.ParseOptions(delimiter=delimiter), pacsv.ReadOptions(block_size=1 << 24)
        header = csv_header(path, delimiter)
        typed = pacsv.ConvertOptions(column_types={name: pa.float32() for name in header if name and name not in text_columns})
        try:
            return pacsv.read_csv(path, parse_options=options, read_options=reading, convert_options=typed)
        except pa.ArrowInvalid:
            return pacsv.read_csv(path, parse_options=options, read_options=reading)
    except (pa.ArrowInvalid, OSError) as error:
        first = str(error).strip().splitlines()[0][:200]
        raise UserError(f"{path} could not be read as a table: {first}") from None


def csv_header(path: Path, delimiter: str) -> list[str]:
    """A CSV's column names from its first line, without parsing the rest."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        return [name.strip().strip('"') for name in handle.readline().rstrip("\r\n").split(delimiter)]


def require_memory(path: Path, expected_bytes: float) -> None:
    available = available_memory()
    if available and expected_bytes > MEMORY_FRACTION * available:
        raise UserError(
            f"{path} is too large for this machine's memory: about {expected_bytes / 2**30:.1f} GiB of values, "
            f"{available / 2**30:.1f} GiB available: split the file or use a machine with more memory"
        )


def available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def column_name(path: Path, names: list[str], wanted: str, what: str) -> str:
    if wanted in names:
        return wanted
    close = difflib.get_close_matches(wanted, names, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(name) for name in close)}? " if close else ""
    raise UserError(f"{path}: no column {wanted!r} ({what}): {hint}its columns are {', '.join(names[:20])}")


def numeric_columns(path: Path, table, names: list[str]) -> np.ndarray:
    """The columns `names` as one (rows, len(names)) float32 array; a non-numeric cell is refused with its row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = np.empty((table.num_rows, len(names)), dtype=np.float32)
    for index, name in enumerate(names):
        column = table.column(name)
        if pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_null(column.type):
            values[:, index] = column.cast(pa.float32()).to_numpy(zero_copy_only=False)
            continue
        if pa.types.is_boolean(column.type):
            values[:, index] = column.cast(pa.float32()).to_numpy(zero_copy_only=False)
            continue
        text = pc.utf8_trim_whitespace(column.cast(pa.string()))
        try:
            values[:, index] = pc.cast(text, pa.float32()).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:
            raise UserError(first_non_number(path, table, name)) from None
    if hasattr(table, "pop"):
        for name in names:
            table.pop(name)  # read once: the Arrow copies go as soon as numpy has them
    return values


def count_rows(path: Path) -> int:
    """The data rows of a CSV (its lines less the header), counted without parsing it."""
    lines, last = 0, b"\n"
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 24), b""):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n") - 1


def long_csv_streamed(path: Path, id_name: str, order: str | None, label: str | None, features) -> Recorded | None:
    """A long CSV read block by block into one preallocated float32 array: the values are held once (a file of
    2 million rows of 12 features: docs/sequences.md). None where the file needs the whole-table path (a
    column that is not numbers, a column name to correct): that path says what is wrong."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    delimiter = TABLE_SUFFIXES[path.suffix.lower()]
    header = csv_header(path, delimiter)
    text = {id_name, order, label} - {None}
    wanted = [name.strip() for name in features.split(",")] if isinstance(features, str) else list(features or [])
    if not text <= set(header) or not set(wanted) <= set(header):
        return None
    chosen = wanted or [name for name in header if name not in text]
    rows = count_rows(path)
    require_memory(path, 4 * rows * len(chosen))
    values = np.empty((rows, len(chosen)), dtype=np.float32)
    ids, steps, labels, position = [], [], [], 0
    types = {name: pa.float32() for name in chosen}
    try:
        reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 24),
                                parse_options=pacsv.ParseOptions(delimiter=delimiter),
                                convert_options=pacsv.ConvertOptions(column_types=types, include_columns=[*chosen, *text]))  # fmt: skip
        for batch in reader:
            count = batch.num_rows
            for index, name in enumerate(chosen):
                values[position : position + count, index] = batch.column(name).to_numpy(zero_copy_only=False)
            ids.append(batch.column(id_name))
            if order:
                steps.append(batch.column(order).cast(pa.float64()).to_numpy(zero_copy_only=False))
            if label:
                labels.append(batch.column(label))
            position += count
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if position != rows:
        return None
    id_column, label_column = pa.chunked_array(ids), pa.chunked_array(labels) if label else None
    parts = {"ids": id_column, "steps": np.concatenate(steps) if order else None, "labels": label_column}
    return group_rows(path, values, parts, id_name, label, chosen)


def first_non_number(path: Path, table, name: str) -> str:
    cells = table.column(name).to_pylist()
    for row, cell in enumerate(cells):
        try:
            if cell is not None and str(cell).strip() != "":
                float(cell)
        except ValueError:
            line = f"row {row + 2}" if path.suffix.lower() in (".csv", ".tsv", ".txt") else f"row {row + 1}"
            return f"{path}, {line}, column {name!r}: {str(cell)[:20]!r} is not a number (features are numbers; name the feature columns with --features)"
    return f"{path}, column {name!r}: not a column of numbers"


def feature_names(path: Path, table, names: list[str], features, taken: set[str]) -> list[str]:
    """The feature columns asked for, else every numeric column not otherwise taken."""
    import pyarrow as pa

    if features:
        wanted = features.split(",") if isinstance(features, str) else list(features)
        return [column_name(path, names, name.strip(), "a feature") for name in wanted if name.strip()]
    for name in names:  # a column of numbers with a stray word in it is refused, not silently left out
        if name not in taken and not is_numeric(table.column(name).type, pa) and mostly_numbers(table.column(name)):
            raise UserError(first_non_number(path, table, name))
    chosen = [name for name in names if name not in taken and is_numeric(table.column(name).type, pa)]
    if not chosen:
        raise UserError(
            f"{path}: no numeric column to read as features besides {', '.join(sorted(taken))}: name them with --features"
        )
    return chosen


def mostly_numbers(column, share: float = 0.9) -> bool:
    """Whether nine in ten of a text column's cells are numbers (a numeric column with a bad cell)."""
    cells = [cell for cell in column.to_pylist()[:10000] if cell is not None and str(cell).strip()]
    numbers = 0
    for cell in cells:
        try:
            float(cell)
            numbers += 1
        except ValueError:
            pass
    return bool(cells) and numbers >= share * len(cells)


def is_numeric(kind, pa) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)


def long_sequences(path, table, names, id_name, order, label, features, needs_label) -> Recorded:
    """One row a step: grouped by `id_name` in order of first appearance, each sorted by `order` (stable)."""
    id_name = column_name(path, names, id_name, "--id, the sequence of each row")
    order_name = column_name(path, names, order, "--order, the step of each row") if order else None
    label_name = resolve_label(path, names, label, needs_label, long=True)
    taken = {id_name, *([order_name] if order_name else []), *([label_name] if label_name else [])}
    chosen = feature_names(path, table, names, features, taken)
    require_memory(path, 4 * table.num_rows * len(chosen))
    values = numeric_columns(path, table, chosen)
    parts = {
        "ids": table.column(id_name),
        "steps": numeric_columns(path, table, [order_name])[:, 0] if order_name else None,
        "labels": table.column(label_name) if label_name else None,
    }
    return group_rows(path, values, parts, id_name, label_name, chosen)


def group_rows(path: Path, values: np.ndarray, parts: dict, id_name: str, label_name: str | None, chosen: list) -> Recorded:
    """Rows (their `values`, and `parts`: the id column, the steps to sort by or None, the label column or None)
    as sequences: in order of first appearance, each sorted by its steps (stable); views of `values` where the
    file is already in that order."""
    id_column = parts["ids"]
    if id_column.null_count:
        row = id_column.to_pylist().index(None)
        raise UserError(f"{path}, row {row + 2}, column {id_name!r}: no sequence id: every row needs one")
    ids = np.asarray(id_column.to_numpy(zero_copy_only=False))
    unique, first_seen, codes = np.unique(ids, return_index=True, return_inverse=True)
    del ids
    rank = np.empty(len(unique), dtype=np.int64)
    rank[np.argsort(first_seen, kind="stable")] = np.arange(len(unique))  # sequences in order of first appearance
    keys = rank[codes]
    del codes
    ordering = np.lexsort((parts["steps"], keys)) if parts["steps"] is not None else np.argsort(keys, kind="stable")
    in_order = np.array_equal(ordering, np.arange(len(ordering)))
    if not in_order:
        values, keys = values[ordering], keys[ordering]
    starts = np.searchsorted(keys, np.arange(len(unique)))
    x = np.split(values, starts[1:])
    sequence_ids = [str(value) for value in unique[np.argsort(first_seen, kind="stable")]]
    recorded = Recorded(x=x, y=[], ids=sequence_ids, features=chosen)
    if label_name:
        labels = column_labels(parts["labels"])
        labels = labels if in_order else labels[ordering]
        per_step = np.split(labels, starts[1:])
        recorded.per_step = any(len(set(steps_of.tolist())) > 1 for steps_of in per_step)
        recorded.y = per_step if recorded.per_step else [steps_of[0] for steps_of in per_step]
    return recorded


def label_values(table, name: str) -> np.ndarray:
    """A label column as numbers where it holds numbers, else as strings."""
    return column_labels(table.column(name))


def column_labels(column) -> np.ndarray:
    import pyarrow as pa

    if is_numeric(column.type, pa):
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    return np.asarray([None if cell is None else str(cell).strip() for cell in column.to_pylist()], dtype=object)


def resolve_label(path, names, label, needs_label, long: bool) -> str | None:
    if label:
        if label in names or needs_label:
            return column_name(path, names, label, "--label, the target")
        return None  # a file to predict: its labels may be left out
    if not long:
        found = [name for name in names if name.lower() in LABEL_NAMES]
        if found:
            return found[0]
    if needs_label:
        kind = "the target of each row" if long else "the target of each series"
        raise UserError(f"{path}: name the label column ({kind}) with --label (its columns: {', '.join(names[:20])})")
    return None


def refuse_long_only_options(path: Path, order) -> None:
    if order:
        raise UserError(f"{path}: --order sorts the rows of one sequence in a long file: give --id too (the sequence column)")


def wide_sequences(path, table, names, label, features, needs_label) -> Recorded:
    """One row a univariate series: its values in column order, trailing empty cells ending a shorter one."""
    label_name = resolve_label(path, names, label, needs_label, long=False)
    chosen = feature_names(path, table, names, features, {label_name} if label_name else set())
    require_memory(path, 4 * table.num_rows * len(chosen))
    values = numeric_columns(path, table, chosen)
    x = []
    for row, series in enumerate(values):
        present = ~np.isnan(series)
        length = int(np.flatnonzero(present)[-1]) + 1 if present.any() else 0
        x.append(series[:length, None].copy())
        if length == 0:
            raise UserError(f"{path}, row {row + 2}: a series of no steps (every value empty)")
    recorded = Recorded(x=x, y=[], ids=[str(index) for index in range(len(x))], features=["value"])
    recorded.notes.append(f"wide file: {len(chosen)} value columns, one univariate series a row")
    if label_name:
        recorded.y = list(label_values(table, label_name))
    return recorded


# ---- NPZ and .ts ----------------------------------------------------------------------------------------
def read_npz(path: Path, allow_pickle: bool) -> Recorded:
    try:
        archive = np.load(path, allow_pickle=allow_pickle)
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise UserError(f"{path}: a list of arrays is read only from a local file (it is stored pickled)") from None
        raise UserError(f"{path} is not a readable NPZ file: {error}") from None
    except (OSError, EOFError) as error:
        raise UserError(f"{path} is not a readable NPZ file ({type(error).__name__})") from None
    if "x" not in archive.files:
        raise UserError(f"{path}: an NPZ file of sequences holds x (and y): it holds {', '.join(archive.files) or 'nothing'}")
    x = archive["x"]
    if x.dtype == object:
        sequences = [np.asarray(item, dtype=np.float32) for item in x]
        sequences = [item[:, None] if item.ndim == 1 else item for item in sequences]
    else:
        if x.ndim == 2:
            x = x[..., None]
        if x.ndim != 3:
            raise UserError(f"{path}: x must be (sequences, steps, channels), got shape {x.shape}")
        lengths = archive["lengths"] if "lengths" in archive.files else np.full(len(x), x.shape[1])
        if len(lengths) != len(x) or np.any(lengths < 0) or np.any(lengths > x.shape[1]):
            raise UserError(f"{path}: lengths must be {len(x)} numbers between 0 and {x.shape[1]}")
        sequences = [np.asarray(x[index, : int(length)], dtype=np.float32) for index, length in enumerate(lengths)]
    channels = {item.shape[-1] for item in sequences if item.ndim == 2}
    if len(channels) > 1 or any(item.ndim != 2 for item in sequences):
        raise UserError(f"{path}: every sequence needs the same channels, got {sorted(channels)}")
    recorded = Recorded(x=sequences, y=[], ids=[str(index) for index in range(len(sequences))],
                        features=[f"channel{index}" for index in range(next(iter(channels)))])  # fmt: skip
    if "y" in archive.files:
        y = archive["y"]
        if len(y) != len(sequences):
            raise UserError(f"{path}: y has {len(y)} entries for {len(sequences)} sequences")
        recorded.per_step = y.ndim == 2 or y.dtype == object
        recorded.y = [np.asarray(item)[: len(sequence)] for item, sequence in zip(y, sequences)] if recorded.per_step else list(y)
    return recorded


def read_ts_file(path: Path) -> Recorded:
    from kerasrnn.sequences.tsfile import read_ts

    series, labels, header = read_ts(path)
    channels = {item.shape[1] for item in series}
    if len(channels) > 1:
        raise UserError(f"{path}: the series have different numbers of channels ({sorted(channels)})")
    names = [f"dim{index}" for index in range(next(iter(channels)))]
    recorded = Recorded(
        x=series, y=labels if header.get("kind") else [], ids=[str(index) for index in range(len(series))], features=names
    )
    if header.get("kind") == "class":
        recorded.notes.append(f"classes declared in the file: {' '.join(header.get('classes', []))}")
    recorded.notes.append(f".ts problem {header.get('problemname', path.stem)}")
    return recorded


# ---- checks ---------------------------------------------------------------------------------------------
def fill_missing(path: Path, recorded: Recorded, index: int, missing: str) -> np.ndarray:
    """A sequence's NaN values refused (missing=error), or made 0, or the step before's."""
    x = recorded.x[index]
    holes = np.isnan(x)
    if not holes.any():
        return x
    if missing == "error":
        step, channel = (int(value) for value in np.argwhere(holes)[0])
        raise UserError(
            f"{path}: sequence {recorded.ids[index]!r}, step {step + 1}, feature {recorded.features[channel]!r} is empty "
            f"or not a number: fill it, or pass -o missing=zero or -o missing=previous (docs/sequences.md)"
        )
    x = x.copy()
    if missing == "previous":
        for step in range(1, len(x)):
            x[step] = np.where(np.isnan(x[step]), x[step - 1], x[step])
    return np.nan_to_num(x, nan=0.0)


def check_recorded(path: Path, recorded: Recorded, needs_label: bool) -> None:
    if not recorded.x:
        raise UserError(f"{path} holds no sequences")
    empty = [sequence_id for sequence_id, x in zip(recorded.ids, recorded.x) if len(x) == 0]
    if empty:
        raise UserError(f"{path}: sequence {empty[0]!r} has no steps: every sequence needs at least one")
    if needs_label and not len(recorded.y):
        raise UserError(f"{path} holds no labels: give the label column with --label")
    if len(recorded.y):
        blank = [sequence_id for sequence_id, y in zip(recorded.ids, recorded.y) if label_missing(y)]
        if blank:
            raise UserError(f"{path}: sequence {blank[0]!r} has no label: every sequence needs one")


def label_missing(y) -> bool:
    values = np.atleast_1d(np.asarray(y, dtype=object))
    return any(value is None or value == "" or (isinstance(value, float) and np.isnan(value)) for value in values)


ARRAY_OPTIONS = {"x": ("y", "train"), "x_validation": ("y_validation", "validation"), "x_test": ("y_test", "test")}


def arrays_as_files(options: dict, folder: Path) -> dict:
    """`kerasrnn.fit("sequences", x=..., y=...)`: arrays in memory (x: (N, T, C) or a list of (T, C) arrays, y: a
    label or number a sequence, or a label a step; x_validation/y_validation, x_test/y_test the same) written to
    NPZ files named by their content under `folder` (the same arrays: the same file), which the run then reads as
    `train`, `validation` and `test`: every later command finds them."""
    import hashlib

    options = dict(options)
    for x_name, (y_name, file_option) in ARRAY_OPTIONS.items():
        if x_name not in options:
            if y_name in options:
                raise UserError(f"{y_name} needs {x_name}: the sequences it labels")
            continue
        if options.get(file_option) is not None:
            raise UserError(f"give {x_name}= or {file_option}= (a file), not both")
        x, y = options.pop(x_name), options.pop(y_name, None)
        if y is None:
            raise UserError(f"{x_name} needs {y_name}: a label, number or per-step labels for each sequence")
        sequences = [np.asarray(item, dtype=np.float32) for item in x]
        sequences = [item[:, None] if item.ndim == 1 else item for item in sequences]
        if not sequences or any(item.ndim != 2 for item in sequences) or len({item.shape[1] for item in sequences}) > 1:
            raise UserError(f"{x_name} must be sequences of (steps, channels), every one with the same channels")
        lengths = np.asarray([len(item) for item in sequences])
        padded = np.zeros((len(sequences), max(lengths.max(), 1), sequences[0].shape[1]), dtype=np.float32)
        for index, item in enumerate(sequences):
            padded[index, : len(item)] = item
        labels = np.asarray(y) if np.ndim(y[0]) == 0 else pad_labels(y, padded.shape[1])
        labels = labels.astype(str) if labels.dtype == object else labels  # saved without pickling
        if len(labels) != len(sequences):
            raise UserError(f"{y_name} has {len(labels)} entries for {len(sequences)} sequences in {x_name}")
        digest = hashlib.sha256()
        for part in (padded, lengths, labels):
            digest.update(np.ascontiguousarray(part).tobytes())
        path = Path(folder).resolve() / f"{file_option}-{digest.hexdigest()[:16]}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            partial = path.with_suffix(".partial.npz")
            np.savez(partial, x=padded, lengths=lengths, y=labels)
            partial.replace(path)  # whole or absent, never half written
        options[file_option] = str(path)
    return options


def pad_labels(y, steps: int) -> np.ndarray:
    """Per-step labels of sequences of different lengths as one (N, steps) array (the readers cut each to its length)."""
    rows = [np.asarray(item) for item in y]
    out = np.zeros((len(rows), steps), dtype=np.result_type(*rows))
    for index, row in enumerate(rows):
        out[index, : len(row)] = row
    return out
