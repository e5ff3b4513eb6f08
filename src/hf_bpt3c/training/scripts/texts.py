"""The texts the example scripts read: training and validation splits from CSV, JSON lines or text files (or a
`datasets` name), and the texts of a file to predict."""

from __future__ import annotations

import os
from collections.abc import Iterator

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
        raw = datasets.load_dataset(file_builder(data_args.train_file), data_files=files)
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


def read_test_texts(test_file: str, text_column: str):
    """The rows of `test_file` (CSV or JSON lines) and their texts; a missing column, or a row whose text is missing
    or blank, raises `ValueError` naming it."""
    rows = datasets.load_dataset(file_builder(test_file), data_files=test_file, split="train")
    if text_column not in rows.column_names:
        raise ValueError(f"--test_file {test_file} has no column {text_column!r} (--text_column): {rows.column_names}")
    texts = rows[text_column]
    for index, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"--test_file {test_file}: row {index} has no text in column {text_column!r}")
    return rows, texts


__all__ = ["load_splits", "file_builder", "iterate_texts", "read_test_texts"]
