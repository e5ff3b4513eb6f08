"""The examples' local `evaluate` modules for multi-label classification and regression, checked against
scikit-learn and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import REPO_ROOT

evaluate = pytest.importorskip("evaluate")
metrics = pytest.importorskip("sklearn.metrics")
stats = pytest.importorskip("scipy.stats")

METRICS = REPO_ROOT / "examples" / "metrics"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multilabel_metrics_match_scikit_learn(seed):
    gen = np.random.default_rng(seed)
    references = gen.integers(0, 2, size=(50, 4))
    predictions = np.where(gen.random((50, 4)) < 0.3, 1 - references, references)
    predictions[:, 3] = 0  # a label never predicted: its F1 counts as 0 (zero_division=0)
    references[:, 3] = 0  # ... nor present
    result = evaluate.load(str(METRICS / "multilabel")).compute(predictions=predictions, references=references)
    assert result["accuracy"] == pytest.approx((predictions == references).mean())  # fastai's accuracy_multi
    assert result["exact_match"] == pytest.approx(metrics.accuracy_score(references, predictions))
    for average in ("micro", "macro"):
        expected = metrics.f1_score(references, predictions, average=average, zero_division=0)
        assert result[f"f1_{average}"] == pytest.approx(expected), average


def test_regression_metrics_match_scipy():
    gen = np.random.default_rng(0)
    references = gen.normal(size=40)
    predictions = references + gen.normal(scale=0.5, size=40)
    result = evaluate.load(str(METRICS / "regression")).compute(predictions=predictions, references=references)
    assert result["mse"] == pytest.approx(metrics.mean_squared_error(references, predictions))
    assert result["mae"] == pytest.approx(metrics.mean_absolute_error(references, predictions))
    assert result["pearson"] == pytest.approx(stats.pearsonr(predictions, references)[0])
    constant = evaluate.load(str(METRICS / "regression")).compute(predictions=[1.0] * 3, references=[0.0, 1.0, 2.0])
    assert constant["mse"] == pytest.approx(2 / 3) and math.isnan(constant["pearson"])
