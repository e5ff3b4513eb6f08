"""Transfer to a target vocabulary (fastai's `match_embeds`) and the fine-tuning set-up of the example script:
sizes, `bptt` and `backwards` from the checkpoint, the target vocabulary built from the target texts."""

from __future__ import annotations

import importlib

import datasets
import pytest
import torch
from conftest import small_config
from transformers import TrainingArguments

from hf_bpt3c import AwdLstmForCausalLM, AwdLstmForSequenceClassification, AwdLstmModel, AwdLstmTokenizer
from hf_bpt3c.convert.transfer import adapt_vocabulary, vocabulary_of
from hf_bpt3c.models.awd_lstm.tokenization_awd_lstm import SPECIAL_TOKENS

PRETRAINING_TEXTS = ["The cat sat on the mat.", "A dog ran in the park!", "The film was long."] * 3
TARGET_TEXTS = ["The film was great, the cast superb.", "A dull film; the plot was thin."] * 3


def tokenizers() -> tuple[AwdLstmTokenizer, AwdLstmTokenizer]:
    old = AwdLstmTokenizer.from_texts(PRETRAINING_TEXTS, min_freq=1)
    new = AwdLstmTokenizer.from_texts(TARGET_TEXTS, min_freq=1)
    return old, new


def pretrained_lm(vocab_size: int) -> AwdLstmForCausalLM:
    torch.manual_seed(0)
    model = AwdLstmForCausalLM(small_config(vocab_size=vocab_size)).eval()
    with torch.no_grad():
        model.decoder.bias.normal_(0, 1.0)  # distinct biases, so that a wrong mapping shows
    return model


def test_shared_tokens_keep_rows_new_tokens_get_the_mean():
    old, new = tokenizers()
    model = pretrained_lm(len(old))
    transfer = adapt_vocabulary(model, old, new)
    adapted = transfer.model
    old_itos, new_itos = vocabulary_of(old), vocabulary_of(new)
    old_ids = {token: i for i, token in enumerate(old_itos)}
    emb, bias = model.awd_lstm.embeddings.weight, model.decoder.bias
    shared = [t for t in new_itos if t in old_ids]
    assert "the" in shared and "film" in shared and "superb" not in shared
    for i, token in enumerate(new_itos):
        row, b = adapted.awd_lstm.embeddings.weight[i], adapted.decoder.bias[i]
        if token in old_ids:
            assert torch.equal(row, emb[old_ids[token]]) and torch.equal(b, bias[old_ids[token]]), token
        else:
            assert torch.equal(row, emb.mean(0)) and torch.equal(b, bias.mean()), token
    for special in ("xxunk", "xxpad", "xxbos"):  # the special tokens map to themselves
        assert new_itos.index(special) == old_itos.index(special)
    assert transfer.found == len(shared) and transfer.total == len(new_itos) == adapted.config.vocab_size
    assert adapted.decoder.weight is adapted.awd_lstm.embeddings.weight  # still tied
    for name, param in model.named_parameters():  # every other weight unchanged, the source model untouched
        if "embeddings" not in name and "decoder" not in name:
            assert torch.equal(param, adapted.get_parameter(name)), name
    assert model.config.vocab_size == len(old)


def test_every_model_class_is_adapted():
    old, new = tokenizers()
    torch.manual_seed(0)
    for cls in (AwdLstmModel, AwdLstmForSequenceClassification):
        model = cls(small_config(vocab_size=len(old)))
        adapted = adapt_vocabulary(model, old, new).model
        assert type(adapted) is cls and adapted.config.vocab_size == len(new)
        assert adapted.get_input_embeddings().weight.shape == (len(new), 8)
    with pytest.raises(TypeError, match="old_vocab"):
        adapt_vocabulary(pretrained_lm(len(old)), "not a vocabulary", new)


@pytest.mark.fastai
def test_matches_fastai_match_embeds():
    """Our adaptation of a real fastai LM state equals fastai 2.8's `match_embeds` on the same inputs."""
    learner = pytest.importorskip("fastai.text.learner", reason="fastai is the reference")
    old, new = tokenizers()
    model = pretrained_lm(len(old))
    old_itos, new_itos = vocabulary_of(old), vocabulary_of(new)
    fastai_weights = {
        "0.encoder.weight": model.awd_lstm.embeddings.weight.detach().clone(),
        "0.encoder_dp.emb.weight": model.awd_lstm.embeddings.weight.detach().clone(),
        "1.decoder.weight": model.awd_lstm.embeddings.weight.detach().clone(),
        "1.decoder.bias": model.decoder.bias.detach().clone(),
    }
    expected = learner.match_embeds(fastai_weights, old_itos, new_itos)
    adapted = adapt_vocabulary(model, old, new).model
    assert torch.equal(adapted.awd_lstm.embeddings.weight, expected["0.encoder.weight"])
    assert torch.equal(adapted.decoder.bias, expected["1.decoder.bias"])


# ----------------------------------------------------------------------------------------------------------------
# The example script's fine-tuning set-up
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lm_script():
    return importlib.import_module("hf_bpt3c.training.scripts")  # what examples/run_language_modeling.py runs


@pytest.fixture
def pretrained_folder(tmp_path):
    old, _ = tokenizers()
    model = AwdLstmForCausalLM(small_config(vocab_size=len(old), bptt=7, max_len=21, backwards=True))
    model.save_pretrained(tmp_path / "pretrained")
    old.save_pretrained(tmp_path / "pretrained")
    return tmp_path / "pretrained"


def test_fine_tuning_takes_sizes_bptt_and_backwards_from_the_checkpoint(lm_script, pretrained_folder):
    texts = datasets.Dataset.from_dict({"text": TARGET_TEXTS})
    args = lm_script.LanguageModelArguments(model_name_or_path=str(pretrained_folder), min_freq=1, drop_mult=0.5)
    model, tokenizer, notes = lm_script.prepare_model(args, None, texts, "text")
    assert (model.config.bptt, model.config.backwards, model.config.hidden_size) == (7, True, 12)
    assert vocabulary_of(tokenizer) == vocabulary_of(tokenizers()[1])  # built from the target texts
    assert model.config.vocab_size == len(tokenizer) and "match_embeds" in notes["vocabulary"]
    assert model.config.weight_dropout == pytest.approx(0.1)  # fastai's LM dropouts times drop_mult

    explicit = lm_script.LanguageModelArguments(model_name_or_path=str(pretrained_folder), bptt=9, backwards=False)
    model, _, _ = lm_script.prepare_model(explicit, None, texts, "text")
    assert (model.config.bptt, model.config.backwards) == (9, False)

    kept = lm_script.LanguageModelArguments(model_name_or_path=str(pretrained_folder), keep_vocab=True)
    model, tokenizer, _ = lm_script.prepare_model(kept, None, texts, "text")
    assert vocabulary_of(tokenizer) == vocabulary_of(tokenizers()[0]) and model.config.vocab_size == len(tokenizer)

    wrong_size = lm_script.LanguageModelArguments(model_name_or_path=str(pretrained_folder), hidden_size=64)
    with pytest.raises(ValueError, match="--hidden_size 64 differs from the pretrained model's 12"):
        lm_script.prepare_model(wrong_size, None, texts, "text")


def test_from_scratch_uses_ulmfit_sizes_unless_given(lm_script):
    texts = datasets.Dataset.from_dict({"text": TARGET_TEXTS})
    args = lm_script.LanguageModelArguments(min_freq=1, embedding_size=16)
    model, tokenizer, notes = lm_script.prepare_model(args, None, texts, "text")
    config = model.config
    assert (config.embedding_size, config.hidden_size, config.num_hidden_layers, config.bptt) == (16, 1152, 3, 72)
    assert config.vocab_size == len(tokenizer) and notes == {"start": "from scratch"}
    assert tokenizer.convert_ids_to_tokens(list(range(len(SPECIAL_TOKENS)))) == list(SPECIAL_TOKENS)


def test_frozen_epochs_train_only_the_embedding_and_decoder(lm_script, pretrained_folder, tmp_path):
    """fastai's first fine-tuning step: the LSTM layers stay exactly as pretrained, the embedding (and decoder bias)
    move, and afterwards every parameter is trainable again."""
    texts = datasets.Dataset.from_dict({"text": TARGET_TEXTS * 4})
    args = lm_script.LanguageModelArguments(model_name_or_path=str(pretrained_folder), min_freq=1)
    model, tokenizer, _ = lm_script.prepare_model(args, None, texts, "text")
    training = TrainingArguments(
        tmp_path / "out", per_device_train_batch_size=2, report_to="none", use_cpu=True, disable_tqdm=True
    )
    streams = lm_script.tokenize_streams(texts, "text", tokenizer, 2, model.config, training, None)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    lm_script.train_frozen_epochs(model, args, training, streams, tokenizer, epochs=1)
    for name, param in model.named_parameters():
        moved = not torch.equal(param, before[name])
        assert moved == ("embeddings" in name or "decoder" in name), name
        assert param.requires_grad, name
