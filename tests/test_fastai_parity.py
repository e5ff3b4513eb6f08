"""Parity with fastai 2.8 (the reference implementation): same weights, same eval outputs (<= 1e-5)."""

from __future__ import annotations

import pytest
import torch
from fastai_reference import randomize_head_batchnorm

from hf_bpt3c import AwdLstmConfig, AwdLstmForCausalLM, AwdLstmForSequenceClassification
from hf_bpt3c.convert import config_kwargs_from_fastai, fastai_to_hf_state_dict

fastai_text = pytest.importorskip("fastai.text.all", reason="fastai is the parity reference")
pytestmark = pytest.mark.fastai

VOCAB, BPTT, MAX_LEN = 97, 7, 21
FASTAI_CONFIG = dict(emb_sz=16, n_hid=24, n_layers=3, pad_token=1, bidir=False, output_p=0.1, hidden_p=0.15)
FASTAI_CONFIG.update(input_p=0.25, embed_p=0.02, weight_p=0.2)


def fastai_lm():
    torch.manual_seed(0)
    config = dict(FASTAI_CONFIG, tie_weights=True, out_bias=True)
    model = fastai_text.get_language_model(fastai_text.AWD_LSTM, VOCAB, config=config)
    with torch.no_grad():
        model[1].decoder.bias.normal_(0, 0.1)  # fastai zeroes it; make the mapping visible
    return model.eval()


def fastai_classifier():
    torch.manual_seed(0)
    model = fastai_text.get_text_classifier(
        fastai_text.AWD_LSTM, VOCAB, 3, seq_len=BPTT, config=dict(FASTAI_CONFIG), max_len=MAX_LEN
    )
    randomize_head_batchnorm(model[1])
    return model.eval()


def ours_from(fastai_model, cls):
    state_dict = fastai_model.state_dict()
    config = AwdLstmConfig(**config_kwargs_from_fastai(state_dict), bptt=BPTT, max_len=MAX_LEN, pad_token_id=1)
    model = cls(config)
    missing, unexpected = model.load_state_dict(fastai_to_hf_state_dict(state_dict), strict=False)
    assert not unexpected
    assert set(missing) <= {"decoder.weight"}  # tied, restored by tie_weights
    model.tie_weights()
    return model.eval()


def test_config_sizes_read_from_checkpoint():
    kwargs = config_kwargs_from_fastai(fastai_classifier().state_dict())
    assert kwargs == dict(
        vocab_size=VOCAB,
        embedding_size=16,
        num_hidden_layers=3,
        hidden_size=24,
        classifier_hidden_sizes=[50],
        num_labels=3,
        classifier_dropouts=[0.1],
    )


def test_language_model_logits_and_stream_state():
    reference = fastai_lm()
    ours = ours_from(reference, AwdLstmForCausalLM)
    assert ours.decoder.weight is ours.awd_lstm.embeddings.weight
    ids = torch.randint(0, VOCAB, (3, 30), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference.reset()
        ref_first, ref_second = reference(ids[:, :18])[0], reference(ids[:, 18:])[0]  # fastai keeps the state
        first = ours(ids[:, :18])
        second = ours(ids[:, 18:], state=first.state)
    assert (first.logits - ref_first).abs().max() <= 1e-5
    assert (second.logits - ref_second).abs().max() <= 1e-5


@pytest.mark.parametrize("length", [1, 6, 7, 20, 21, 22, 50, 64])
def test_classifier_single_document(length):
    reference = fastai_classifier()
    ours = ours_from(reference, AwdLstmForSequenceClassification)
    ids = torch.randint(2, VOCAB, (1, length), generator=torch.Generator().manual_seed(length))
    with torch.no_grad():
        ref_logits = reference(ids)[0]
        logits = ours(ids).logits
    assert (logits - ref_logits).abs().max() <= 1e-5


def test_classifier_batch_padded_as_fastai_needs():
    """fastai's layout: rows sorted by length (descending), `pad_chunk` padding, batch width a multiple of bptt.

    Lengths are <= max_len so that fastai's batch-level window equals each document's own window.
    """
    reference = fastai_classifier()
    ours = ours_from(reference, AwdLstmForSequenceClassification)
    gen = torch.Generator().manual_seed(3)
    lengths = [21, 19, 15, 8, 7, 3, 1]
    width = -(-max(lengths) // BPTT) * BPTT
    docs = [torch.randint(2, VOCAB, (n,), generator=gen) for n in lengths]
    batch = torch.stack(
        [fastai_text.pad_chunk(doc, pad_idx=1, pad_first=True, seq_len=BPTT, pad_len=width) for doc in docs]
    )
    with torch.no_grad():
        ref_logits = reference(batch)[0]
        logits = ours(batch).logits  # no attention_mask: pad id 1 marks padding, as in fastai
    assert (logits - ref_logits).abs().max() <= 1e-5
    with torch.no_grad():  # and each equals the document alone, in fastai too
        for row, doc in enumerate(docs):
            assert (reference(doc[None])[0][0] - ref_logits[row]).abs().max() <= 1e-5
