"""Other languages in the training scripts: the tokenizer type and language chosen (`--tokenizer_type`, `--lang`,
`--sp_vocab_size`), a pretrained SentencePiece start keeping its model and mapping its rows onto the target
vocabulary (fastai's `match_embeds`), and `with_vocabulary` against sentencepiece's own pieces."""

from __future__ import annotations

import dataclasses
from collections import Counter

import datasets
import pytest
import torch

from hf_bpt3c import AwdLstmConfig, AwdLstmForCausalLM, AwdLstmTokenizer
from hf_bpt3c.models.awd_lstm.fastai_rules import apply_rules, make_vocab
from hf_bpt3c.models.awd_lstm.sentencepiece_backend import train
from hf_bpt3c.training.scripts import LanguageModelArguments, build_tokenizer, prepare_model, tokenizer_settings

pytest.importorskip("sentencepiece")

PRETRAINING = [
    "Die Regierung in Wien plant eine neue Steuerreform für das kommende Jahr.",
    "Der Nationalrat hat am Mittwoch über das Budget der Republik beraten.",
    "Österreichs Wirtschaft wächst langsamer als erwartet, sagen die Ökonomen.",
    "Im Fußball gewann Rapid Wien das Derby gegen die Austria mit zwei zu eins.",
    "Die Forscher entdeckten einen neuen Planeten außerhalb unseres Sonnensystems.",
    "Das Burgtheater zeigt ab Freitag eine Neuinszenierung von Goethes Faust.",
] * 6
TARGET = [
    "Die Bank erhöht die Zinsen für Kredite, die Börse reagiert mit Verlusten.",
    "Ein neues Smartphone kommt im Herbst auf den Markt, teurer als das alte.",
    "Die Regierung streitet über die Steuerreform und das Budget.",
    "Wissenschafter messen die Temperatur der Ozeane mit neuen Satelliten.",
] * 5


def data(texts: list[str]) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"text": texts})


@pytest.fixture(scope="module")
def sentencepiece_model() -> tuple[bytes, list[str]]:
    return train(PRETRAINING, "de", vocab_size=120, min_freq=1)


def test_with_vocabulary_is_fastais_target_vocabulary(sentencepiece_model):
    """The pretrained model's pieces of the new texts, counted and `make_vocab`ed as fastai does (pieces from
    sentencepiece itself), the SentencePiece model unchanged; the ids of the new tokenizer equal fastai's."""
    import sentencepiece as spm

    model, itos = sentencepiece_model
    pretrained = AwdLstmTokenizer.from_sentencepiece(model, itos, lang="de")
    target = pretrained.with_vocabulary(TARGET, min_freq=2)
    processor = spm.SentencePieceProcessor(model_proto=model)
    counts = Counter(piece for text in TARGET for piece in processor.EncodeAsPieces(f"xxbos {apply_rules(text)}"))
    expected_itos = make_vocab(counts, 2, 60000)
    assert target.convert_ids_to_tokens(list(range(len(target)))) == expected_itos
    assert target.tokenizer_type == "sentencepiece" and target.init_kwargs["lang"] == "de"
    o2i = {tok: i for i, tok in enumerate(expected_itos)}
    for text in [*TARGET[:4], "Völlig neue Wörter: Quantencomputer!"]:
        pieces = processor.EncodeAsPieces(f"xxbos {apply_rules(text)}")
        assert target(text)["input_ids"] == [o2i.get(piece, 0) for piece in pieces]


def test_word_tokenizer_with_vocabulary_is_from_texts():
    pretrained = AwdLstmTokenizer.from_texts(["A film about a dog.", "Another film."], min_freq=1)
    texts = ["The dog barks.", "The cat sleeps; the dog barks."]
    assert pretrained.tokenizer_type == "word"
    assert pretrained.with_vocabulary(texts, min_freq=1).get_vocab() == (
        AwdLstmTokenizer.from_texts(texts, min_freq=1).get_vocab()
    )


def test_build_tokenizer_from_scratch_by_type_and_language():
    args = LanguageModelArguments(tokenizer_type="sentencepiece", lang="de", sp_vocab_size=100, min_freq=1)
    tokenizer = build_tokenizer(data(PRETRAINING), "text", args)
    assert tokenizer.tokenizer_type == "sentencepiece" and tokenizer.init_kwargs["lang"] == "de"
    assert "▁xxmaj" in tokenizer.get_vocab()
    word = build_tokenizer(data(["The dog barks."] * 3), "text", LanguageModelArguments())
    assert word.tokenizer_type == "word" and word.init_kwargs["lang"] == "en"


@pytest.mark.parametrize(
    "given, message",
    [
        (dict(lang="de"), "--tokenizer_type sentencepiece"),
        (dict(tokenizer_type="word", lang="ru"), "--tokenizer_type sentencepiece"),
        (dict(sp_vocab_size=100), "--sp_vocab_size"),
    ],
)
def test_scratch_settings_refused(given, message):
    with pytest.raises(ValueError, match=message):
        build_tokenizer(data(PRETRAINING), "text", LanguageModelArguments(**given))


@pytest.mark.parametrize(
    "given, message",
    [
        (dict(tokenizer_type="word"), "--tokenizer_type word: the pretrained model's tokenizer is sentencepiece"),
        (dict(lang="ru"), "--lang ru: the pretrained model's tokenizer is for 'de'"),
        (dict(sp_vocab_size=100), "--sp_vocab_size"),
    ],
)
def test_pretrained_settings_must_match(sentencepiece_model, given, message):
    pretrained = AwdLstmTokenizer.from_sentencepiece(*sentencepiece_model, lang="de")
    with pytest.raises(ValueError, match=message):
        tokenizer_settings(LanguageModelArguments(**given), pretrained)
    assert tokenizer_settings(LanguageModelArguments(tokenizer_type="sentencepiece", lang="de"), pretrained) == (
        "sentencepiece",
        "de",
    )


def test_pretrained_sentencepiece_start_keeps_its_model_and_maps_rows(sentencepiece_model, tmp_path):
    """Fine-tuning from a SentencePiece LM: the target vocabulary is the pretrained model's pieces of the target
    texts; a piece the pretrained vocabulary has keeps its embedding row, a new one gets the mean row; the saved
    LM and tokenizer reload together."""
    torch.manual_seed(0)
    pretrained_tok = AwdLstmTokenizer.from_sentencepiece(*sentencepiece_model, lang="de")
    config = AwdLstmConfig.for_language_model(
        vocab_size=len(pretrained_tok), embedding_size=8, hidden_size=12, num_hidden_layers=2, bptt=8
    )
    AwdLstmForCausalLM(config).save_pretrained(tmp_path / "pretrained")
    pretrained_tok.save_pretrained(tmp_path / "pretrained")
    pretrained = AwdLstmForCausalLM.from_pretrained(tmp_path / "pretrained")  # SentencePiece ids fit the model

    args = LanguageModelArguments(model_name_or_path=str(tmp_path / "pretrained"), min_freq=1)
    model, tokenizer, notes = prepare_model(args, None, data(TARGET), "text")
    assert tokenizer.tokenizer_type == "sentencepiece" and tokenizer.init_kwargs["lang"] == "de"
    assert tokenizer.get_vocab() == pretrained_tok.with_vocabulary(TARGET, min_freq=1).get_vocab()
    old, new = pretrained.get_input_embeddings().weight, model.get_input_embeddings().weight
    assert new.shape[0] == len(tokenizer) == model.config.vocab_size
    old_ids = pretrained_tok.get_vocab()
    shared = [(tok, i) for tok, i in tokenizer.get_vocab().items() if tok in old_ids]
    assert len(shared) > 20 and "found" not in notes
    for tok, i in shared:
        torch.testing.assert_close(new[i], old[old_ids[tok]], rtol=0, atol=0)
    unseen = [i for tok, i in tokenizer.get_vocab().items() if tok not in old_ids]
    assert unseen
    for i in unseen:
        torch.testing.assert_close(new[i], old.mean(0), rtol=0, atol=0)

    with pytest.raises(ValueError, match="--tokenizer_type word"):
        prepare_model(dataclasses.replace(args, tokenizer_type="word"), None, data(TARGET), "text")
