"""SentencePiece tokenization as fastai makes it, on the Rust backend: parity with fastai on german_news (a model
trained in the test with fastai's `SentencePieceTokenizer`), the `tokenizers` path against sentencepiece's own pieces
(german_news and a non-Latin set), saving and loading without hf_bpt3c or sentencepiece."""

from __future__ import annotations

import csv
import difflib
import json
import pickle
import sys
import textwrap
from collections import Counter

import pytest
from conftest import DATA_DIR, run_without_hf_bpt3c
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from hf_bpt3c.models.awd_lstm.configuration_awd_lstm import AwdLstmConfig
from hf_bpt3c.models.awd_lstm.fastai_rules import apply_rules
from hf_bpt3c.models.awd_lstm.sentencepiece_backend import (
    EU_LANGS,
    Charsmap,
    fastai_vocab_size,
    load_vocab,
    normalize,
    read_model,
)
from hf_bpt3c.models.awd_lstm.tokenization_awd_lstm import AwdLstmTokenizer

GERMAN_NEWS = DATA_DIR / "german_news" / "texts.csv"

# Scripts, normalization corner cases and fastai's special tokens typed into the text.
NON_LATIN = [
    "Москва — столица России. ПРИВЕТ, мир!!! Ёлка и ёжик.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю",
    "北京是中华人民共和国的首都。我爱自然语言处理！",
    "東京都は日本の首都です。カタカナとひらがな、ｶﾞｷﾞｸﾞ ﾊﾟﾋﾟ。",
    "서울은 대한민국의 수도입니다. 한국어 텍스트",
    "\u1100\u1161\u11a8 \u1112\u1161\u11ab 가\u11a8",  # conjoining jamo, a syllable + a final jamo
    "مرحبا بالعالم. العَرَبِيَّة لُغَةٌ جَمِيلَةٌ ﻣﺮﺣﺒﺎ ﺑَ ؀١٢٣",  # harakat, presentation forms, a prepended sign
    "שָׁלוֹם עוֹלָם, עברית",
    "नमस्ते दुनिया। क्षत्रिय क़िला ज़िंदगी हिन्दी",
    "สวัสดีชาวโลก ภาษาไทย",
    "Tiếng Việt có dấu: Hà Nội, Đà Nẵng, nguyễn",
    "Tie\u0302\u0301ng Vie\u0323\u0302t NFD: ng\u01b0\u01a1\u0300i",  # decomposed, stacked marks
    "Ελληνικά: Καλημέρα κόσμε",
    "emoji 😀😂👍🏽 👨‍👩‍👧‍👦 🇩🇪🇫🇷 1️⃣ ❤️ ☺︎ 🏳️‍🌈",
    "Mixed: Berlin 北京 Москва القاهرة Tōkyō 東京 😀 café naïve Ünïcödé",
    "Special tokens inside text: xxbos xxmaj xxup xxunk xxpad xxfake xxmajority fooxxbos <unk> <UNK> XXMAJ",
    "literal pieces: \u2581xxmaj a \u2581\u2581xxbos b\u2581xxup c \u2581 d x\u2581xxrep",
    "ＦＵＬＬＷＩＤＴＨ Ａ\u0301 ｂ\u0308 ① ﬁ ﬂ ² \u00a0\u0301 x\u3000\u0301",
    "zero\u200bwidth\u200cjoin\u200dchars\ufeff soft\u00adhyphen",
    "windows\r\nlines\rand\ttabs\x0bvt\x0cff \x00nul\x1fctl",
    "stacked e\u0301\u0301 a\u0300\u0301\u0302 combining after space \u0301 and start",
    "Čeština, Polski: Zażółć gęślą jaźń, Türkçe: İstanbul ıi, ß ẞ",
    "",
    "   ",
    "!!!!!! ???? GOOD GOOD GOOD GOOD news",
]


def agreement(ref: list[list], ours: list[list]) -> tuple[int, int, int]:
    """Identical documents, reference tokens matched by difflib's alignment, and reference tokens."""
    same_docs = sum(a == b for a, b in zip(ref, ours, strict=True))
    matched = sum(
        block.size
        for a, b in zip(ref, ours, strict=True)
        for block in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks()
    )
    return same_docs, matched, sum(map(len, ref))


@pytest.fixture(scope="module")
def articles() -> tuple[list[str], list[bool]]:
    if not GERMAN_NEWS.is_file():
        pytest.skip(f"{GERMAN_NEWS} not present")
    with GERMAN_NEWS.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [row["text"] for row in rows], [row["is_valid"] == "True" for row in rows]


@pytest.fixture(scope="module")
def fastai_run(articles, tmp_path_factory) -> dict:
    """fastai's SentencePiece pipeline: a model trained on the training articles (vocab 8000), the pieces of every
    article, `make_vocab` over the training articles' pieces and `Numericalize`'s ids."""
    pytest.importorskip("sentencepiece")
    pytest.importorskip("fastai")
    from fastai.text.core import SentencePieceTokenizer, Tokenizer, defaults
    from fastai.text.data import Numericalize, make_vocab

    texts, valid = articles
    train = [t for t, v in zip(texts, valid, strict=True) if not v]
    cache = tmp_path_factory.mktemp("fastai_sp")
    sp = SentencePieceTokenizer(lang="de", vocab_sz=8000, cache_dir=cache)
    sp_model = sp.setup(train, rules=defaults.text_proc_rules)["sp_model"]
    tokenizer = Tokenizer(sp)
    pieces = [list(tokenizer(text)) for text in texts]
    itos = make_vocab(Counter(p for doc, v in zip(pieces, valid, strict=True) if not v for p in doc))
    numericalize = Numericalize(vocab=itos)
    return {
        "sp_model": sp_model,
        "train": train,
        "pieces": pieces,
        "itos": itos,
        "ids": [numericalize(doc).tolist() for doc in pieces],
        "non_latin_ids": [numericalize(list(tokenizer(text))).tolist() for text in NON_LATIN],
    }


@pytest.fixture(scope="module")
def tok(fastai_run) -> AwdLstmTokenizer:
    return AwdLstmTokenizer.from_sentencepiece(fastai_run["sp_model"], fastai_run["itos"], lang="de")


@pytest.fixture(scope="module")
def processor(fastai_run):
    spm = pytest.importorskip("sentencepiece")
    return spm.SentencePieceProcessor(model_file=str(fastai_run["sp_model"]))


@pytest.mark.fastai
def test_from_sentencepiece_ids_match_fastai(articles, fastai_run, tok, tmp_path):
    texts, _ = articles
    ours = tok(texts)["input_ids"]
    docs, tokens, total = agreement(fastai_run["ids"], ours)
    print(f"\nfrom_sentencepiece vs fastai: documents {docs}/{len(texts)}, tokens {tokens}/{total}")
    assert docs >= 0.99 * len(texts) and tokens >= 0.999 * total
    assert tok(NON_LATIN)["input_ids"] == fastai_run["non_latin_ids"]
    # the vocabulary as the path of its pickle
    (tmp_path / "itos.pkl").write_bytes(pickle.dumps(list(fastai_run["itos"])))
    again = AwdLstmTokenizer.from_sentencepiece(str(fastai_run["sp_model"]), tmp_path / "itos.pkl")
    assert again(texts[:50])["input_ids"] == ours[:50]


@pytest.mark.fastai
def test_from_texts_sentencepiece_matches_fastai(articles, fastai_run):
    texts, _ = articles
    built = AwdLstmTokenizer.from_texts(fastai_run["train"], model="sentencepiece", vocab_size=8000, lang="de")
    itos = fastai_run["itos"]
    vocab = built.convert_ids_to_tokens(list(range(len(built))))
    same = sum(a == b for a, b in zip(vocab, itos))
    print(f"\nfrom_texts vocabulary vs fastai's make_vocab: {same}/{len(itos)} at the same id ({len(vocab)} ids)")
    assert vocab == itos
    docs, tokens, total = agreement(fastai_run["ids"], built(texts)["input_ids"])
    print(f"from_texts(model='sentencepiece') vs fastai: documents {docs}/{len(texts)}, tokens {tokens}/{total}")
    assert docs >= 0.99 * len(texts) and tokens >= 0.999 * total


@pytest.mark.fastai
def test_tokenizers_path_gives_sentencepieces_pieces(articles, tok, processor):
    texts, _ = articles
    state = tok._sentencepiece()
    for name, batch in (("german_news", texts), ("non-Latin set", NON_LATIN)):
        rules = [apply_rules(text) for text in batch]
        expected = [processor.EncodeAsPieces(f"xxbos {text}") for text in rules]
        ours = [tok.tokenize(text, add_special_tokens=True) for text in batch]
        same = sum(a == b for a, b in zip(expected, ours, strict=True))
        exact = sum(map(state.needs_exact, rules))
        print(f"\n{name}: pieces identical {same}/{len(batch)} ({exact} normalized in Python)")
        for a, b in zip(ours, expected, strict=True):
            assert_same_or_tie(processor, a, b)
        assert tok.fastai_tokens(batch[0]) == expected[0]


def assert_same_or_tie(processor, ours: list[str], expected: list[str]) -> None:
    """The same pieces, or a tie that SentencePiece decides by float32 rounding ("½22": "1⁄2" + "22 2" or "2 22")."""
    if ours != expected:
        assert "".join(ours) == "".join(expected)
        assert path_score(processor, ours) == pytest.approx(path_score(processor, expected), rel=1e-5, abs=1e-4)


def path_score(processor, pieces: list[str]) -> float:
    """The unigram score of a segmentation (an unknown piece scores the lowest score - 10, as in SentencePiece)."""
    scores = [processor.GetScore(i) for i in range(processor.GetPieceSize()) if processor.IsUnknown(i) is False]
    unknown = min(scores) - 10
    return sum(
        processor.GetScore(processor.PieceToId(p)) if not processor.IsUnknown(processor.PieceToId(p)) else unknown
        for p in pieces
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.one_of(
            st.text(min_size=1, max_size=3),
            st.sampled_from(["xxmaj", "\u2581xxup", "xxbos ", "GOOD ", "\u0301", "\u0302", "ﬁ", "Ａ", "ｶﾞ", "\u11a8"]),
            st.sampled_from(list("aäöü ßxy\n\t\u00a0\u3000字ы😀č|")),
        ),
        max_size=12,
    ).map("".join)
)
@pytest.mark.fastai
def test_any_text_gives_sentencepieces_pieces(tok, processor, text):
    ours, expected = tok.tokenize(text, add_special_tokens=True), processor.EncodeAsPieces(f"xxbos {apply_rules(text)}")
    assert_same_or_tie(processor, ours, expected)
    ids = tok(text)["input_ids"]
    assert ids == tok.convert_tokens_to_ids(tok.tokenize(text, add_special_tokens=True))
    assert max(ids) < len(tok)


@pytest.mark.fastai
def test_special_tokens_in_text(tok, fastai_run, processor):
    pieces = tok.fastai_tokens("Das ist GROSS")  # fastai's rules, then the special tokens as SentencePiece's pieces
    assert pieces == processor.EncodeAsPieces("xxbos xxmaj das ist xxup gross") and pieces[:2] == ["▁xxbos", "▁xxmaj"]
    assert "▁xxup" in pieces
    assert tok.tokenize("xxmajority")[0] == "▁xxmaj"  # SentencePiece emits a user-defined symbol wherever it occurs
    assert tok.tokenize("<unk> xxpad", add_special_tokens=False) == ["▁xxunk", "▁xxpad"]  # fix_html; never specials
    ids = tok("xxpad xxunk")["input_ids"]
    assert ids == tok.convert_tokens_to_ids(["▁xxbos", "▁xxpad", "▁xxunk"])
    assert 1 not in ids and tok.bos_token == "▁xxbos" and ids[0] == fastai_run["itos"].index("▁xxbos")
    assert tok("xxbos", add_special_tokens=False)["input_ids"] == [tok.bos_token_id]
    assert tok("", add_special_tokens=False)["input_ids"] == [] and tok("")["input_ids"] == [tok.bos_token_id]


@pytest.mark.fastai
def test_ids_are_fastais_vocabulary(tok, fastai_run):
    itos = fastai_run["itos"]
    assert len(tok) == tok.vocab_size == len(itos) and tok.pad_token_id == 1 and tok.unk_token_id == 0
    assert tok.convert_ids_to_tokens(list(range(len(itos)))) == itos  # repeated xxfake, texts of unknown characters
    o2i = {token: i for i, token in enumerate(itos)}  # fastai's Numericalize(vocab): the last id of a repeated token
    pieces = {p for doc in fastai_run["pieces"] for p in doc} | set(itos)
    assert tok.convert_tokens_to_ids(sorted(pieces)) == [o2i.get(p, 0) for p in sorted(pieces)]
    assert len(tok.backend_tokenizer.get_vocab()) > len(itos)  # + the model's pieces outside the vocabulary
    assert sorted(tok.get_vocab().values()) == list(range(len(itos)))


@pytest.mark.fastai
def test_transformers_api(articles, tok):
    texts = articles[0][:4] + NON_LATIN[:4]
    plain = tok(texts)["input_ids"]
    batch = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    assert batch["input_ids"].shape == (len(texts), 64)
    for row, mask, ids in zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist(), plain, strict=True):
        assert row[: sum(mask)] == ids[:64] and set(row[sum(mask) :]) <= {1}
    with_offsets = tok(texts, return_offsets_mapping=True, return_length=True)
    assert with_offsets["input_ids"] == plain and with_offsets["length"] == [len(ids) for ids in plain]
    windows = tok(texts[0], truncation=True, max_length=100, stride=10, return_overflowing_tokens=True)
    assert windows["input_ids"][0] == plain[0][:100] and len(windows["input_ids"]) > 1
    pair = tok(texts[4], texts[5])["input_ids"]
    assert pair == plain[4] + plain[5]
    assert tok(texts[0], add_special_tokens=False)["input_ids"] == plain[0][1:]
    decoded = tok.decode(tok("Das ist GROSS!!! Ein Haus.")["input_ids"], skip_special_tokens=True)
    assert decoded == "Das ist GROSS!!! Ein Haus."
    with pytest.raises(ValueError, match="is_split_into_words"):
        tok(["ein", "haus"], is_split_into_words=True)
    assert pickle.loads(pickle.dumps(tok))(texts)["input_ids"] == plain  # datasets.map(num_proc=...) pickles it


@pytest.mark.fastai
def test_save_and_auto_reload(articles, tok, tmp_path):
    tok.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["lang"] == "de" and config["sentencepiece"]["vocab_size"] == len(tok)
    assert {"tokenization_awd_lstm.py", "sentencepiece_backend.py", "fastai_rules.py"} <= {
        p.name for p in tmp_path.glob("*.py")
    }
    AutoTokenizer.register(AwdLstmConfig, tokenizer_class=AwdLstmTokenizer, exist_ok=True)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    texts = articles[0][:100] + NON_LATIN
    assert type(reloaded) is AwdLstmTokenizer and reloaded(texts)["input_ids"] == tok(texts)["input_ids"]


REMOTE = textwrap.dedent(
    """
    import json, sys

    sys.modules["sentencepiece"] = None  # `import sentencepiece` fails: as if it were not installed
    from transformers import AutoTokenizer

    folder, texts = sys.argv[1], json.loads(open(sys.argv[2], encoding="utf-8").read())
    tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    print(json.dumps({
        "module": type(tok).__module__,
        "ids": tok(texts)["input_ids"],
        "padded": tok(texts, padding=True)["input_ids"],
        "pieces": [tok.tokenize(text, add_special_tokens=True) for text in texts],
        "imported": sorted(m for m, v in sys.modules.items() if v and m.split(".")[0] in ("hf_bpt3c", "sentencepiece")),
    }))
    """
)


@pytest.mark.fastai
@pytest.mark.slow
def test_loads_as_remote_code_without_the_package_and_sentencepiece(articles, tok, tmp_path):
    tok.save_pretrained(tmp_path / "tok")
    texts = articles[0][:200] + NON_LATIN
    (tmp_path / "texts.json").write_text(json.dumps(texts), encoding="utf-8")
    result = run_without_hf_bpt3c(REMOTE, str(tmp_path / "tok"), str(tmp_path / "texts.json"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["module"].startswith("transformers_modules.") and out["imported"] == []
    assert out["ids"] == tok(texts)["input_ids"] and out["padded"] == tok(texts, padding=True)["input_ids"]
    assert out["pieces"] == [tok.tokenize(text, add_special_tokens=True) for text in texts]


def test_training_needs_sentencepiece_and_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentencepiece", None)
    with pytest.raises(ImportError, match=r"hf_bpt3c\[sentencepiece\]"):
        AwdLstmTokenizer.from_texts(["Ein Text."], model="sentencepiece", lang="de")


def test_fastai_training_settings(tmp_path):
    fastai_core = pytest.importorskip("fastai.text.core")
    assert set(fastai_core.eu_langs) == EU_LANGS
    lines = ["xxbos xxmaj ein text , ein anderer", "xxbos noch einer \n mit zeilen", "xxbos"] * 3
    path = tmp_path / "texts.out"
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    for max_vocab_sz in (30000, 1):
        sp = fastai_core.SentencePieceTokenizer(max_vocab_sz=max_vocab_sz, cache_dir=tmp_path)
        assert fastai_vocab_size(lines, max_vocab_sz) == sp._get_vocab_sz(path)


@pytest.mark.fastai
def test_model_file_reader(fastai_run, tmp_path):
    spm = pytest.importorskip("sentencepiece")
    data = fastai_run["sp_model"].read_bytes()
    model = read_model(data)
    processor = spm.SentencePieceProcessor(model_proto=data)
    assert [p for p, _, _ in model.pieces] == [processor.IdToPiece(i) for i in range(processor.GetPieceSize())]
    assert [s for _, s, _ in model.pieces] == pytest.approx([processor.GetScore(i) for i in range(len(model.pieces))])
    assert model.unk_id == processor.unk_id() == 9 and model.charsmap and model.add_dummy_prefix
    with pytest.raises(ValueError, match="not a SentencePiece model"):
        read_model(b"\x0a\x05ab")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("ein kleiner text mit wörtern\n" * 50, encoding="utf-8")
    spm.SentencePieceTrainer.Train(
        input=str(corpus), model_prefix=str(tmp_path / "bpe"), vocab_size=30, model_type="bpe", minloglevel=2
    )
    with pytest.raises(ValueError, match="unigram"):
        AwdLstmTokenizer.from_sentencepiece(tmp_path / "bpe.model", fastai_run["itos"])


NORMALIZER_CHARS = "ab ▁\t\n\u3000\u00a0ﬁ①Ａ\u0301\u0302\u1100\u1161\u200d\ufe0f字😀"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from([*NORMALIZER_CHARS, "▁xxmaj"]), max_size=12).map("".join))
@pytest.mark.fastai
def test_python_normalizer_is_sentencepieces(fastai_run, processor, text):
    model = read_model(fastai_run["sp_model"])
    spec = {"user_defined_symbols": [p for p, _, kind in model.pieces if kind == 4]}
    assert normalize(text, Charsmap(model.charsmap), spec) == processor.normalize(text)


def test_vocabulary_pickle_is_read_without_running_code(tmp_path):
    (tmp_path / "itos.pkl").write_bytes(pickle.dumps(["xxunk", "xxpad", "▁a"]))
    assert load_vocab(tmp_path / "itos.pkl") == ["xxunk", "xxpad", "▁a"]

    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps([Evil()]))
    with pytest.raises(ValueError, match="not allowed"):
        load_vocab(tmp_path / "evil.pkl")
    with pytest.raises(ValueError, match="list of str"):
        load_vocab({"a": 1})
