"""What a classifier predicts, read from the data: single-label classes, multi-label names (one column of names
joined by a separator, or several 0/1 columns) or regression values. Bad arguments and bad values raise
`ValueError` naming the argument, or the split and row."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...serving.ensemble import problem_type_of
from .arguments import ClassifierArguments

PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")
INDICATORS = {"0": 0.0, "1": 1.0, "0.0": 0.0, "1.0": 1.0, "false": 0.0, "true": 1.0}


@dataclass(frozen=True)
class Targets:
    """What the classifier predicts: the problem type, the label column(s), the label names (the classes; the 0/1
    columns of multi-label indicators; the column, for regression) and the separator of multi-label names."""

    problem_type: str
    columns: tuple[str, ...]
    names: tuple[str, ...]
    delimiter: str | None = None

    def encode(self, data, split: str) -> list:
        """The `labels` of each row of `data`: class ids, 0/1 rows (multi-label) or floats (regression). A value
        that is empty, not a number (regression), not 0/1 (indicator columns) or not a training label raises
        `ValueError` naming the split and row (counted from 0)."""
        _check_columns(data, self.columns, split)
        rows = zip(*(data[column] for column in self.columns))
        return [self._encode_row(values, split, index) for index, values in enumerate(rows)]

    def _encode_row(self, values: tuple, split: str, index: int):
        if self.problem_type == "regression":
            return _number(values[0], split, index, self.columns[0])
        if self.delimiter is None and self.problem_type == "multi_label_classification":
            return [_indicator(v, split, index, c) for v, c in zip(values, self.columns)]
        names = self.names_in(values[0], split, index)
        unknown = [name for name in names if name not in self.names]
        if unknown:
            raise ValueError(
                f"{split} row {index}: label {unknown[0]!r} in column {self.columns[0]!r} is not one of the "
                f"training labels {list(self.names)}"
            )
        if self.problem_type == "single_label_classification":
            return self.names.index(names[0])
        return [float(name in names) for name in self.names]

    def names_in(self, value, split: str, index: int) -> list[str]:
        """The label name(s) in one cell (split at the delimiter); empty ones raise `ValueError` naming the row."""
        text = _cell(value, split, index, self.columns[0])
        if self.delimiter is None:
            return [text]
        names = [name.strip() for name in text.split(self.delimiter)]
        if not all(names):
            raise ValueError(
                f"{split} row {index}: empty label between the {self.delimiter!r} separators of column "
                f"{self.columns[0]!r}: {text!r}"
            )
        return names


def _check_columns(data, columns: tuple[str, ...], split: str) -> None:
    missing = [column for column in columns if column not in data.column_names]
    if missing:
        raise ValueError(f"the {split} data has no column {missing[0]!r} (--label_column): {data.column_names}")


def _cell(value, split: str, index: int, column: str) -> str:
    """The label `value` as a name; a missing or blank one raises `ValueError`."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or not str(value).strip():
        raise ValueError(f"{split} row {index}: empty label in column {column!r}")
    return str(value).strip()


def _indicator(value, split: str, index: int, column: str) -> float:
    """A 0/1 (or false/true) multi-label indicator as 0.0 / 1.0."""
    text = _cell(value, split, index, column).lower()
    if text not in INDICATORS:
        raise ValueError(f"{split} row {index}: column {column!r} must hold 0 or 1 (multi-label), got {value!r}")
    return INDICATORS[text]


def _number(value, split: str, index: int, column: str) -> float:
    """A finite regression target."""
    text = _cell(value, split, index, column)
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if not np.isfinite(number):
        raise ValueError(f"{split} row {index}: column {column!r} must hold a finite number (regression): {value!r}")
    return number


def label_columns(args: ClassifierArguments) -> tuple[str, ...]:
    """`--label_column` split at commas, checked against `--problem_type` and `--label_delimiter`."""
    if args.problem_type not in PROBLEM_TYPES:
        raise ValueError(f"--problem_type must be one of {PROBLEM_TYPES}, got {args.problem_type!r}")
    columns = tuple(column.strip() for column in args.label_column.split(","))
    if not all(columns) or len(set(columns)) != len(columns):
        raise ValueError(f"--label_column must name distinct columns, comma-separated, got {args.label_column!r}")
    multi_label = args.problem_type == "multi_label_classification"
    if len(columns) > 1 and not multi_label:
        raise ValueError(f"--label_column names {len(columns)} columns: only multi_label_classification takes several")
    if args.label_delimiter is not None and not multi_label:
        raise ValueError("--label_delimiter is for --problem_type multi_label_classification")
    if args.label_delimiter is not None and len(columns) > 1:
        raise ValueError("--label_delimiter splits one label column; several --label_column are 0/1 columns")
    if multi_label and args.label_delimiter is None and len(columns) == 1:
        raise ValueError("multi_label_classification needs --label_delimiter or several 0/1 --label_column columns")
    if args.label_delimiter is not None and not args.label_delimiter.strip():
        raise ValueError(f"--label_delimiter must be a visible separator such as ';', got {args.label_delimiter!r}")
    return columns


def fit_targets(args: ClassifierArguments, train) -> Targets:
    """The targets of `--problem_type` / `--label_column` / `--label_delimiter`, the class names (sorted) read from
    the training data, whose labels are checked."""
    columns = label_columns(args)
    _check_columns(train, columns, "train")
    if args.problem_type == "regression" or len(columns) > 1:
        names = columns
    else:
        probe = Targets(args.problem_type, columns, (), args.label_delimiter)
        values = train[columns[0]]
        names = tuple(sorted({n for i, v in enumerate(values) for n in probe.names_in(v, "train", i)}))
    targets = Targets(args.problem_type, columns, names, args.label_delimiter)
    if args.problem_type == "single_label_classification" and len(names) < 2:
        raise ValueError(f"the training data has {len(names)} class(es) in {columns[0]!r}: a classifier needs two")
    return targets


def model_targets(config, args) -> Targets:
    """The targets of a trained classifier (`config`: its problem type and label names, in its order), read from
    the data's `args.label_column` / `args.label_delimiter`."""
    names = tuple(config.id2label[i] for i in range(config.num_labels))
    return Targets(problem_type_of(config), label_columns(args), names, args.label_delimiter)


def encode_split(data, split: str, targets: Targets, tokenizer, text_column: str):
    """`data` tokenized, with its `labels` (checked: errors name the split and row)."""
    labels = targets.encode(data, split)
    encoded = data.map(lambda batch: tokenizer(batch[text_column]), batched=True, remove_columns=data.column_names)
    return encoded.add_column("labels", labels)


__all__ = ["PROBLEM_TYPES", "Targets", "label_columns", "fit_targets", "model_targets", "encode_split"]
