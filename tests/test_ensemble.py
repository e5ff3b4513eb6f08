"""`ensemble_predict`: the mean of the models' probabilities, in the texts' order, checked against each model run
on one document at a time."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from conftest import small_config

from hf_bpt3c import (
    AwdLstmForCausalLM,
    AwdLstmForSequenceClassification,
    AwdLstmTokenizer,
    EnsemblePrediction,
    ensemble_predict,
)

WORDS = "the film was good bad long short plot actor music scene end very not quite fine".split()
LABELS = {0: "neg", 1: "mixed", 2: "pos"}


def texts_of_varied_lengths(n: int = 11) -> list[str]:
    """Documents of 1 to 60 words, shuffled so that the order is not the length order."""
    gen = random.Random(0)
    texts = [" ".join(gen.choice(WORDS) for _ in range(gen.randint(1, 60))) for _ in range(n)]
    gen.shuffle(texts)
    return texts


@pytest.fixture(scope="module")
def tokenizer() -> AwdLstmTokenizer:
    return AwdLstmTokenizer.from_texts([" ".join(WORDS)], min_freq=1)


def classifier(tokenizer, seed: int, **overrides) -> AwdLstmForSequenceClassification:
    torch.manual_seed(seed)
    config = small_config(vocab_size=len(tokenizer), id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    for key, value in overrides.items():
        setattr(config, key, value)
    return AwdLstmForSequenceClassification(config)


def one_at_a_time(model, tokenizer, texts: list[str], activation) -> np.ndarray:
    """Each document alone through the model in eval mode: `(len(texts), num_labels)`."""
    model.eval()
    rows = []
    with torch.no_grad():
        for text in texts:
            logits = model(**tokenizer(text, return_tensors="pt")).logits
            rows.append(activation(logits.double())[0].numpy())
    return np.stack(rows)


def test_mean_of_the_models_probabilities_in_input_order(tokenizer):
    texts = texts_of_varied_lengths()
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    assert lengths != sorted(lengths) and lengths != sorted(lengths, reverse=True)
    assert max(lengths) > 15  # several chunks (bptt 5) and longer than max_len
    models = [classifier(tokenizer, 0), classifier(tokenizer, 1, backwards=True), classifier(tokenizer, 2)]
    per_model = [one_at_a_time(m, tokenizer, texts, lambda x: x.softmax(-1)) for m in models]
    expected = np.mean(per_model, axis=0)
    models[2].train()  # left in training mode: predictions run in eval mode, and the mode is put back

    result = ensemble_predict(models, tokenizer, texts, batch_size=4)

    assert isinstance(result, EnsemblePrediction)
    assert result.probabilities.shape == (len(texts), 3)
    np.testing.assert_allclose(result.probabilities, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, rtol=1e-6)
    assert result.label_ids.tolist() == expected.argmax(axis=1).tolist()
    assert result.labels == [LABELS[i] for i in expected.argmax(axis=1)]
    assert models[2].training and not models[0].training
    single = ensemble_predict(models[:1], tokenizer, texts, batch_size=3)
    np.testing.assert_allclose(single.probabilities, per_model[0], rtol=1e-5, atol=1e-6)


def test_multi_label_models_average_sigmoids(tokenizer):
    texts = texts_of_varied_lengths(7)
    models = [classifier(tokenizer, seed, problem_type="multi_label_classification") for seed in (3, 4)]
    expected = np.mean([one_at_a_time(m, tokenizer, texts, torch.sigmoid) for m in models], axis=0)
    result = ensemble_predict(models, tokenizer, texts)
    np.testing.assert_allclose(result.probabilities, expected, rtol=1e-5, atol=1e-6)
    assert result.label_ids.tolist() == (expected >= 0.5).tolist()
    assert result.labels == [[LABELS[j] for j in range(3) if row[j] >= 0.5] for row in expected]


def test_no_texts(tokenizer):
    result = ensemble_predict([classifier(tokenizer, 0)], tokenizer, [])
    assert result.probabilities.shape == (0, 3) and result.labels == []


def test_errors_name_the_argument(tokenizer):
    model = classifier(tokenizer, 0)
    with pytest.raises(ValueError, match="models is empty"):
        ensemble_predict([], tokenizer, ["good"])
    with pytest.raises(TypeError, match="models must be a list"):
        ensemble_predict(model, tokenizer, ["good"])
    with pytest.raises(TypeError, match=r"models\[1\]"):
        ensemble_predict([model, "a model"], tokenizer, ["good"])
    two_labels = classifier(tokenizer, 1, num_labels=2)
    with pytest.raises(ValueError, match=r"models\[1\] predicts 2 labels"):
        ensemble_predict([model, two_labels], tokenizer, ["good"])
    renamed = classifier(tokenizer, 1, id2label={0: "a", 1: "b", 2: "c"})
    with pytest.raises(ValueError, match=r"models\[1\] has the labels"):
        ensemble_predict([model, renamed], tokenizer, ["good"])
    regression = classifier(tokenizer, 1, num_labels=1, problem_type="regression")
    with pytest.raises(ValueError, match=r"models\[0\] is a regression model"):
        ensemble_predict([regression], tokenizer, ["good"])
    language_model = AwdLstmForCausalLM(small_config(vocab_size=len(tokenizer), id2label=LABELS))  # num_labels 3
    with pytest.raises(ValueError, match=r"models\[1\] returned logits of shape \(1, \d+, \d+\)"):
        ensemble_predict([model, language_model], tokenizer, ["good"])
    with pytest.raises(TypeError, match=r"texts\[1\] must be a string"):
        ensemble_predict([model], tokenizer, ["good", 3])
    with pytest.raises(TypeError, match="texts must be a list"):
        ensemble_predict([model], tokenizer, "good film")
    with pytest.raises(ValueError, match=r"texts\[0\] is empty"):
        ensemble_predict([model], tokenizer, ["  "])
    with pytest.raises(ValueError, match="batch_size"):
        ensemble_predict([model], tokenizer, ["good"], batch_size=0)
