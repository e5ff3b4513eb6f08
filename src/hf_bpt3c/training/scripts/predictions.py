"""Predictions files: the texts of a CSV or JSON lines file classified by one classifier or the mean of several
(an ensemble), written next to the file's own columns."""

from __future__ import annotations

import logging
import os
import tempfile

import numpy as np
import torch

from ...serving.ensemble import MULTI_LABEL_THRESHOLD, ensemble_predict, problem_type_of
from .texts import read_test_texts

logger = logging.getLogger(__name__)


@torch.inference_mode()
def predicted_values(models: list, tokenizer, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """Regression: the mean over `models` of each text's predicted value, `(len(texts),)`, in the texts' order
    (BPT3C gives a document the same output whatever its batch and padding)."""
    total = np.zeros(len(texts), dtype=np.float64)
    for model in models:
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start : start + batch_size], padding=True, return_tensors="pt").to(device)
            total[start : start + batch_size] += model(**batch).logits[:, 0].float().cpu().double().numpy()
        model.train(was_training)
    return total / len(models)


def mean_outputs(models: list, tokenizer, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """`(len(texts), num_labels)` in the texts' order: the mean of the models' class probabilities (softmax, or
    sigmoid for multi-label; `ensemble_predict`) or, for regression, of their predicted values."""
    if problem_type_of(models[0].config) == "regression":
        return predicted_values(models, tokenizer, texts, batch_size)[:, None]
    return ensemble_predict(models, tokenizer, texts, batch_size=batch_size).probabilities


def _free(table, name: str, renamed: dict[str, str]) -> str:
    """`name`, or `predicted_<name>` when the test file has a column `name` already (then `predicted_<name>_2`, ...
    while those are taken too): a column of the file is never overwritten. Renames are recorded in `renamed`."""
    if name not in table.columns:
        return name
    free, k = f"predicted_{name}", 2
    while free in table.columns:
        free, k = f"predicted_{name}_{k}", k + 1
    renamed[name] = free
    return free


def write_predictions(
    models, tokenizer, test_file: str, text_column: str, path: str, batch_size: int = 32, delimiter: str = ";"
) -> np.ndarray:
    """Predict the texts of `test_file` (CSV or JSON lines) with a model or the mean of a list of models, and write
    `path` (CSV): the file's columns, then the prediction, one row per input row in the input's order.

    Single-label: the predicted `label` and `prob_<class>` for each class; multi-label: `prob_<label>` for each
    label and `labels`, the labels of probability >= 0.5 joined by `delimiter`; regression: `prediction`. The file's
    own columns are never overwritten: a new column whose name the file has already is written as `predicted_<name>`
    (`predicted_<name>_2`, ... if that is taken too), and a warning lists the renames. `path` may not be
    `test_file` itself; it is written whole or not at all (a temporary file renamed into place). A missing, empty or
    unreadable file, or a row whose text is missing or blank, raises `ValueError` naming it. Returns the
    `(rows, num_labels)` probabilities (regression: values)."""
    if os.path.exists(path) and os.path.exists(test_file) and os.path.samefile(path, test_file):
        raise ValueError(f"the predictions file {path} is --test_file itself: it would overwrite the test data")
    models = list(models) if isinstance(models, (list, tuple)) else [models]
    rows, texts = read_test_texts(test_file, text_column)
    outputs = mean_outputs(models, tokenizer, texts, batch_size)
    config = models[0].config
    table = rows.to_pandas()
    problem_type = problem_type_of(config)
    renamed: dict[str, str] = {}
    if problem_type == "regression":
        table[_free(table, "prediction", renamed)] = outputs[:, 0]
    elif problem_type == "multi_label_classification":
        chosen = outputs >= MULTI_LABEL_THRESHOLD
        names = [config.id2label[i] for i in range(config.num_labels)]
        table[_free(table, "labels", renamed)] = [delimiter.join(n for n, c in zip(names, row) if c) for row in chosen]
    else:
        table[_free(table, "label", renamed)] = [config.id2label[int(i)] for i in outputs.argmax(axis=-1)]
    if problem_type != "regression":
        for i in range(config.num_labels):
            table[_free(table, f"prob_{config.id2label[i]}", renamed)] = outputs[:, i]
    if renamed:
        logger.warning(
            "%s has columns named like the predictions; they are kept, and the predictions are written as %s",
            test_file,
            ", ".join(f"{new} (not {old})" for old, new in renamed.items()),
        )
    _write_csv_atomically(table, path)
    return outputs


def _write_csv_atomically(table, path: str) -> None:
    """`table.to_csv(path)` through a temporary file in the same folder, renamed into place when complete."""
    folder = os.path.dirname(os.path.abspath(path))
    handle, temp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(temp, 0o666 & ~umask)  # the mode a plain open() would give, not mkstemp's 0600
        table.to_csv(temp, index=False)
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def predicted_delimiter(args) -> str:
    """The separator of predicted multi-label names: `--label_delimiter`, or ';'."""
    return args.label_delimiter or ";"


__all__ = ["predicted_values", "mean_outputs", "write_predictions", "predicted_delimiter"]
