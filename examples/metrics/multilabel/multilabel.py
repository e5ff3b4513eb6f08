"""Multi-label metrics as a local `evaluate` module. Load it with `evaluate.load("examples/metrics/multilabel")`.

Inputs are 0/1 indicator rows (one column per class), the predictions already thresholded (the scripts use 0.5 on
the sigmoid probabilities).
"""

import datasets
import evaluate


def _f1(true_pos: int, predicted: int, actual: int) -> float:
    """F1 from counts; 0 when there is nothing to score (scikit-learn's zero_division=0)."""
    return 2 * true_pos / (predicted + actual) if predicted + actual else 0.0


class MultiLabel(evaluate.Metric):
    """accuracy (fastai's `accuracy_multi`: the share of correct (document, class) decisions), exact_match (all
    classes right), f1_micro (counts pooled over the classes) and f1_macro (mean of the classes' F1)."""

    def _info(self):
        return evaluate.MetricInfo(
            description="Multi-label accuracy per decision, exact match, micro and macro F1.",
            citation="",
            inputs_description="predictions and references: lists of 0/1 rows, one column per class",
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("int64")),
                    "references": datasets.Sequence(datasets.Value("int64")),
                }
            ),
        )

    def _compute(self, predictions, references):
        if not references:
            return {"accuracy": 0.0, "exact_match": 0.0, "f1_micro": 0.0, "f1_macro": 0.0}
        n_classes = len(references[0])
        counts = []  # (true_pos, predicted, actual) per class
        for k in range(n_classes):
            true_pos = sum(1 for p, r in zip(predictions, references) if p[k] == r[k] == 1)
            counts.append((true_pos, sum(p[k] for p in predictions), sum(r[k] for r in references)))
        decisions = sum(int(pk == rk) for p, r in zip(predictions, references) for pk, rk in zip(p, r))
        return {
            "accuracy": decisions / (len(references) * n_classes),
            "exact_match": sum(int(list(p) == list(r)) for p, r in zip(predictions, references)) / len(references),
            "f1_micro": _f1(*(sum(c[i] for c in counts) for i in range(3))),
            "f1_macro": sum(_f1(*c) for c in counts) / n_classes,
        }
