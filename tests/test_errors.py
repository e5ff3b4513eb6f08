"""Bad input gets a ValueError/TypeError that names the argument and the expected form."""

from __future__ import annotations

import pytest
import torch
from conftest import small_config

from hf_bpt3c import AwdLstmForCausalLM, AwdLstmForSequenceClassification, AwdLstmModel

HEADS = [AwdLstmModel, AwdLstmForCausalLM, AwdLstmForSequenceClassification]
IDS = torch.randint(2, 60, (2, 9))


@pytest.fixture(params=HEADS, ids=lambda cls: cls.__name__)
def model(request):
    return request.param(small_config()).eval()


@pytest.mark.parametrize(
    "input_ids, error, words",
    [
        (torch.tensor([[3, 60, 4]]), ValueError, r"input_ids must lie in \[0, vocab_size=60\)"),
        (torch.tensor([[3, -1, 4]]), ValueError, r"input_ids must lie in"),
        (torch.tensor([[3.0, 4.0]]), TypeError, "input_ids must hold integer token ids"),
        (torch.tensor([3, 4, 5]), ValueError, r"input_ids must have shape \(batch, seq\)"),
        (torch.ones(2, 3, 4, dtype=torch.long), ValueError, r"input_ids must have shape \(batch, seq\)"),
        (torch.zeros(0, 5, dtype=torch.long), ValueError, "empty"),
        ([[3, 4, 5]], TypeError, "input_ids must be a torch.LongTensor"),
    ],
)
def test_bad_input_ids(model, input_ids, error, words):
    with pytest.raises(error, match=words):
        model(input_ids)


def test_input_ids_and_embeds_are_exclusive(model):
    with pytest.raises(ValueError, match="exactly one of input_ids"):
        model(IDS, inputs_embeds=torch.randn(2, 9, 8))
    with pytest.raises(ValueError, match="exactly one of input_ids"):
        model()
    with pytest.raises(ValueError, match=r"inputs_embeds must have shape \(batch, seq, 8\)"):
        model(inputs_embeds=torch.randn(2, 9, 5))


@pytest.mark.parametrize(
    "mask, words",
    [
        (torch.ones(2, 8, dtype=torch.long), r"attention_mask must have shape \(2, 9\)"),
        (torch.ones(3, 9, dtype=torch.long), r"attention_mask must have shape \(2, 9\)"),
        (torch.tensor([[1, 1, 0, 0, 1, 1, 1, 1, 1], [1] * 9]), "row 0 has padding between tokens"),
        (torch.full((2, 9), 2), "only 0 \\(padding\\) and 1"),
    ],
)
def test_bad_attention_mask(model, mask, words):
    with pytest.raises(ValueError, match=words):
        model(IDS, attention_mask=mask)


def test_a_longer_mask_is_accepted_by_the_lm_for_generation():
    lm = AwdLstmForCausalLM(small_config()).eval()
    with torch.no_grad():
        full = lm(IDS)
        step = lm(IDS[:, -1:], attention_mask=torch.ones(2, 9, dtype=torch.long), state=lm(IDS[:, :-1]).state)
    torch.testing.assert_close(step.logits[:, -1], full.logits[:, -1])


def test_all_padding_document_is_refused_by_the_classifier():
    classifier = AwdLstmForSequenceClassification(small_config()).eval()
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1] = 0
    with pytest.raises(ValueError, match="document 1 has no token"):
        classifier(IDS, attention_mask=mask)


def test_all_padding_row_keeps_its_state_in_the_lm():
    lm = AwdLstmForCausalLM(small_config()).eval()
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1] = 0
    with torch.no_grad():
        out = lm(IDS, attention_mask=mask)
    assert all(
        torch.equal(h[1], torch.zeros_like(h[1])) and torch.equal(c[1], torch.zeros_like(c[1])) for h, c in out.state
    )
    assert torch.equal(out.logits[1], lm.decoder(torch.zeros(9, 8)))  # zero output at padding


def test_pad_ids_inside_a_document_without_mask_are_refused():
    classifier = AwdLstmForSequenceClassification(small_config()).eval()
    ids = IDS.clone()
    ids[0, 4] = 1
    with pytest.raises(ValueError, match="pass attention_mask"):
        classifier(ids)
    classifier(ids, attention_mask=torch.ones_like(ids))  # with a mask the pad id is an ordinary token


@pytest.mark.parametrize(
    "problem_type, num_labels, labels, error, words",
    [
        (None, 3, torch.tensor([0.0, 1.0]), ValueError, r"labels must have shape \(2, 3\) for multi-label"),
        ("single_label_classification", 3, torch.tensor([0.0, 1.0]), TypeError, "integer class ids"),
        ("single_label_classification", 3, torch.tensor([0, 3]), ValueError, r"class ids in \[0, num_labels=3\)"),
        ("single_label_classification", 3, torch.tensor([-1, 0]), ValueError, "class ids in"),
        ("single_label_classification", 3, torch.tensor([0, 1, 2]), ValueError, "labels must have 2 rows"),
        ("multi_label_classification", 3, torch.tensor([[0, 1], [1, 0]]), ValueError, r"shape \(2, 3\)"),
        ("regression", 1, torch.tensor([[0.5, 1.0], [1.0, 2.0]]), ValueError, "2x1 values for regression"),
        (None, 3, [0, 1], TypeError, "labels must be a tensor"),
    ],
)
def test_bad_labels(problem_type, num_labels, labels, error, words):
    classifier = AwdLstmForSequenceClassification(small_config(num_labels=num_labels, problem_type=problem_type))
    with pytest.raises(error, match=words):
        classifier(IDS, labels=labels)


def test_nonfinite_loss_raises_when_asked():
    classifier = AwdLstmForSequenceClassification(small_config(raise_on_nonfinite=True)).eval()
    with torch.no_grad():
        classifier.classifier.blocks[-1].linear.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="not finite"):
        classifier(IDS, labels=torch.tensor([0, 1]))
    classifier.config.raise_on_nonfinite = False
    assert torch.isnan(classifier(IDS).logits).all()  # off by default: no check, no cost
