"""AwdLstmTokenizer: fastai rules, vocabularies, the transformers API, save/load (also as remote code), robustness."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from conftest import run_without_hf_bpt3c
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from hf_bpt3c.models.awd_lstm.configuration_awd_lstm import AwdLstmConfig
from hf_bpt3c.models.awd_lstm.tokenization_awd_lstm import SPECIAL_TOKENS, AwdLstmTokenizer, make_vocab

CORPUS = [
    "This movie was GREAT!!! I can't believe it's not on DVD... Don't miss it :)",
    "Terrible, terrible film. The acting was bad bad bad bad and the plot? Nonsense.<br /><br />Avoid it.",
    "I cannot recommend it enough: see it at 10pm, e.g. with friends (it's 2 hrs long).",
    "Mr. Smith goes to Washington -- a classic; 10/10 & #1 in my book. http://www.imdb.com/title/tt0031679/",
] * 3

# fastai 2.8.12 `tokenize1(text, SpacyTokenizer('en'))` with the default rules.
FASTAI_EXAMPLES = {
    "I'm SO happy!!!": ["xxbos", "xxmaj", "i", "'m", "xxup", "so", "happy", "xxrep", "3", "!"],
    "It's a dog. Don't do it, I cannot.": [
        "xxbos",
        "xxmaj",
        "it",
        "'s",
        "a",
        "dog",
        ".",
        "xxmaj",
        "do",
        "n't",
        "do",
        "it",
        ",",
        "i",
        "can",
        "not",
        ".",
    ],  # fmt: skip
    "go go go go now": ["xxbos", "xxwrep", "4", "go", "now"],
    "end.<br /><br /> The Next": ["xxbos", "end", ".", "\n\n▁", "xxmaj", "the", "xxmaj", "next"],
    "a  b\tc &amp; d/e": ["xxbos", "a", "b", "\t", "c", "&", "&", "d", "/", "e"],
    "USA's e.g. U.S. :-) 5km": ["xxbos", "usa", "'s", "e.g.", "xxup", "u.s", ".", ":-)", "5", "km"],
}


@pytest.fixture(scope="module")
def tok() -> AwdLstmTokenizer:
    return AwdLstmTokenizer.from_texts(CORPUS, min_freq=1)


@pytest.fixture(scope="module")
def reloaded(tok, tmp_path_factory) -> AwdLstmTokenizer:
    folder = tmp_path_factory.mktemp("tok")
    tok.save_pretrained(folder)
    AutoTokenizer.register(AwdLstmConfig, tokenizer_class=AwdLstmTokenizer, exist_ok=True)
    return AutoTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("text", list(FASTAI_EXAMPLES))
def test_fastai_rules_and_words(tok, text):
    assert tok.fastai_tokens(text) == FASTAI_EXAMPLES[text]
    assert tok.tokenize(text, add_special_tokens=True) == [
        t if t in tok.get_vocab() else "xxunk" for t in FASTAI_EXAMPLES[text]
    ]


def test_special_tokens_in_fastai_order(tok):
    assert tok.convert_ids_to_tokens(list(range(9))) == list(SPECIAL_TOKENS)
    assert (tok.unk_token_id, tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2, 3)
    assert tok.model_input_names == ["input_ids", "attention_mask"]


def test_from_texts_vocab_like_fastai(tok):
    vocab = tok.get_vocab()
    assert len(tok) == tok.vocab_size == max(vocab.values()) + 1 == len(vocab)
    assert len(tok) % 8 == 0
    small = AwdLstmTokenizer.from_texts(CORPUS, max_vocab=20, min_freq=3)
    itos = small.convert_ids_to_tokens(list(range(len(small))))
    assert (
        itos[:9] == list(SPECIAL_TOKENS)
        and len(itos) == 24
        and itos[20:] == ["xxfake"] + [f"xxfake {k}" for k in (1, 2, 3)]
    )


def test_make_vocab_matches_fastai_quirks():
    from collections import Counter

    counts = Counter({"a": 5, "b": 3, "c": 2, "xxmaj": 9})
    assert make_vocab(counts, min_freq=3)[:11] == [*SPECIAL_TOKENS, "a", "b"]
    assert len(make_vocab(Counter({f"w{i}": 3 for i in range(7)}))) == 24  # 16 already: 8 more xxfake


def test_from_fastai_vocab_keeps_every_id():
    itos = [*SPECIAL_TOKENS, "the", ",", "xxfake", "xxfake", "xxfake"]
    tok = AwdLstmTokenizer.from_fastai_vocab(itos)
    assert len(tok) == tok.vocab_size == len(itos)
    assert tok("The, zebra")["input_ids"] == [2, 8, 9, 10, 0]
    assert tok.convert_ids_to_tokens(10) == ","
    assert tok("xxfake 1")["input_ids"] == [2, 11, 0]
    with pytest.raises(ValueError, match="special tokens"):
        AwdLstmTokenizer.from_fastai_vocab(["the", "a"])


def test_call_padding_truncation_batch(tok):
    texts = ["A short one.", "A much longer review, with more words in it!", ""]
    enc = tok(texts, padding=True, return_tensors="pt")
    assert set(enc) == {"input_ids", "attention_mask"}
    assert enc["input_ids"].shape[0] == 3 and (enc["input_ids"][:, 0] == 2).all()
    assert (enc["input_ids"][enc["attention_mask"] == 0] == tok.pad_token_id).all()
    assert enc["attention_mask"][2].sum() == 1
    singles = [tok(t)["input_ids"] for t in texts]
    for row, mask, single in zip(enc["input_ids"].tolist(), enc["attention_mask"].tolist(), singles):
        assert row[: sum(mask)] == single
    cut = tok(texts, truncation=True, max_length=4)["input_ids"]
    assert [len(c) for c in cut] == [4, 4, 1]
    assert tok(texts[1], add_special_tokens=False)["input_ids"] == singles[1][1:]
    assert tok(texts[0], texts[1])["input_ids"] == singles[0] + singles[1]
    assert tok(["the", "end"], is_split_into_words=True)["input_ids"] == [2, *tok.convert_tokens_to_ids(["the", "end"])]
    with_offsets = tok(texts, return_offsets_mapping=True)
    assert with_offsets["input_ids"] == tok(texts)["input_ids"]
    assert with_offsets.tokens(1) == tok.convert_ids_to_tokens(singles[1])


def test_batch_padding_to_multiple_of_8(tok):
    texts = [CORPUS[i % len(CORPUS)][: 5 + 7 * i] for i in range(300)]
    enc = tok(texts, padding=True, pad_to_multiple_of=8)
    lengths = {len(ids) for ids in enc["input_ids"]}
    assert len(lengths) == 1 and lengths.pop() % 8 == 0
    assert [sum(m) for m in enc["attention_mask"]] == [len(tok(t)["input_ids"]) for t in texts]


def test_decode_is_readable(tok):
    text = "This movie was GREAT!!! Don't miss it, bad bad bad bad (it's 2 hrs long)."
    ids = tok(text)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok.decode(ids).startswith("xxbos This movie")
    assert tok.decode(tok("Zebra Qux")["input_ids"]) == "xxbos xxmaj xxunk xxmaj xxunk"


def test_save_and_auto_reload(tok, reloaded):
    assert type(reloaded) is AwdLstmTokenizer
    batch = CORPUS + ["Something with unknown wordz", ""]
    assert reloaded(batch)["input_ids"] == tok(batch)["input_ids"]
    assert reloaded.pad_token_id == 1 and len(reloaded) == len(tok)


LOADER = textwrap.dedent(
    """
    import json, sys

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=True)
    print(json.dumps({"cls": type(tok).__name__, "ids": tok(json.loads(sys.argv[2]))["input_ids"]}))
    """
)


def test_remote_code_reload_without_package(tok, tmp_path):
    tok.save_pretrained(tmp_path / "tok")
    assert (tmp_path / "tok" / "tokenization_awd_lstm.py").exists()
    result = run_without_hf_bpt3c(LOADER, str(tmp_path / "tok"), json.dumps(CORPUS), cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["cls"] == "AwdLstmTokenizer" and out["ids"] == tok(CORPUS)["input_ids"]


def test_unigram_variant(tmp_path):
    with pytest.warns(FutureWarning, match="sentencepiece"):  # deprecated: fastai never makes it
        uni = AwdLstmTokenizer.from_texts(CORPUS * 4, max_vocab=120, model="unigram")
    assert uni.convert_ids_to_tokens(list(range(9))) == list(SPECIAL_TOKENS)
    assert len(uni) == max(uni.get_vocab().values()) + 1 <= 120
    text = "This movie was GREAT, don't miss it."
    ids = uni(text)["input_ids"]
    assert ids[:2] == [2, 8] and 0 not in ids
    assert uni.decode(ids, skip_special_tokens=True) == text
    uni.save_pretrained(tmp_path)
    assert AwdLstmTokenizer.from_pretrained(tmp_path)(text)["input_ids"] == ids
    with pytest.raises(ValueError, match="model"):
        AwdLstmTokenizer.from_texts(CORPUS, model="bpe")


def test_word_tokenizer_is_english_only():
    itos = AwdLstmTokenizer.from_texts(CORPUS, min_freq=1).convert_ids_to_tokens(list(range(40)))
    for build in (
        lambda: AwdLstmTokenizer.from_texts(CORPUS, lang="de"),
        lambda: AwdLstmTokenizer.from_texts(CORPUS, model="unigram", lang="ru"),
        lambda: AwdLstmTokenizer.from_fastai_vocab(itos, lang="fr"),
    ):
        with pytest.raises(ValueError, match="English rules.*model='sentencepiece'"):
            build()
    with pytest.raises(ValueError, match="vocab_size.*sentencepiece"):
        AwdLstmTokenizer.from_texts(CORPUS, vocab_size=100)
    assert AwdLstmTokenizer.from_fastai_vocab(itos, lang="en_US")("Great film.")["input_ids"][0] == 2


def test_lang_is_saved_and_folders_without_it_load_as_english(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    config_file = tmp_path / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    assert config["lang"] == "en" and "sentencepiece" not in config
    del config["lang"]  # a folder saved before `lang` existed
    config_file.write_text(json.dumps(config))
    AutoTokenizer.register(AwdLstmConfig, tokenizer_class=AwdLstmTokenizer, exist_ok=True)
    assert AutoTokenizer.from_pretrained(tmp_path)(CORPUS)["input_ids"] == tok(CORPUS)["input_ids"]
    config_file.write_text(json.dumps({**config, "lang": "de"}))  # never English rules for German, silently
    with pytest.raises(ValueError, match="model='sentencepiece'"):
        AutoTokenizer.from_pretrained(tmp_path)(CORPUS)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "   \n\t  \r\n ",
        "\u00a0",
        "日本語のテキスト 中文 한국어",
        "Ça va? Привет, мир! مرحبا 👍🏽🎬🍿",
        "\x00\x1f\u2028",
    ],
)
def test_odd_texts_round_trip(tok, reloaded, text):
    ids = tok(text)["input_ids"]
    assert ids[0] == 2 and all(0 <= i < len(tok) for i in ids)
    assert reloaded(text)["input_ids"] == ids
    assert isinstance(tok.decode(ids), str)


def test_one_megabyte_document(tok, reloaded):
    doc = " ".join(CORPUS * 2000)[:1_000_000]
    ids = tok(doc)["input_ids"]
    assert len(ids) > 150_000
    assert reloaded(doc)["input_ids"] == ids
    assert tok("a" * 1_000_000)["input_ids"][1:4] == tok.convert_tokens_to_ids(["xxrep", "1000000", "a"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text())
def test_any_unicode_never_crashes_and_round_trips(tok, reloaded, text):
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id and max(ids) < len(tok)
    assert reloaded(text)["input_ids"] == ids
    assert tok([text, text])["input_ids"] == [ids, ids]
    tok.decode(ids)


def test_data_sample_reviews_round_trip(tok, reloaded):
    path = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imdb_sample" / "texts.csv"
    if not path.exists():
        pytest.skip(f"{path} not present")
    import csv

    with path.open(newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)][:200]
    assert reloaded(texts)["input_ids"] == tok(texts)["input_ids"]


def test_extra_call_options(tok):
    enc = tok(CORPUS[:2], return_length=True, return_special_tokens_mask=True, unused_option=1)
    assert enc["length"] == [len(ids) for ids in enc["input_ids"]]
    assert [m[0] for m in enc["special_tokens_mask"]] == [1, 1]
    assert tok([])["input_ids"] == []
    over = tok(CORPUS[0], truncation=True, max_length=6, stride=1, return_overflowing_tokens=True)
    assert len(over["input_ids"]) > 2 and set(over["overflow_to_sample_mapping"]) == {0}


def backend_ids(tokenizer: AwdLstmTokenizer, texts: list[str], add_special_tokens: bool = True) -> list[list[int]]:
    """The ids of the Rust backend on the whole rule-processed documents (the reference for the chunk-id memo)."""
    from hf_bpt3c.models.awd_lstm.tokenization_awd_lstm import fastai_tokenize

    bodies = [fastai_tokenize(text) for text in texts]
    return [e.ids for e in tokenizer.backend_tokenizer.encode_batch(bodies, add_special_tokens=add_special_tokens)]


_TRICKY = st.sampled_from(
    ["xxbos", "xxunk", "xxbos-", "-xxpad", "XXBOS's", "xxeos.", "xxmaj", "don't", "DVD", "10/10", "<br />", "&amp;"]
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    words=st.lists(st.one_of(_TRICKY, st.text(max_size=8)), max_size=12),
    separators=st.lists(st.sampled_from([" ", "  ", "\n", " \t ", ""]), min_size=12, max_size=12),
    split=st.booleans(),
    add_special_tokens=st.booleans(),
)
def test_chunk_id_memo_equals_backend(tok, words, separators, split, add_special_tokens):
    """The plain call (chunk-id memo) gives the backend's ids on whole documents, special tokens in the text too."""
    text = "".join(w + s for w, s in zip(words, separators))
    out = tok([text, text[::-1]], split_special_tokens=split, add_special_tokens=add_special_tokens)
    tok.backend_tokenizer.encode_special_tokens = split
    try:
        assert out["input_ids"] == backend_ids(tok, [text, text[::-1]], add_special_tokens)
    finally:
        tok.backend_tokenizer.encode_special_tokens = False
    assert out["attention_mask"] == [[1] * len(ids) for ids in out["input_ids"]]


def test_chunk_id_memo_follows_added_tokens_and_eos(tmp_path):
    """Tokens added after a call, and a post-processor that also appends xxeos, are honoured by the memo."""
    tokenizer = AwdLstmTokenizer.from_texts(CORPUS)
    text = "great movie, superlative acting"
    before = tokenizer(text)["input_ids"]
    tokenizer.add_tokens(["superlative"])
    after = tokenizer(text)["input_ids"]
    assert after != before and after == backend_ids(tokenizer, [text])[0]
    with_eos = AwdLstmTokenizer.from_texts(CORPUS)
    assert with_eos(text)["input_ids"][-1] != with_eos.eos_token_id
    with_eos.add_eos_token = True  # transformers rebuilds the post-processor
    ids = with_eos(text)["input_ids"]
    assert ids[0] == with_eos.bos_token_id and ids[-1] == with_eos.eos_token_id
    assert ids == backend_ids(with_eos, [text])[0]
    assert with_eos([text], return_tensors="pt")["input_ids"].tolist() == [ids]
