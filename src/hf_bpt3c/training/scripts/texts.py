"""The texts the example scripts read: training and validation splits from CSV, JSON lines or text files (or a
`datasets` name), the texts of a file to predict, and the documents of a file to explain.

Data files are read as they are written: in a CSV the text column is taken verbatim (a review that reads `NA`,
`null`, `None` or `1` is that text, not a missing value or a number; pandas' missing-value markers still apply to
the other columns), and a file that is missing, empty, not UTF-8 or malformed raises a `ValueError` naming it
(`read_data_file`); a row without a text raises one naming the row.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import datasets
from huggingface_hub.utils import tqdm

from .arguments import DataArguments


def load_splits(data_args: DataArguments) -> datasets.DatasetDict:
    """A DatasetDict with `train` and `validation`, from files (a glob such as `corpus/*.txt` reads them all) or a
    dataset name."""
    if data_args.dataset_name:
        raw = datasets.load_dataset(data_args.dataset_name, data_args.dataset_config_name)
    else:
        if not data_args.train_file:
            raise ValueError("give --train_file (CSV, JSON lines or .txt) or --dataset_name")
        files = {"train": data_args.train_file}
        if data_args.validation_file:
            files["validation"] = data_args.validation_file
        for split, path in files.items():
            _check_file(path, f"--{split}_file")
        options = csv_options(data_args.train_file, data_args.text_column)
        raw = _load(file_builder(data_args.train_file), files, "--train_file", data_args.train_file, **options)
    if data_args.split_column:
        column = data_args.split_column
        is_valid = lambda row: str(row[column]).strip().lower() in ("true", "1", "yes")  # noqa: E731
        train = raw["train"]
        raw = datasets.DatasetDict(train=train.filter(lambda row: not is_valid(row)), validation=train.filter(is_valid))
    elif "validation" not in raw:
        held_out = raw["train"].train_test_split(test_size=data_args.validation_split_percentage / 100, seed=0)
        raw = datasets.DatasetDict(train=held_out["train"], validation=held_out["test"])
    for split, limit in (("train", data_args.max_train_samples), ("validation", data_args.max_eval_samples)):
        if limit is not None:
            raw[split] = raw[split].select(range(min(limit, len(raw[split]))))
    return raw


def file_builder(path: str) -> str:
    """The `datasets` builder for a file: "json" (.json/.jsonl), "text" (.txt: one text per line, column "text")
    or "csv"."""
    extension = os.path.splitext(path)[1].lstrip(".")
    return {"json": "json", "jsonl": "json", "txt": "text"}.get(extension, "csv")


def iterate_texts(data: datasets.Dataset, column: str, desc: str, batch_size: int = 1000) -> Iterator[str]:
    """The texts of `data[column]`, read in batches with a progress bar (the whole column is never a list)."""
    with tqdm(total=len(data), desc=desc, unit=" texts") as progress:
        for start in range(0, len(data), batch_size):
            texts = data[start : start + batch_size][column]
            yield from texts
            progress.update(len(texts))


def csv_options(path: str, text_column: str | None) -> dict:
    """`datasets`/pandas options that read the CSV column `text_column` verbatim (no missing-value markers, no
    number parsing) and every other column as pandas does by default; `{}` for other files, or when the header
    does not name `text_column` (the caller reports the missing column)."""
    if text_column is None or file_builder(path) != "csv":
        return {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}
    if not header or text_column not in header:
        return {}
    try:
        from pandas._libs.parsers import STR_NA_VALUES
    except ImportError:  # pandas' documented defaults
        STR_NA_VALUES = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN"}
        STR_NA_VALUES |= {"<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}
    markers = sorted(STR_NA_VALUES)
    others = {column: markers for column in header if column != text_column}
    return {"keep_default_na": False, "na_values": others, "converters": {text_column: str}}


def _csv_records(path: str, at_most: int = 2) -> int | None:
    """How many CSV records (header included) `path` starts with, up to `at_most`; None if it cannot be read."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return sum(1 for _, record in zip(range(at_most), csv.reader(f)) if record)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def _check_file(path: str, what: str) -> None:
    """`ValueError` naming `what` unless `path` is an existing, non-empty regular file."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what} must be a file path, got {type(path).__name__}")
    if any(c in str(path) for c in "*?["):
        return  # a glob: datasets resolves it and names what it cannot find
    if not os.path.exists(path):
        raise ValueError(f"{what} {path} does not exist")
    if not os.path.isfile(path):
        raise ValueError(f"{what} {path} is not a file")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{what} {path} is empty")


def _load(builder: str, data_files, what: str, path: str, **options):
    """`datasets.load_dataset` with any reading error (not UTF-8, malformed CSV/JSON, a column changing type) as a
    `ValueError` naming the file."""
    try:
        return datasets.load_dataset(builder, data_files=data_files, **options)
    except Exception as err:  # datasets wraps pandas', pyarrow's and the codecs' errors in its own types
        cause = err.__cause__ or err.__context__ or err
        reason = " ".join(f"{type(cause).__name__}: {cause}".split())[:400]
        kind = {"csv": "CSV", "json": "JSON lines"}.get(builder, "text")
        raise ValueError(f"{what} {path} could not be read as {kind} (UTF-8): {reason}") from None


def read_data_file(path: str, what: str = "--test_file", text_column: str | None = None) -> datasets.Dataset:
    """The rows of a CSV, JSON lines or text file as a Dataset (`file_builder`); the CSV column `text_column` is read
    verbatim (`csv_options`). `ValueError` naming `what` and the file when it is missing, empty, unreadable or has no
    row."""
    _check_file(path, what)
    builder = file_builder(path)
    if builder == "csv" and _csv_records(path) == 1:
        raise ValueError(f"{what} {path} has no rows (only a header?)")
    rows = _load(builder, path, what, path, split="train", **csv_options(path, text_column))
    if len(rows) == 0:
        raise ValueError(f"{what} {path} has no rows (only a header?)")
    return rows


def read_test_texts(test_file: str, text_column: str):
    """The rows of `test_file` (CSV or JSON lines) and their texts; a missing, empty or unreadable file, a missing
    column, or a row whose text is missing or blank raises `ValueError` naming it."""
    rows = read_data_file(test_file, "--test_file", text_column)
    if text_column not in rows.column_names:
        raise ValueError(f"--test_file {test_file} has no column {text_column!r} (--text_column): {rows.column_names}")
    texts = rows[text_column]
    for index, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            found = "nothing" if text is None else f"{type(text).__name__} {str(text)[:40]!r}"
            raise ValueError(f"--test_file {test_file}: row {index} has no text in column {text_column!r} ({found})")
    return rows, texts


def read_documents(path: str, text_column: str = "text", what: str = "--text_file") -> list[tuple[str, str]]:
    """The documents of a file to explain, as `(name, text)`: a `.txt`/`.md` file (or one without a suffix) is one
    document named after the file; a `.csv`, `.json` (a list of objects) or `.jsonl` file one per row, named
    `<stem>-<row>` from 1. `ValueError` naming the file, and the row where it applies, for a missing, empty, non-UTF-8
    or malformed file, a missing column, or a row whose text is missing, not a string or blank."""
    stem, suffix = Path(path).stem, Path(path).suffix.lower()
    if suffix in (".txt", ".md", ""):
        content = _read_text(path, what)
        if not content.strip():
            raise ValueError(f"{what} {path} holds no text")
        return [(stem, content)]
    rows = read_records(path, what, [text_column])
    return [(f"{stem}-{i}", text_of(row, text_column, path, what, i)) for i, row in enumerate(rows, 1)]


def read_records(path: str, what: str, columns: Sequence[str] = ()) -> list[dict]:
    """The rows of a `.csv` (every cell a string, read verbatim: `NA` stays `"NA"`), `.json` (a list of objects) or
    `.jsonl` file, each holding `columns`. `ValueError` naming `what`, the file and the row (from 1) for a missing,
    empty, non-UTF-8 or malformed file, a file without rows, a row that is not an object or lacks a column."""
    rows = _rows_of(path, Path(path).suffix.lower(), _read_text(path, what), what)
    if not rows:
        raise ValueError(f"{what} {path} has no rows")
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise ValueError(f"{what} {path}: row {i} is not an object with the fields {', '.join(columns)}")
        for column in columns:
            if column not in row:
                raise ValueError(f"{what} {path}: row {i} has no column {column!r} (columns: {', '.join(row)[:200]})")
    return rows


def text_of(row: dict, column: str, path: str, what: str, number: int) -> str:
    """`row[column]` when it is a non-blank string, else a `ValueError` naming the file and the row."""
    text = row[column]
    if not isinstance(text, str) or not text.strip():
        found = "null" if text is None else f"{type(text).__name__} {str(text)[:40]!r}"
        raise ValueError(f"{what} {path}: row {number} has no text in column {column!r} (found {found})")
    return text


def _read_text(path: str, what: str) -> str:
    _check_file(path, what)
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{what} {path} is not UTF-8 text (byte {err.start})") from None


def _rows_of(path: str, suffix: str, content: str, what: str) -> list:
    """The rows of a CSV (dicts of strings, read verbatim) or JSON / JSON lines file."""
    if suffix == ".csv":
        try:
            return list(csv.DictReader(content.splitlines()))
        except csv.Error as err:
            raise ValueError(f"{what} {path} is not a valid CSV file: {err}") from None
    if suffix not in (".json", ".jsonl"):
        raise ValueError(f"{what} {path}: expected a .txt, .md, .csv, .json or .jsonl file")
    try:
        if content.lstrip().startswith("["):
            return json.loads(content)
        rows = []
        for number, line in enumerate(content.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{what} {path}: line {number} is not JSON ({err.msg})") from None
        return rows
    except (json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"{what} {path} is not valid JSON: {err}") from None


__all__ = [
    "csv_options",
    "file_builder",
    "iterate_texts",
    "load_splits",
    "read_data_file",
    "read_documents",
    "read_records",
    "read_test_texts",
    "text_of",
]
