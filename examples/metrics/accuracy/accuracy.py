"""Accuracy as a local `evaluate` module (the Hub's metric scripts cannot be downloaded offline).

Load it with `evaluate.load("examples/metrics/accuracy")`.
"""

import datasets
import evaluate


class Accuracy(evaluate.Metric):
    """Fraction of predictions equal to the references."""

    def _info(self):
        return evaluate.MetricInfo(
            description="Accuracy: the fraction of predictions that equal the references.",
            citation="",
            inputs_description="predictions and references: lists of class ids",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references):
        correct = sum(int(p == r) for p, r in zip(predictions, references))
        return {"accuracy": correct / len(references) if references else 0.0}
