"""Predictions of classifiers on texts, in the texts' order, and their ensemble (ULMFiT's forward + backward).

ULMFiT's best reported numbers average the predictions of a forward and a backward classifier. A backward
classifier (`config.backwards=True`) reverses each document itself, so both take the same texts in reading order:

    result = ensemble_predict([forward, backward], tokenizer, texts)
    result.probabilities  # (len(texts), num_labels), the mean of the models' probabilities
    result.labels         # the predicted class name of each text

Each model's logits come from `prediction.batched_logits` (batched longest first, written back to each text's row),
so the output follows the input order whatever the batching.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from .prediction import (
    CLASSIFICATION_TYPES,
    MULTI_LABEL_THRESHOLD,
    batched_logits,
    eval_mode,
    probabilities,
    problem_type_of,
)


class EnsemblePrediction(NamedTuple):
    """What `ensemble_predict` returns.

    Attributes:
        probabilities: `(len(texts), num_labels)` float64, row `i` for `texts[i]`: the mean over the models of the
            softmax probabilities (single-label) or of the per-label sigmoid probabilities (multi-label).
        label_ids: single-label: `(len(texts),)` int64, the class of highest mean probability; multi-label:
            `(len(texts), num_labels)` bool, mean probability >= 0.5.
        labels: the class names (`config.id2label`) of `label_ids`: one name per text (single-label), or a list of
            names per text (multi-label).
    """

    probabilities: np.ndarray
    label_ids: np.ndarray
    labels: list


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"texts must be a list of strings, got {type(texts).__name__}")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{index}] must be a string, got {type(text).__name__}")
        if not text.strip():
            raise ValueError(f"texts[{index}] is empty: every text to classify needs at least one word")
    return list(texts)


def _check_model(model, index: int, tokenizer) -> None:
    config = getattr(model, "config", None)
    if not isinstance(model, torch.nn.Module) or getattr(config, "num_labels", None) is None:
        raise TypeError(f"models[{index}] must be a sequence classifier (a model with a config), got {type(model)}")
    if problem_type_of(config) not in CLASSIFICATION_TYPES:
        raise ValueError(
            f"models[{index}] is a {problem_type_of(config)} model: ensemble_predict averages class probabilities "
            f"({' or '.join(CLASSIFICATION_TYPES)})"
        )
    vocab_size = getattr(config, "vocab_size", None)
    if vocab_size is not None and vocab_size < len(tokenizer):
        raise ValueError(
            f"models[{index}] has a vocabulary of {vocab_size} tokens but the tokenizer has {len(tokenizer)}: the "
            "models of an ensemble must share the tokenizer they were trained with"
        )


def _check_models(models, tokenizer) -> list:
    if isinstance(models, torch.nn.Module) or not isinstance(models, Sequence):
        raise TypeError(f"models must be a list of classifiers, got {type(models).__name__}")
    if not models:
        raise ValueError("models is empty: give at least one classifier")
    for index, model in enumerate(models):
        _check_model(model, index, tokenizer)
    first = models[0].config
    for index, model in enumerate(models[1:], start=1):
        config = model.config
        if config.num_labels != first.num_labels or problem_type_of(config) != problem_type_of(first):
            raise ValueError(
                f"models[{index}] predicts {config.num_labels} labels ({problem_type_of(config)}) but models[0] "
                f"{first.num_labels} ({problem_type_of(first)}): an ensemble averages the same outputs"
            )
        if config.id2label != first.id2label:
            raise ValueError(
                f"models[{index}] has the labels {config.id2label} but models[0] {first.id2label}: the classes must "
                "be the same, in the same order"
            )
    return list(models)


def _predict_rows(model, tokenizer, input_ids: list[list[int]], batch_size: int, name: str) -> np.ndarray:
    """`probabilities` `(len(input_ids), num_labels)` float64 of every row, in the rows' order; `name` (e.g.
    `models[1]`) is the model's name in errors."""
    logits = batched_logits(model, tokenizer, input_ids, batch_size, name)
    return probabilities(logits, problem_type_of(model.config)).double().numpy()


def _decide(probs: np.ndarray, config) -> tuple[np.ndarray, list]:
    """Predicted label ids and names from mean probabilities `(n, num_labels)`."""
    names = [config.id2label[i] for i in range(config.num_labels)]
    if problem_type_of(config) == "multi_label_classification":
        chosen = probs >= MULTI_LABEL_THRESHOLD
        return chosen, [[names[j] for j in np.flatnonzero(row)] for row in chosen]
    ids = probs.argmax(axis=-1).astype(np.int64)
    return ids, [names[i] for i in ids]


def ensemble_predict(models, tokenizer, texts: Sequence[str], batch_size: int = 32) -> EnsemblePrediction:
    """The mean of the class probabilities of `models` on `texts` (ULMFiT's forward + backward ensemble).

    Args:
        models: sequence classifiers (e.g. `AwdLstmForSequenceClassification`; forward and backward ones mix
            freely) with the same labels in the same order and the same problem type (single- or multi-label),
            all trained with `tokenizer`'s vocabulary. One model gives its own predictions.
        tokenizer: the tokenizer they share.
        texts: the documents in reading order; an empty text raises `ValueError` naming its index.
        batch_size: documents per forward pass (batched longest first).

    Returns:
        `EnsemblePrediction(probabilities, label_ids, labels)`: `probabilities` `(len(texts), num_labels)` float64,
        row `i` for `texts[i]`, the mean over the models of the softmax (single-label) or sigmoid (multi-label)
        probabilities; `label_ids` and `labels` the predicted class(es) of each text. Each model runs in eval mode
        on its own device; its train/eval mode is restored afterwards.
    """
    models = _check_models(models, tokenizer)
    texts = _check_texts(texts)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    config = models[0].config
    if not texts:
        probs = np.zeros((0, config.num_labels))
    else:
        input_ids = tokenizer(texts)["input_ids"]
        runs = (_predict_rows(m, tokenizer, input_ids, batch_size, f"models[{i}]") for i, m in enumerate(models))
        probs = sum(runs) / len(models)
    label_ids, labels = _decide(probs, config)
    return EnsemblePrediction(probs, label_ids, labels)


# batched_logits, eval_mode, probabilities and problem_type_of live in `prediction`, re-exported here
__all__ = ["EnsemblePrediction", "batched_logits", "ensemble_predict", "eval_mode", "probabilities", "problem_type_of"]
