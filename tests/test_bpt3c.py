"""BPT3C semantics: batch invariance, training path = eval path, gradient flow, no graph for warm-up chunks."""

from __future__ import annotations

import pytest
import torch
from conftest import no_dropout, small_config
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import reference_bpt3c

from hf_bpt3c import AwdLstmConfig, AwdLstmForSequenceClassification


def pad_batch(docs: list[torch.Tensor], side: str, pad_id: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad 1-D id tensors to a batch on the given side; returns ids and attention_mask."""
    width = max(len(d) for d in docs)
    ids = torch.full((len(docs), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(docs), width, dtype=torch.long)
    for row, doc in enumerate(docs):
        cols = slice(width - len(doc), width) if side == "left" else slice(0, len(doc))
        ids[row, cols] = doc
        mask[row, cols] = 1
    return ids, mask


def random_docs(lengths: list[int], vocab: int, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(2, vocab, (n,), generator=gen) for n in lengths]


@pytest.fixture(scope="module")
def eval_model() -> AwdLstmForSequenceClassification:
    torch.manual_seed(1)
    model = AwdLstmForSequenceClassification(small_config())
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for block in model.classifier.blocks:
            block.batch_norm.running_mean.normal_(0, 0.1)
            block.batch_norm.running_var.uniform_(0.5, 1.5)
    return model.eval()


@settings(max_examples=25, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=1, max_value=75), min_size=1, max_size=6),
    side=st.sampled_from(["left", "right"]),
    seed=st.integers(0, 2**16),
)
def test_batch_invariance(eval_model, lengths, side, seed):
    """Each document's logits in a padded, shuffled batch equal its logits alone (max_len 15: up to 5*max_len)."""
    docs = random_docs(lengths, eval_model.config.vocab_size, seed)
    perm = torch.randperm(len(docs), generator=torch.Generator().manual_seed(seed)).tolist()
    docs = [docs[i] for i in perm]
    ids, mask = pad_batch(docs, side)
    with torch.no_grad():
        batch_logits = eval_model(ids, attention_mask=mask).logits
        for row, doc in enumerate(docs):
            alone = eval_model(doc.unsqueeze(0)).logits[0]
            assert (batch_logits[row] - alone).abs().max() <= 1e-5


def test_batch_invariance_without_mask_uses_pad_id(eval_model):
    docs = random_docs([12, 40, 3], eval_model.config.vocab_size, 3)
    ids, mask = pad_batch(docs, "left")
    with torch.no_grad():
        torch.testing.assert_close(eval_model(ids).logits, eval_model(ids, attention_mask=mask).logits)


def test_fastai_breaking_batch_is_handled():
    """fastai#3379: lengths 100, 50, 28 with bptt 72 lose the 28-token document's outputs in fastai."""
    config = small_config(bptt=72, max_len=1440)
    model = AwdLstmForSequenceClassification(config).eval()
    docs = random_docs([100, 50, 28], config.vocab_size, 0)
    for side in ("left", "right"):
        ids, mask = pad_batch(docs, side)
        with torch.no_grad():
            batch_logits = model(ids, attention_mask=mask).logits
            for row, doc in enumerate(docs):
                assert (batch_logits[row] - model(doc.unsqueeze(0)).logits[0]).abs().max() <= 1e-5


def test_matches_plain_reference_loop(eval_model):
    """Forward equals the independent per-document reference (kept window, pooling, head)."""
    for length in (1, 4, 5, 14, 15, 16, 33, 75):
        doc = random_docs([length], eval_model.config.vocab_size, length)[0]
        with torch.no_grad():
            ours = eval_model(doc.unsqueeze(0)).logits[0]
            ref = reference_bpt3c(eval_model, eval_model.awd_lstm.embeddings(doc))
        assert (ours - ref).abs().max() <= 1e-5, length


def test_training_path_equals_eval_path():
    """With every dropout at 0 and BatchNorm in eval, the training chunk loop gives the eval logits."""
    model = AwdLstmForSequenceClassification(no_dropout())
    docs = random_docs([70, 3, 41, 16, 15], model.config.vocab_size, 7)
    ids, mask = pad_batch(docs, "right")
    model.eval()
    with torch.no_grad():
        eval_logits = model(ids, attention_mask=mask).logits
    model.train()
    model.classifier.eval()  # BatchNorm uses its running statistics
    train_logits = model(ids, attention_mask=mask).logits
    assert train_logits.requires_grad
    assert (train_logits - eval_logits).abs().max() <= 1e-5


def _token_grads(model, embeds: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    embeds = embeds.detach().clone().requires_grad_(True)
    logits = model(inputs_embeds=embeds, attention_mask=mask).logits
    (logits * torch.arange(1, logits.size(-1) + 1, dtype=logits.dtype)).sum().backward()
    return embeds.grad


@pytest.mark.parametrize("length", [7, 15, 16, 38, 52])
def test_gradient_semantics(length):
    """Zero gradient before the kept window, non-zero on every kept token, equal to a detaching reference loop."""
    model = AwdLstmForSequenceClassification(no_dropout()).double()
    model.eval()  # eval still builds the graph for kept chunks when gradients are enabled
    bptt, max_len = model.config.bptt, model.config.max_len
    embeds = torch.randn(1, length, model.config.embedding_size, dtype=torch.float64)
    ours = _token_grads(model, embeds)[0]  # (length, emb)

    ref_embeds = embeds[0].clone().requires_grad_(True)
    ref_logits = reference_bpt3c(model, ref_embeds)
    (ref_logits * torch.arange(1, ref_logits.size(-1) + 1, dtype=ref_logits.dtype)).sum().backward()
    torch.testing.assert_close(ours, ref_embeds.grad, atol=1e-10, rtol=1e-8)

    kept_from = next(s for s in range(0, length, bptt) if length - s <= max_len)
    token_norms = ours.norm(dim=1)
    assert (token_norms[:kept_from] == 0).all()
    assert (token_norms[kept_from:] > 0).all()


def test_gradient_semantics_in_a_padded_batch():
    """The same per-document gradients when documents of different lengths share a left-padded batch."""
    model = AwdLstmForSequenceClassification(no_dropout()).double().eval()
    lengths = [52, 9, 30]
    width = max(lengths)
    embeds = torch.randn(len(lengths), width, model.config.embedding_size, dtype=torch.float64)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, width - n :] = 1
    batch_grads = _token_grads(model, embeds, mask)
    for row, n in enumerate(lengths):
        alone = _token_grads(model, embeds[row : row + 1, width - n :])[0]
        torch.testing.assert_close(batch_grads[row, width - n :], alone, atol=1e-12, rtol=1e-9)
        assert (batch_grads[row, : width - n] == 0).all()


@pytest.mark.parametrize("pooling", ["window", "document"])
def test_warmup_chunks_build_no_graph(pooling):
    """The autograd graph (saved tensors) is the same for a document of 2*max_len and of 10*max_len tokens (pooling
    the whole document too: the chunks before the kept window are pooled without autograd)."""
    config = small_config(max_len=20, bptt=5, classifier_pooling=pooling)
    model = AwdLstmForSequenceClassification(config).train()

    def saved_numel(length: int) -> int:
        ids = torch.randint(2, config.vocab_size, (2, length))
        total = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal total
            total += t.numel()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(ids, labels=torch.tensor([0, 1])).loss.backward()
        return total

    assert saved_numel(10 * config.max_len) == saved_numel(2 * config.max_len)


@settings(max_examples=15, deadline=None)
@given(lengths=st.lists(st.integers(min_value=1, max_value=75), min_size=1, max_size=6), seed=st.integers(0, 2**16))
def test_graph_spans_max_len_whatever_the_length_mix(lengths, seed):
    """Regression (fp32 training used more memory than fastai on the IMDb mix): documents of different lengths
    have their kept windows in different columns of a left-justified batch, and every column with a kept row kept a
    dropped recurrent weight per layer for backward. The kept windows are now aligned: at most
    ceil(max_len / bptt) dropped weights per layer, whatever the lengths."""
    torch.manual_seed(seed)
    config = small_config()
    model = AwdLstmForSequenceClassification(config).train()
    model.classifier.eval()  # BatchNorm: a batch may hold one document
    docs = random_docs(lengths, config.vocab_size, seed)
    ids, mask = pad_batch(docs, "right")
    parameters = {p.data_ptr() for p in model.parameters()}
    recurrent_shapes = {tuple(layer.weight_hh.shape) for layer in model.awd_lstm.layers}
    dropped_weights = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.is_floating_point() and tuple(t.shape) in recurrent_shapes and t.data_ptr() not in parameters:
            dropped_weights.append(t.data_ptr())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(ids, attention_mask=mask, labels=torch.zeros(len(docs), dtype=torch.long)).loss
    loss.backward()
    kept_columns = -(-config.max_len // config.bptt)
    assert 0 < len(set(dropped_weights)) <= config.num_hidden_layers * kept_columns


def test_warmup_chunks_still_shape_the_state(eval_model):
    """Tokens before the kept window change the prediction (they warm up the state)."""
    doc = random_docs([60], eval_model.config.vocab_size, 11)[0]  # kept window: tokens 45..59
    other = doc.clone()
    other[40:45] = torch.randint(2, eval_model.config.vocab_size, (5,), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert (eval_model(doc[None]).logits - eval_model(other[None]).logits).abs().max() > 1e-6


def test_dropout_draws_fresh_masks_per_chunk_in_training():
    """In training the loss is stochastic (dropout on) and back-propagates into every parameter group."""
    config = AwdLstmConfig.for_classification(
        vocab_size=60, embedding_size=8, hidden_size=12, num_hidden_layers=2, bptt=5, max_len=15, num_labels=2
    )
    model = AwdLstmForSequenceClassification(config).train()
    ids = torch.randint(2, 60, (4, 40))
    labels = torch.tensor([0, 1, 1, 0])
    first, second = model(ids, labels=labels).loss, model(ids, labels=labels).loss
    assert not torch.equal(first, second)
    first.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("side", ["left", "right"])
def test_backward_classifier_reads_each_document_reversed(side):
    forward = AwdLstmForSequenceClassification(small_config()).eval()
    backward = AwdLstmForSequenceClassification(small_config(backwards=True)).eval()
    backward.load_state_dict(forward.state_dict())
    docs = random_docs([23, 4, 40], forward.config.vocab_size, 9)
    ids, mask = pad_batch(docs, side)
    with torch.no_grad():
        logits = backward(ids, attention_mask=mask).logits
        for row, doc in enumerate(docs):
            reversed_alone = forward(doc.flip(0).unsqueeze(0)).logits[0]
            assert (logits[row] - reversed_alone).abs().max() <= 1e-5
        assert (logits - forward(ids, attention_mask=mask).logits).abs().max() > 1e-6
