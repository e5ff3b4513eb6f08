"""Macro-averaged F1 as a local `evaluate` module. Load it with `evaluate.load("examples/metrics/f1")`."""

import datasets
import evaluate


class F1(evaluate.Metric):
    """F1 per class (from precision and recall), averaged over the classes that occur."""

    def _info(self):
        return evaluate.MetricInfo(
            description="Macro F1: the unweighted mean of each class's F1 score.",
            citation="",
            inputs_description="predictions and references: lists of class ids",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references):
        scores = []
        for label in sorted(set(references) | set(predictions)):
            true_pos = sum(1 for p, r in zip(predictions, references) if p == r == label)
            predicted = sum(1 for p in predictions if p == label)
            actual = sum(1 for r in references if r == label)
            precision = true_pos / predicted if predicted else 0.0
            recall = true_pos / actual if actual else 0.0
            scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
        return {"f1": sum(scores) / len(scores) if scores else 0.0}
