"""`classifier_pooling="document"`: concat pooling over every token, the autograd window unchanged.

Exact against window pooling with an unbounded `max_len` (eval), against the plain reference loop (logits and
gradients), batch invariant; the plan pools every token once (no graph before the kept window: test_bpt3c.py).
"""

from __future__ import annotations

import pytest
import torch
from conftest import no_dropout, small_config
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import reference_bpt3c
from test_bpt3c import pad_batch, random_docs

from hf_bpt3c import AwdLstmConfig, AwdLstmForSequenceClassification
from hf_bpt3c.models.awd_lstm.bpt3c_plan import kept_columns, plan_chunks


def document_model(**overrides) -> AwdLstmForSequenceClassification:
    torch.manual_seed(3)
    model = AwdLstmForSequenceClassification(small_config(classifier_pooling="document", **overrides))
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for block in model.classifier.blocks:
            block.batch_norm.running_mean.normal_(0, 0.1)
            block.batch_norm.running_var.uniform_(0.5, 1.5)
    return model.eval()


def unbounded_window(model: AwdLstmForSequenceClassification, max_len: int) -> AwdLstmForSequenceClassification:
    """The same weights, window pooling, `max_len` at least every document's length."""
    config = AwdLstmConfig.from_dict({**model.config.to_dict(), "classifier_pooling": "window", "max_len": max_len})
    window = AwdLstmForSequenceClassification(config).to(model.dtype)
    window.load_state_dict(model.state_dict())
    return window.eval()


def test_config_refuses_other_poolings():
    with pytest.raises(ValueError, match="classifier_pooling"):
        small_config(classifier_pooling="mean")
    assert small_config().classifier_pooling == "window"  # fastai's rule stays the default


@settings(max_examples=20, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=1, max_value=120), min_size=1, max_size=5),
    side=st.sampled_from(["left", "right"]),
    seed=st.integers(0, 2**16),
)
def test_eval_equals_window_pooling_with_unbounded_max_len(lengths, side, seed):
    """Bitwise: the same chunks, the same pooled tokens (max_len 15, documents up to 8*max_len)."""
    model = document_model()
    window = unbounded_window(model, max_len=max(lengths) + model.config.bptt)
    ids, mask = pad_batch(random_docs(lengths, model.config.vocab_size, seed), side)
    with torch.no_grad():
        assert torch.equal(model(ids, attention_mask=mask).logits, window(ids, attention_mask=mask).logits)


@settings(max_examples=20, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=1, max_value=120), min_size=1, max_size=6),
    side=st.sampled_from(["left", "right"]),
    seed=st.integers(0, 2**16),
)
def test_batch_invariance(lengths, side, seed):
    """Each document's logits in a padded, shuffled batch equal its logits alone."""
    model = document_model()
    docs = random_docs(lengths, model.config.vocab_size, seed)
    ids, mask = pad_batch(docs, side)
    with torch.no_grad():
        batch_logits = model(ids, attention_mask=mask).logits
        for row, doc in enumerate(docs):
            assert (batch_logits[row] - model(doc.unsqueeze(0)).logits[0]).abs().max() <= 1e-5


@pytest.mark.parametrize("length", [1, 7, 15, 16, 38, 52, 121])
def test_logits_and_gradients_equal_the_reference(length):
    """Logits and token gradients equal the plain loop; gradient only inside the kept window, the earlier chunks
    pooled but without autograd; unlike window pooling, the earlier tokens change the logits directly."""
    model = AwdLstmForSequenceClassification(no_dropout(classifier_pooling="document")).double().eval()
    bptt, max_len = model.config.bptt, model.config.max_len
    embeds = torch.randn(1, length, model.config.embedding_size, dtype=torch.float64, requires_grad=True)
    logits = model(inputs_embeds=embeds).logits[0]
    weights = torch.arange(1, logits.numel() + 1, dtype=logits.dtype)
    (logits * weights).sum().backward()

    ref_embeds = embeds[0].detach().clone().requires_grad_(True)
    ref_logits = reference_bpt3c(model, ref_embeds)
    (ref_logits * weights).sum().backward()
    torch.testing.assert_close(logits, ref_logits, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(embeds.grad[0], ref_embeds.grad, atol=1e-10, rtol=1e-8)

    kept_from = next(s for s in range(0, length, bptt) if length - s <= max_len)
    token_norms = embeds.grad[0].norm(dim=1)
    assert (token_norms[:kept_from] == 0).all() and (token_norms[kept_from:] > 0).all()
    window = unbounded_window(model, max_len)  # same weights, fastai's window
    with torch.no_grad():
        window_logits = window(inputs_embeds=embeds).logits[0]
    assert torch.allclose(window_logits, logits) == (kept_from == 0)


def test_training_path_equals_eval_path():
    """With every dropout at 0 and BatchNorm in eval, the training chunk loop (documents aligned on their kept
    windows) gives the eval logits."""
    model = AwdLstmForSequenceClassification(no_dropout(classifier_pooling="document"))
    docs = random_docs([70, 3, 41, 16, 15, 119], model.config.vocab_size, 7)
    ids, mask = pad_batch(docs, "right")
    with torch.no_grad():
        eval_logits = model.eval()(ids, attention_mask=mask).logits
    model.train()
    model.classifier.eval()
    train_logits = model(ids, attention_mask=mask).logits
    assert train_logits.requires_grad
    assert (train_logits - eval_logits).abs().max() <= 1e-5


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=1, max_value=200), min_size=1, max_size=6),
    bptt=st.integers(1, 9),
    windows=st.integers(1, 4),
    grad=st.booleans(),
)
def test_plan_pools_every_token_once(lengths, bptt, windows, grad):
    """Document pooling: every token of every document is pooled exactly once; the chunks with autograd are
    those of window pooling."""
    lengths = torch.tensor(lengths)
    max_len = bptt * windows
    plan = plan_chunks(lengths, bptt, max_len, grad, training=grad, pooling="document")
    window_plan = plan_chunks(lengths, bptt, max_len, grad, training=grad)
    assert [c.grad for c in plan.chunks] == [c.grad for c in window_plan.chunks]
    assert torch.equal(plan.pooled_from, plan.first) and torch.equal(plan.kept_from, window_plan.kept_from)
    pooled_count = torch.zeros(len(lengths), dtype=torch.long)
    for chunk in plan.chunks:
        n = chunk.rows
        kept, _ = kept_columns(chunk, plan.ends[:n], plan.pooled_from[:n])
        assert chunk.pooled or not kept.any()
        pooled_count[:n] += kept.sum(dim=1)
    assert torch.equal(pooled_count, plan.lengths)


def test_plan_refuses_other_poolings():
    with pytest.raises(ValueError, match="pooling"):
        plan_chunks(torch.tensor([3]), 2, 4, False, False, pooling="all")
