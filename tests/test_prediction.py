"""`hf_bpt3c.serving.prediction`: batched logits in the rows' order (checked against one document at a time),
eval mode restored module by module, probabilities and the inferred problem type."""

from __future__ import annotations

import random

import pytest
import torch
from conftest import small_config

from hf_bpt3c import AwdLstmForSequenceClassification, AwdLstmTokenizer
from hf_bpt3c.serving import ensemble, prediction
from hf_bpt3c.serving.prediction import (
    MULTI_LABEL_THRESHOLD,
    batched_logits,
    eval_mode,
    length_order,
    probabilities,
    problem_type_of,
)

WORDS = "the film was good bad long short plot actor music scene end".split()


@pytest.fixture(scope="module")
def tokenizer() -> AwdLstmTokenizer:
    return AwdLstmTokenizer.from_texts([" ".join(WORDS)], min_freq=1)


def test_batched_logits_are_in_the_rows_order(tokenizer):
    gen = random.Random(1)
    texts = [" ".join(gen.choice(WORDS) for _ in range(gen.randint(1, 40))) for _ in range(9)]
    input_ids = tokenizer(texts)["input_ids"]
    model = AwdLstmForSequenceClassification(small_config(vocab_size=len(tokenizer)))
    model.train()
    logits = batched_logits(model, tokenizer, input_ids, batch_size=4)
    assert model.training  # put back
    model.eval()
    with torch.no_grad():
        alone = torch.cat([model(torch.tensor([ids])).logits for ids in input_ids])
    torch.testing.assert_close(logits, alone, rtol=1e-5, atol=1e-6)


def test_length_order_is_longest_first_and_stable():
    assert length_order([[1], [1, 2, 3], [4], [5, 6, 7], []]) == [1, 3, 0, 2, 4]


def test_eval_mode_restores_every_module_flag():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    model.train()
    model[1].eval()
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert model.training and model[0].training and not model[1].training


def test_probabilities_and_problem_type():
    logits = torch.tensor([[0.0, 1.0, -1.0]], dtype=torch.float64)
    single = probabilities(logits, "single_label_classification")
    assert single.dtype == torch.float32
    torch.testing.assert_close(single, logits.float().softmax(dim=-1))
    torch.testing.assert_close(probabilities(logits, "multi_label_classification"), logits.float().sigmoid())
    with pytest.raises(ValueError, match="problem_type must be one of"):
        probabilities(logits, "regression")
    assert problem_type_of(small_config(num_labels=1)) == "regression"
    assert problem_type_of(small_config(num_labels=3)) == "single_label_classification"
    assert problem_type_of(small_config(problem_type="multi_label_classification")) == "multi_label_classification"
    assert MULTI_LABEL_THRESHOLD == 0.5


def test_ensemble_module_still_exports_the_helpers():
    for name in ("batched_logits", "eval_mode", "probabilities", "problem_type_of", "MULTI_LABEL_THRESHOLD"):
        assert getattr(ensemble, name) is getattr(prediction, name)
