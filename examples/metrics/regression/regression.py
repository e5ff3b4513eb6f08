"""Regression metrics as a local `evaluate` module. Load it with `evaluate.load("examples/metrics/regression")`."""

import math

import datasets
import evaluate


class Regression(evaluate.Metric):
    """mse (mean squared error), mae (mean absolute error) and pearson (the correlation of predictions and
    references; NaN when either is constant)."""

    def _info(self):
        return evaluate.MetricInfo(
            description="Mean squared error, mean absolute error and Pearson's correlation.",
            citation="",
            inputs_description="predictions and references: lists of numbers",
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
        )

    def _compute(self, predictions, references):
        n = len(references)
        if n == 0:
            return {"mse": 0.0, "mae": 0.0, "pearson": float("nan")}
        errors = [p - r for p, r in zip(predictions, references)]
        mean_p, mean_r = sum(predictions) / n, sum(references) / n
        covariance = sum((p - mean_p) * (r - mean_r) for p, r in zip(predictions, references))
        spread = math.sqrt(sum((p - mean_p) ** 2 for p in predictions) * sum((r - mean_r) ** 2 for r in references))
        return {
            "mse": sum(e * e for e in errors) / n,
            "mae": sum(abs(e) for e in errors) / n,
            "pearson": covariance / spread if spread > 0 else float("nan"),
        }
