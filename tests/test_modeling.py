"""The encoder, the LM head and the classifier as transformers models: config, regularisers, losses, save/load."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import no_dropout, small_config
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

from hf_bpt3c import AwdLstmConfig, AwdLstmForCausalLM, AwdLstmForSequenceClassification, AwdLstmModel
from hf_bpt3c.models.awd_lstm.lstm_kernels import keep_mask
from hf_bpt3c.models.awd_lstm.modeling_awd_lstm import embed_with_dropout, locked_dropout

# ---------------------------------------------------------------------------------------------- configuration


def test_config_defaults_match_fastai_v2():
    config = AwdLstmConfig()
    assert config.model_type == "awd_lstm"
    sizes = (config.embedding_size, config.hidden_size, config.num_hidden_layers, config.pad_token_id)
    assert sizes == (400, 1152, 3, 1)
    assert (config.bptt, config.max_len, config.tie_word_embeddings) == (72, 1440, True)
    dropouts = [config.output_dropout, config.hidden_dropout, config.input_dropout]
    assert dropouts + [config.embedding_dropout, config.weight_dropout] == [0.1, 0.15, 0.25, 0.02, 0.2]
    assert config.classifier_hidden_sizes == [50] and config.classifier_dropouts == [0.1]
    assert config.layer_sizes == [(400, 1152), (1152, 1152), (1152, 400)]


def test_fastai_classifier_dropouts_in_one_call():
    config = AwdLstmConfig.for_classification(num_labels=5)
    got = [config.embedding_dropout, config.weight_dropout, config.input_dropout, config.hidden_dropout]
    assert got == pytest.approx([0.025, 0.25, 0.2, 0.15])
    assert config.output_dropout == pytest.approx(0.2) and config.classifier_dropouts == [0.1]
    assert config.num_labels == 5
    assert AwdLstmConfig.for_classification(drop_mult=1.0, weight_dropout=0.1).weight_dropout == 0.1
    assert AwdLstmConfig.for_language_model(drop_mult=0.5).input_dropout == pytest.approx(0.125)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(bptt=0), ValueError, "bptt"),
        (dict(max_len=-3), ValueError, "max_len"),
        (dict(bptt=80, max_len=72), ValueError, "max_len"),
        (dict(hidden_size=12.5), TypeError, "hidden_size"),
        (dict(weight_dropout=1.0), ValueError, "weight_dropout"),
        (dict(classifier_hidden_sizes=[50, 20], classifier_dropouts=[0.1]), ValueError, "classifier_dropouts"),
        (dict(vocab_size=10, pad_token_id=10), ValueError, "pad_token_id"),
    ],
)
def test_config_rejects_bad_values(kwargs, error, words):
    with pytest.raises(error, match=words):
        AwdLstmConfig(**kwargs)


def test_config_round_trip(tmp_path):
    config = small_config(id2label={0: "neg", 1: "neu", 2: "pos"})
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, AwdLstmConfig)
    drop_path = lambda d: {k: v for k, v in d.items() if k != "_name_or_path"}  # noqa: E731
    assert drop_path(loaded.to_dict()) == drop_path(config.to_dict())


# ---------------------------------------------------------------------------------------------- regularisers


def test_locked_dropout_shares_the_mask_over_time():
    x = torch.ones(4, 50, 6)
    dropped = locked_dropout(x, 0.5, training=True)
    assert torch.equal(dropped, dropped[:, :1].expand_as(dropped))  # same mask at every step
    assert set(dropped.unique().tolist()) <= {0.0, 2.0}
    assert torch.equal(locked_dropout(x, 0.5, training=False), x)


def test_embedding_dropout_drops_whole_words():
    weight = torch.randn(20, 5)
    ids = torch.tensor([[3, 3, 4, 3, 4, 5]])
    out = embed_with_dropout(ids, weight, 0.5, True, padding_idx=None)
    scale = out / F.embedding(ids, weight)  # per position: 0 or 2, the same for every feature and occurrence
    per_position = scale[0, :, 0]
    assert torch.allclose(scale, per_position[None, :, None].expand_as(scale))
    assert per_position[0] == per_position[1] == per_position[3] and per_position[2] == per_position[4]
    assert set(per_position.tolist()) <= {0.0, 2.0}


def test_weight_dropout_is_dropconnect_on_the_recurrent_weight_only():
    model = AwdLstmModel(small_config(weight_dropout=0.5)).train()
    layer = model.layers[0]
    dropped = layer.recurrent_weight()
    zeroed = dropped == 0
    assert 0.3 < zeroed.float().mean() < 0.7
    assert torch.allclose(dropped[~zeroed], 2 * layer.weight_hh[~zeroed])
    model.eval()
    assert torch.equal(layer.recurrent_weight(), layer.weight_hh)


def test_deepcopy_state_dict_and_no_warnings():
    config = small_config()
    for cls in (AwdLstmModel, AwdLstmForCausalLM, AwdLstmForSequenceClassification):
        model = cls(config).train()
        copy.deepcopy(model)  # fails in fastai (non-leaf tensor attribute)
        ids = torch.randint(2, config.vocab_size, (2, 12))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model(ids)
        copy.deepcopy(model)  # and after a forward
        tensors = [t.data_ptr() for t in model.state_dict().values()]
        n_tied = 1 if cls is AwdLstmForCausalLM else 0
        assert len(set(tensors)) == len(tensors) - n_tied  # each weight once (the decoder is tied)
        assert not any("raw" in key for key in model.state_dict())
        for module in model.modules():  # no derived tensors stored as plain attributes
            assert not any(isinstance(v, torch.Tensor) for v in vars(module).values())


# ---------------------------------------------------------------------------------------------- language model


def test_lm_loss_shifts_labels_and_ignores_minus_100():
    model = AwdLstmForCausalLM(no_dropout()).eval()
    ids = torch.randint(2, 60, (2, 9))
    labels = ids.clone()
    labels[0, 4:] = -100
    out = model(ids, labels=labels)
    logits = out.logits[:, :-1].reshape(-1, 60)
    targets = labels[:, 1:].reshape(-1)
    assert torch.allclose(out.loss, F.cross_entropy(logits, targets, ignore_index=-100))


def test_lm_state_continues_a_stream():
    model = AwdLstmForCausalLM(no_dropout()).eval()
    ids = torch.randint(2, 60, (3, 20))
    with torch.no_grad():
        whole = model(ids)
        first = model(ids[:, :8])
        second = model(ids[:, 8:], state=first.state)
    torch.testing.assert_close(torch.cat([first.logits, second.logits], 1), whole.logits)
    for (h, c), (h2, c2) in zip(second.state, whole.state):
        torch.testing.assert_close(h, h2)
        torch.testing.assert_close(c, c2)
    assert model(ids, use_cache=False).state is None


@pytest.mark.parametrize("side", ["left", "right"])
def test_lm_padding_is_skipped(side):
    """Each padded row's logits (at tokens) and final state equal the row run alone."""
    model = AwdLstmForCausalLM(no_dropout()).eval()
    lengths = [9, 4, 7]
    ids = torch.full((3, 9), 1)
    mask = torch.zeros(3, 9, dtype=torch.long)
    docs = [torch.randint(2, 60, (n,)) for n in lengths]
    for row, doc in enumerate(docs):
        cols = slice(9 - len(doc), 9) if side == "left" else slice(0, len(doc))
        ids[row, cols], mask[row, cols] = doc, 1
    with torch.no_grad():
        batch = model(ids, attention_mask=mask)
        for row, doc in enumerate(docs):
            alone = model(doc[None])
            torch.testing.assert_close(batch.logits[row][mask[row].bool()], alone.logits[0])
            for (h, c), (h1, c1) in zip(batch.state, alone.state):
                torch.testing.assert_close(h[row], h1[0])
                torch.testing.assert_close(c[row], c1[0])


def test_lm_rejects_a_state_of_the_wrong_shape():
    model = AwdLstmForCausalLM(small_config())
    state = model(torch.randint(2, 60, (2, 3)), use_cache=True).state
    with pytest.raises(ValueError, match="state"):
        model(torch.randint(2, 60, (3, 3)), state=state)


# ---------------------------------------------------------------------------------------------- classifier losses


def test_single_label_loss_is_cross_entropy():
    model = AwdLstmForSequenceClassification(small_config()).eval()
    ids, labels = torch.randint(2, 60, (4, 11)), torch.tensor([0, 2, 1, 2])
    out = model(ids, labels=labels)
    assert model.config.problem_type == "single_label_classification"
    assert torch.allclose(out.loss, F.cross_entropy(out.logits, labels))


def test_multi_label_loss_is_bce():
    model = AwdLstmForSequenceClassification(small_config(problem_type="multi_label_classification")).eval()
    ids, labels = torch.randint(2, 60, (4, 11)), torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]])
    out = model(ids, labels=labels)
    assert torch.allclose(out.loss, F.binary_cross_entropy_with_logits(out.logits, labels.float()))


def test_regression_loss_is_mse():
    model = AwdLstmForSequenceClassification(small_config(num_labels=1)).eval()
    ids, labels = torch.randint(2, 60, (4, 11)), torch.tensor([0.5, -1.0, 2.0, 0.0])
    out = model(ids, labels=labels)
    assert model.config.problem_type == "regression"
    assert torch.allclose(out.loss, F.mse_loss(out.logits.squeeze(-1), labels))


def test_training_steps_on_a_tensor_batch_reduce_the_loss():
    model = AwdLstmForSequenceClassification(no_dropout(num_labels=2)).train()  # BatchNorm on batch statistics
    ids = torch.randint(2, 60, (8, 40))
    labels = torch.tensor([0, 1] * 4)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(10):
        loss = model(ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# ---------------------------------------------------------------------------------------------- save / load


def test_save_and_reload_give_identical_logits(tmp_path):
    model = AwdLstmForCausalLM(small_config()).eval()
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")
    assert "decoder.weight" not in saved and "decoder.bias" in saved  # the tied weight is not stored
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert loaded.decoder.weight is loaded.awd_lstm.embeddings.weight  # re-tied on load
    ids = torch.randint(2, 60, (2, 13))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)


def test_classifier_round_trip(tmp_path):
    model = AwdLstmForSequenceClassification(small_config(id2label={0: "a", 1: "b", 2: "c"})).eval()
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, AwdLstmForSequenceClassification)
    assert loaded.config.id2label == {0: "a", 1: "b", 2: "c"}
    ids = torch.randint(2, 60, (3, 40))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)


def test_lm_checkpoint_loads_into_the_classifier_and_the_base_model(tmp_path):
    lm = AwdLstmForCausalLM(small_config())
    lm.save_pretrained(tmp_path)
    classifier = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=4)
    base = AutoModel.from_pretrained(tmp_path)
    assert isinstance(classifier, AwdLstmForSequenceClassification) and isinstance(base, AwdLstmModel)
    assert classifier.config.num_labels == 4
    for key, value in lm.awd_lstm.state_dict().items():
        assert torch.equal(classifier.awd_lstm.state_dict()[key], value), key
        assert torch.equal(base.state_dict()[key], value), key


@pytest.mark.parametrize("p", [0.05, 0.25, 0.5, 0.9])
def test_keep_mask_probability_has_no_positional_bias(p):
    """DropConnect's mask takes three 16-bit words from each 64-bit draw: every word position must keep with
    probability 1 - p (a word holding random_()'s always-zero top bit would not)."""
    torch.manual_seed(0)
    like = torch.empty(600, 1000)
    keep = keep_mask(like, p)
    assert keep.shape == like.shape and keep.dtype == torch.bool
    n = keep.numel()
    for position in range(3):  # the word's place inside its 64-bit draw
        kept = keep.flatten()[position::3].double().mean().item()
        sigma = (p * (1 - p) / (n / 3)) ** 0.5
        assert abs(kept - (1 - p)) < 5 * sigma, (position, kept)
    for block_index in range(8):  # and no bias by column block either
        block = keep[:, block_index * 125 : (block_index + 1) * 125].double().mean().item()
        assert abs(block - (1 - p)) < 5 * (p * (1 - p) / (600 * 125)) ** 0.5


def test_dropconnect_gradient_flows_through_kept_weights_only():
    model = AwdLstmModel(small_config(weight_dropout=0.3)).train()
    layer = model.layers[0]
    torch.manual_seed(1)
    dropped = layer.recurrent_weight()
    dropped.sum().backward()
    kept = dropped != 0
    assert torch.allclose(layer.weight_hh.grad[kept], torch.full_like(layer.weight_hh.grad[kept], 1 / 0.7))
    assert torch.all(layer.weight_hh.grad[~kept] == 0)
