"""`compute_metrics` for `Trainer` by problem type, from local `evaluate` modules (a folder holding `accuracy/`,
`f1/`, `multilabel/` and `regression/`, as the example scripts' `examples/metrics/`), and the metrics reported."""

from __future__ import annotations

import os

import evaluate
import numpy as np

CARD_METRICS = {
    "single_label_classification": ("accuracy", "f1"),
    "multi_label_classification": ("accuracy", "exact_match", "f1_micro", "f1_macro"),
    "regression": ("mse", "mae", "pearson"),
}


def accuracy_and_f1(metrics_dir: str | os.PathLike):
    """`compute_metrics` for Trainer: accuracy and macro F1 from the `evaluate` modules in `metrics_dir`."""
    accuracy = evaluate.load(os.path.join(metrics_dir, "accuracy"))
    f1 = evaluate.load(os.path.join(metrics_dir, "f1"))

    def compute(eval_pred) -> dict:
        predictions = np.argmax(eval_pred.predictions, axis=-1)
        references = eval_pred.label_ids
        return {
            **accuracy.compute(predictions=predictions, references=references),
            **f1.compute(predictions=predictions, references=references),
        }

    return compute


def multilabel_metrics(metrics_dir: str | os.PathLike, probabilities: bool = False):
    """`compute_metrics` for multi-label: accuracy per (document, label) decision, exact match, micro and macro F1
    at a 0.5 threshold on the sigmoid probabilities. `probabilities`: the predictions are probabilities already
    (an ensemble's mean), not logits."""
    multilabel = evaluate.load(os.path.join(metrics_dir, "multilabel"))

    def compute(eval_pred) -> dict:
        scores = np.asarray(eval_pred.predictions, dtype=np.float64)
        chosen = scores >= 0.5 if probabilities else scores >= 0.0  # sigmoid(logit) >= 0.5
        references = np.asarray(eval_pred.label_ids).round().astype(np.int64)
        return multilabel.compute(predictions=chosen.astype(np.int64), references=references)

    return compute


def regression_metrics(metrics_dir: str | os.PathLike):
    """`compute_metrics` for regression: MSE, MAE and Pearson's correlation of the predicted values."""
    regression = evaluate.load(os.path.join(metrics_dir, "regression"))

    def compute(eval_pred) -> dict:
        predictions = np.asarray(eval_pred.predictions, dtype=np.float64).reshape(-1)
        references = np.asarray(eval_pred.label_ids, dtype=np.float64).reshape(-1)
        return regression.compute(predictions=predictions, references=references)

    return compute


def metrics_for(problem_type: str, metrics_dir: str | os.PathLike, probabilities: bool = False):
    """`compute_metrics` for `problem_type`; `probabilities`: the predictions are class probabilities (or, for
    regression, values), not logits."""
    if problem_type == "multi_label_classification":
        return multilabel_metrics(metrics_dir, probabilities)
    if problem_type == "regression":
        return regression_metrics(metrics_dir)
    return accuracy_and_f1(metrics_dir)


def summary(metrics: dict, problem_type: str, prefix: str = "eval_") -> str:
    """The validation metrics of `problem_type` on one line, e.g. `accuracy 0.8125, f1 0.8000`."""
    return ", ".join(f"{name} {metrics[prefix + name]:.4f}" for name in CARD_METRICS[problem_type])


def report(metrics: dict, problem_type: str) -> str:
    """The printed line of validation metrics: `validation accuracy: ...` (single-label) or `validation metrics:
    ...` with the problem type's metrics."""
    if problem_type == "single_label_classification":
        return f"validation accuracy: {metrics['eval_accuracy']:.4f} (macro F1 {metrics['eval_f1']:.4f})"
    return f"validation metrics: {summary(metrics, problem_type)}"


__all__ = [
    "CARD_METRICS",
    "accuracy_and_f1",
    "multilabel_metrics",
    "regression_metrics",
    "metrics_for",
    "summary",
    "report",
]
