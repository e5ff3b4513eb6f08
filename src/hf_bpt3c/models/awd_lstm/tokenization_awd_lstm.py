"""ULMFiT tokenizer: fastai v2's text rules, then spaCy-English words (English) or SentencePiece pieces (any
language), on a Rust `tokenizers` backend.

Word pipeline (same order and output as fastai's ``Tokenizer(SpacyTokenizer('en'))`` with the default rules):

1. fastai's pre-rules (``fastai_rules``: compiled regular expressions, in Python because they need
   back-references and counts that ``tokenizers`` normalizers cannot express);
2. spaCy-English-like word splitting (whitespace handling, prefixes, suffixes, infixes, URLs and the English
   tokenizer exceptions), memoised per whitespace-delimited chunk, then fastai's ``replace_space`` post-rule;
3. the words, joined by single spaces, go in one batch to the Rust backend (``CharDelimiterSplit(" ")``
   pre-tokenizer, ``WordLevel`` or ``Unigram`` model, a post-processor that prepends ``xxbos``).

A word-level vocabulary encodes each whitespace-delimited chunk on its own (the pre-tokenizer splits at spaces,
a special token cannot span one, the post-processor only prepends ``xxbos``), so the plain call (no padding,
truncation, offsets or overflow: what ``datasets.map`` does) looks the ids of each chunk up in a memo filled by the
backend (``_ChunkIds``): the same ids, without building a Rust ``Encoding`` per document. The saved
``tokenizer.json`` maps fastai-tokenized text (tokens joined by spaces) to ids on its own; raw text needs this
class, which ``save_pretrained`` ships as remote code. The word tokenizer is English only (``lang``).

SentencePiece (``from_sentencepiece``, ``from_texts(model="sentencepiece")``): the same pre-rules, then the
backend of ``sentencepiece_backend`` (SentencePiece's normalizer, ``Metaspace``, ``Unigram``) whose ids, once
``SentencePieceIds`` maps them, are fastai's ``Numericalize(vocab)`` of ``SentencePieceTokenizer``'s pieces.

Offsets refer to the rule-processed text and are only computed when asked for (``return_offsets_mapping=True``,
which also gives ``BatchEncoding.tokens()`` and ``word_ids()``); otherwise use ``tokenize`` or
``convert_ids_to_tokens`` to see tokens.

The English punctuation classes below and the tokenizer exceptions (``spacy_english_exceptions``) follow spaCy's
English defaults (spaCy, MIT licence, (c) ExplosionAI GmbH), restricted to what can occur in fastai's lowercased
text. This module imports only the standard library, ``tokenizers``, ``transformers`` and its siblings
(relative: they are copied next to saved tokenizers and loaded with ``trust_remote_code=True``).
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import unicodedata
import warnings
import weakref
from collections import Counter
from collections.abc import Iterable, Sequence

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import BatchEncoding, TokenizersBackend
from transformers.tokenization_utils_base import TruncationStrategy
from transformers.utils import PaddingStrategy

from .fastai_rules import (  # noqa: F401 (re-exported: the names of this module before the split)
    _SPECIAL_SET,
    BOS,
    EOS,
    FAKE,
    PAD,
    SPECIAL_TOKENS,
    TK_MAJ,
    TK_REP,
    TK_UP,
    TK_WREP,
    UNK,
    _pieces_to_words,
    _unique_names,
    apply_rules,
    detokenize,
    fix_html,
    make_vocab,
)
from .sentencepiece_backend import SPACE, SentencePieceIds, build_backend, load_vocab, model_of_backend, read_model
from .sentencepiece_backend import train as train_sentencepiece
from .spacy_english_exceptions import EXCEPTIONS

# A whitespace run other than one plain space: spaCy turns it into a token (minus a leading plain space).
_RE_WS_RUN = re.compile(r"[^\S ]\s*")


# ----------------------------------------------------------------------------------------------------------
# spaCy English tokenizer rules (spacy/lang/punctuation.py, char_classes.py, en/tokenizer_exceptions.py).
# Text reaching them is lowercased, so "upper-case letters" are only the scripts without case.
# ----------------------------------------------------------------------------------------------------------
_LETTER = r"[^\W\d_]"
_UNCASED = (
    r"A-Z\u0591-\u05F4\u0620-\u06FF\u0900-\u0DFF\u1100-\u11FF\u1200-\u137F\u3040-\u30FF\u3400-\u4DBF"
    r"\u4E00-\u9FFF\uAC00-\uD7AF\uF900-\uFAFF"
)
_PUNCT = r"… …… , : ; \! \? ¿ ؟ ¡ \( \) \[ \] \{ \} < > _ # \* & 。 ？ ！ ， 、 ； ： ～ · । ، ۔ ؛ ٪".split()
_QUOTES = r"\' \" ” “ ` ‘ ´ ’ ‚ , „ » « 「 」 『 』 （ ） 〔 〕 【 】 《 》 〈 〉 〈 〉 ⟦ ⟧".split()
_CURRENCY = (r"\$ £ € ¥ ฿ US\$ C\$ A\$ ₽ ﷼ ₴ ₠ ₡ ₢ ₣ ₤ ₥ ₦ ₧ ₨ ₩ ₪ ₫ € ₭ ₮ ₯ ₰ ₱ ₲ ₳ ₴ ₵ ₶ ₷ ₸ ₹ ₺ ₻ ₼ ₽ ₾ ₿").split()
_UNITS = (
    "km km² km³ m m² m³ dm dm² dm³ cm cm² cm³ mm mm² mm³ ha µm nm yd in ft kg g mg µg t lb oz m/s km/h kmh "
    "mph hPa Pa mbar mb MB kb KB gb GB tb TB T G M K % км км² км³ м м² м³ дм дм² дм³ см см² см³ мм мм² мм³ "
    "нм кг г мг м/с км/ч кПа Па мбар Кб КБ кб Мб МБ мб Гб ГБ гб Тб ТБ тбكم كم² كم³ م م² م³ سم سم² سم³ مم مم² "
    "مم³ كم غرام جرام جم كغ ملغ كوب اكواب"
).split()
_HYPHENS = "-|–|—|--|---|——|~"
_ELLIPSES = [r"\.\.+", "…"]
_URL = re.compile(
    r"^(?:[\w+\-.]{2,}://)?(?:\S+(?::\S*)?@)?"
    r"(?:(?!(?:10|127)(?:\.\d{1,3}){3})(?!(?:169\.254|192\.168)(?:\.\d{1,3}){2})"
    r"(?!172\.(?:1[6-9]|2\d|3[0-1])(?:\.\d{1,3}){2})(?:[1-9]\d?|1\d\d|2[01]\d|22[0-3])"
    r"(?:\.(?:1?\d{1,2}|2[0-4]\d|25[0-5])){2}(?:\.(?:[1-9]\d?|1\d\d|2[0-4]\d|25[0-4]))"
    r"|(?:(?:[A-Za-z0-9\u00a1-\uffff][A-Za-z0-9\u00a1-\uffff_-]{0,62})?[A-Za-z0-9\u00a1-\uffff]\.)+"
    r"(?:" + _LETTER + r"{2,63}))(?::\d{2,5})?(?:[/?#]\S*)?$"
)


@functools.cache
def _icons() -> str:
    """Character-class body of the Unicode 'Symbol, other' characters (spaCy's LIST_ICONS: emoji, dingbats)."""
    ranges: list[list[int]] = []
    for code in range(0x20000):
        if unicodedata.category(chr(code)) == "So":
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1][1] = code
            else:
                ranges.append([code, code])
    return "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)


@functools.cache
def _affix_regexes() -> tuple[re.Pattern, re.Pattern, re.Pattern]:
    """Compile spaCy-English prefix, suffix and infix searches (alternatives in spaCy's order)."""
    icons = f"[{_icons()}]"
    quotes = "".join(_QUOTES)
    punct_chars = "|".join(_PUNCT)
    prefixes = ["§", "%", "=", "—", "–", r"\+(?![0-9])", *_PUNCT, *_ELLIPSES, *_QUOTES, *_CURRENCY, icons]
    suffixes = [
        *_PUNCT,
        *_ELLIPSES,
        *_QUOTES,
        icons,
        "'s",
        "'S",
        "’s",
        "’S",
        "—",
        "–",
        r"(?<=[0-9])\+",
        r"(?<=°[FfCcKk])\.",
        r"(?<=[0-9])(?:{})".format("|".join(_CURRENCY)),
        r"(?<=[0-9])(?:{})".format("|".join(_UNITS)),
        rf"(?<={_LETTER}|[0-9%²\-\+{punct_chars}(?:{quotes})])\.",
        rf"(?<=[{_UNCASED}][{_UNCASED}])\.",
    ]
    infixes = [
        *_ELLIPSES,
        icons,
        r"(?<=[0-9])[+\-\*^](?=[0-9-])",
        rf"(?<={_LETTER}|[{quotes}])\.(?=[{_UNCASED}{quotes}])",
        rf"(?<={_LETTER}),(?={_LETTER})",
        rf"(?<={_LETTER}|[0-9])(?:{_HYPHENS})(?={_LETTER})",
        rf"(?<={_LETTER}|[0-9])[:<>=/](?={_LETTER})",
    ]
    return (
        re.compile("|".join("^" + p for p in prefixes)),
        re.compile("|".join(p + "$" for p in suffixes)),
        re.compile("|".join(infixes)),
    )


@functools.cache
def _exceptions() -> dict[str, tuple[str, ...]]:
    """Parse the exception table: chunk -> its tokens."""
    table = {}
    for entry in EXCEPTIONS.replace("\n", "  ").split("  "):
        if entry:
            key, *tokens = entry.split(" ")
            table[key] = tuple(tokens) or (key,)
    return table


def _strip_affixes(chunk: str, specials: dict) -> tuple[list[str], str, list[str]]:
    """spaCy's ``_split_affixes``: peel prefixes and suffixes until nothing changes or a special case is hit."""
    prefix_re, suffix_re, _ = _affix_regexes()
    prefixes: list[str] = []
    suffixes: list[str] = []
    last_size = 0
    while chunk and len(chunk) != last_size:
        if chunk in specials:
            break
        last_size = len(chunk)
        match = prefix_re.search(chunk)
        pre_len = match.end() if match else 0
        if pre_len and chunk[pre_len:] in specials:
            prefixes.append(chunk[:pre_len])
            chunk = chunk[pre_len:]
            break
        match = suffix_re.search(chunk[pre_len:])
        suf_len = match.end() - match.start() if match else 0
        if suf_len and chunk[:-suf_len] in specials:
            suffixes.append(chunk[-suf_len:])
            chunk = chunk[:-suf_len]
            break
        if pre_len and suf_len and pre_len + suf_len <= len(chunk):
            prefixes.append(chunk[:pre_len])
            suffixes.append(chunk[-suf_len:])
            chunk = chunk[pre_len:-suf_len]
        elif pre_len:
            prefixes.append(chunk[:pre_len])
            chunk = chunk[pre_len:]
        elif suf_len:
            suffixes.append(chunk[-suf_len:])
            chunk = chunk[:-suf_len]
    return prefixes, chunk, suffixes


def _split_infixes(core: str) -> list[str]:
    """spaCy's infix step: cut ``core`` around infix matches (a match at position 0 is ignored)."""
    pieces, start = [], 0
    for match in _affix_regexes()[2].finditer(core):
        begin, end = match.span()
        if begin == 0:
            continue
        if begin != start:
            pieces.append(core[start:begin])
        if begin != end:
            pieces.append(core[begin:end])
        start = end
    if core[start:]:
        pieces.append(core[start:])
    return pieces


def split_chunk(chunk: str, specials: dict | None = None) -> list[str]:
    """Tokenize one whitespace-free chunk like spaCy's English tokenizer (``specials={}`` disables exceptions)."""
    specials = _exceptions() if specials is None else specials
    if chunk in specials:
        return list(specials[chunk])
    prefixes, core, suffixes = _strip_affixes(chunk, specials)
    if not core:
        middle = []
    elif core in specials:
        middle = list(specials[core])
    elif _URL.match(core):
        middle = [core]
    else:
        middle = _split_infixes(core)
    tokens = prefixes + middle + suffixes[::-1]
    return _merge_special_spans(tokens) if specials and len(tokens) > 1 else tokens


@functools.cache
def _special_spans() -> dict[str, list[tuple[tuple[str, ...], tuple[str, ...]]]]:
    """Exceptions that the affix rules split (e.g. ``:)``): first piece -> [(pieces, exception tokens)]."""
    spans: dict[str, list] = {}
    for key, tokens in _exceptions().items():
        pieces = tuple(split_chunk(key, {}))
        if len(pieces) > 1:
            spans.setdefault(pieces[0], []).append((pieces, tokens))
    for candidates in spans.values():
        candidates.sort(key=lambda c: -len(c[0]))
    return spans


def _merge_special_spans(tokens: list[str]) -> list[str]:
    """spaCy's ``_apply_special_cases``: re-tokenize runs of tokens that spell an exception (longest first)."""
    spans, out, i = _special_spans(), [], 0
    while i < len(tokens):
        for pieces, replacement in spans.get(tokens[i], ()):
            if tuple(tokens[i : i + len(pieces)]) == pieces:
                out.extend(replacement)
                i += len(pieces)
                break
        else:
            out.append(tokens[i])
            i += 1
    return out


class _Memo(dict):
    """A dict that fills itself with `compute(key)`, emptied when it reaches `max_size` entries."""

    max_size = 500_000

    def compute(self, key: str):
        raise NotImplementedError

    def __missing__(self, key: str):
        value = self.compute(key)
        if len(self) >= self.max_size:
            self.clear()
        self[key] = value
        return value


class _ChunkCache(_Memo):
    """Memo: whitespace-free chunk (or whitespace token) -> its tokens joined by spaces."""

    def compute(self, chunk: str) -> str:
        if any(c.isspace() for c in chunk):  # a whitespace token made by _ws_token: keep it whole
            return chunk
        return " ".join(split_chunk(chunk))


_CACHE = _ChunkCache()


def _ws_token(match: re.Match) -> str:
    """A whitespace run becomes a ``▁``-for-space token; a plain space right before it stays a separator."""
    start, token = match.start(), match[0].replace(" ", "▁")
    return f"{token} " if match.string[start - 1] == " " else f" {token} "


def _chunks(text: str) -> list[str]:
    """The rule-processed text split at single spaces (whitespace runs made tokens), before word splitting."""
    text = apply_rules(text)
    if _RE_WS_RUN.search(text):
        text = _RE_WS_RUN.sub(_ws_token, text)
    return text.split(" ")


def fastai_tokenize(text: str) -> str:
    """Rules + spaCy-like splitting + ``replace_space``: fastai's tokens (without ``xxbos``) joined by spaces."""
    return " ".join(map(_CACHE.__getitem__, _chunks(text)))


class _ChunkIds(_Memo):
    """Memo of one tokenizer (one vocabulary, one ``split_special_tokens`` setting): chunk -> the ids the backend
    gives its words, without special tokens."""

    def __init__(self, backend: Tokenizer):
        super().__init__()
        self.backend = backend

    def compute(self, chunk: str) -> tuple[int, ...]:
        words = _CACHE[chunk]
        return tuple(self.backend.encode(words, add_special_tokens=False).ids) if words else ()


def _special_ids_around(backend: Tokenizer) -> tuple[list[int], list[int]]:
    """The ids the post-processor puts before and after a document's (``xxbos`` before): found around the one id
    of a known word."""
    with_specials = backend.encode(UNK, add_special_tokens=True).ids
    at = with_specials.index(backend.token_to_id(UNK))
    return with_specials[:at], with_specials[at + 1 :]


_CHUNK_IDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> {(split, vocab size): _ChunkIds}
_SP_STATE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> SentencePieceIds, or False (words)


def clear_caches() -> None:
    """Empty the word-splitting and chunk-id memos (benchmarks start from empty ones)."""
    _CACHE.clear()
    _CHUNK_IDS.clear()


# ----------------------------------------------------------------------------------------------------------
# The transformers tokenizer.
# ----------------------------------------------------------------------------------------------------------
def _word_backend(itos: Sequence[str]) -> Tokenizer:
    backend = Tokenizer(models.WordLevel(vocab=_unique_names(itos), unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.CharDelimiterSplit(" ")
    return backend


def _unigram_backend(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    backend = Tokenizer(models.Unigram())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(" ", behavior="removed"), pre_tokenizers.Metaspace(split=False)]
    )
    backend.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), unk_token=UNK, show_progress=False
    )
    words = (" ".join(w for w in fastai_tokenize(t).split(" ") if w not in _SPECIAL_SET) for t in texts)
    backend.train_from_iterator(words, trainer=trainer)
    return backend


def is_english(lang: str | None) -> bool:
    """Whether a language code is English (`en`, `en-US`, `en_GB`); None counts as English (fastai's default)."""
    return lang is None or str(lang).lower().replace("_", "-").split("-")[0] == "en"


def _check_word_lang(lang: str | None, model: str = "word") -> None:
    """The word tokenizer is fastai's spaCy *English*: refuse another language rather than split it as English."""
    if not is_english(lang):
        raise ValueError(
            f"the {model} tokenizer splits words like spaCy's English tokenizer; lang={lang!r} would get English "
            "rules. For another language use model='sentencepiece' (fastai's SentencePieceTokenizer): "
            "AwdLstmTokenizer.from_texts(texts, model='sentencepiece', lang=...) or from_sentencepiece(...)"
        )


class AwdLstmTokenizer(TokenizersBackend):
    """fastai/ULMFiT-compatible tokenizer: fastai v2 rules, then spaCy-English words or SentencePiece pieces.

    Build one with :meth:`from_texts`, :meth:`from_fastai_vocab` or :meth:`from_sentencepiece`, save it with
    ``save_pretrained`` and reload it with ``AutoTokenizer.from_pretrained``. Word ids: ``xxunk=0 xxpad=1 xxbos=2
    xxeos=3 xxfld=4 xxrep=5 xxwrep=6 xxup=7 xxmaj=8``; SentencePiece ids are those of fastai's vocabulary, ``▁xxbos``
    first. With ``is_split_into_words=True`` the input words are taken as finished fastai tokens and only looked up
    (word tokenizers only).
    """

    model_input_names = ["input_ids", "attention_mask"]
    padding_side = "right"

    @classmethod
    def _from_backend(cls, backend: Tokenizer, bos: str = BOS, **kwargs) -> AwdLstmTokenizer:
        specials = [AddedToken(t, special=True, normalized=False, single_word=True) for t in (UNK, PAD, bos, EOS)]
        backend.add_special_tokens(specials)
        return cls(
            tokenizer_object=backend,
            unk_token=UNK,
            pad_token=PAD,
            bos_token=bos,
            eos_token=EOS,
            add_bos_token=True,
            add_eos_token=False,
            clean_up_tokenization_spaces=False,
            **kwargs,
        )

    @classmethod
    def from_fastai_vocab(cls, itos: Sequence[str], lang: str = "en", **kwargs) -> AwdLstmTokenizer:
        """Word-level tokenizer over a fastai ``itos`` list; every id is kept (``len(tokenizer) == len(itos)``).
        English only (``lang``): for another language use :meth:`from_sentencepiece`."""
        _check_word_lang(lang)
        missing = [tok for tok in SPECIAL_TOKENS if tok not in itos]
        if missing:
            raise ValueError(f"the vocabulary lacks fastai's special tokens {missing}")
        return cls._from_backend(_word_backend(list(itos)), lang=lang, **kwargs)

    @classmethod
    def from_sentencepiece(
        cls,
        sp_model: str | os.PathLike | bytes,
        vocab: str | os.PathLike | Sequence[str],
        lang: str | None = None,
        **kwargs,
    ) -> AwdLstmTokenizer:
        """fastai's SentencePiece tokenization: ids equal ``Numericalize(vocab)`` of
        ``Tokenizer(SentencePieceTokenizer(lang, sp_model=sp_model))`` with the default rules.

        ``sp_model``: the SentencePiece ``.model`` file (a path or its bytes; unigram, as fastai trains them);
        ``vocab``: fastai's ``itos`` over its pieces (a list of str, or the path of its pickle, read without
        running code); ``lang`` is recorded. Neither ``sentencepiece`` nor this package is needed to load the saved
        tokenizer.
        """
        itos = load_vocab(vocab)
        missing = [tok for tok in SPECIAL_TOKENS if tok not in itos]
        if missing:
            raise ValueError(f"the vocabulary lacks fastai's special tokens {missing}")
        backend, settings = build_backend(read_model(sp_model), itos)
        kwargs.setdefault("split_special_tokens", True)
        return cls._from_backend(backend, bos=SPACE + BOS, lang=lang, sentencepiece=settings, **kwargs)

    @classmethod
    def from_texts(
        cls,
        texts: Iterable[str],
        max_vocab: int = 60000,
        min_freq: int = 3,
        model: str = "word",
        *,
        vocab_size: int | None = None,
        lang: str = "en",
        **kwargs,
    ) -> AwdLstmTokenizer:
        """Build the vocabulary from raw texts.

        ``model="word"`` (English): fastai's ``make_vocab`` (tokens seen at least ``min_freq`` times, at most
        ``max_vocab``, special tokens first, ``xxfake`` padding to a multiple of 8). ``model="sentencepiece"`` (any
        ``lang``; needs ``pip install 'hf_bpt3c[sentencepiece]'`` to train): fastai's ``SentencePieceTokenizer``
        trained on the rule-processed texts (``vocab_size`` pieces, default fastai's heuristic), then
        ``make_vocab(min_freq, max_vocab)`` over their pieces. ``model="unigram"`` (deprecated): a ``tokenizers``
        unigram of ``max_vocab`` pieces over the English words, which fastai never makes.
        """
        if model == "sentencepiece":
            sp_model, itos = train_sentencepiece(texts, lang, vocab_size, min_freq, max_vocab)
            return cls.from_sentencepiece(sp_model, itos, lang=lang, **kwargs)
        if model not in ("word", "unigram"):
            raise ValueError(f"model must be 'word', 'sentencepiece' or 'unigram', not {model!r}")
        if vocab_size is not None:
            raise ValueError("vocab_size is the size of a SentencePiece model: use it with model='sentencepiece'")
        _check_word_lang(lang, model)
        if model == "unigram":
            warnings.warn(
                "model='unigram' trains a tokenizers unigram over spaCy-English words, which fastai never makes; it "
                "is deprecated: use model='sentencepiece' (fastai's SentencePieceTokenizer, any language)",
                FutureWarning,
                stacklevel=2,
            )
            return cls._from_backend(_unigram_backend(texts, max_vocab), lang=lang, **kwargs)
        counts: Counter = Counter()
        for text in texts:
            counts[BOS] += 1
            counts.update(fastai_tokenize(text).split(" "))
        counts.pop("", None)
        return cls._from_backend(_word_backend(make_vocab(counts, min_freq, max_vocab)), lang=lang, **kwargs)

    @property
    def tokenizer_type(self) -> str:
        """``"sentencepiece"`` (fastai's ``SentencePieceTokenizer``) or ``"word"`` (fastai's spaCy English)."""
        return "sentencepiece" if self._sentencepiece() else "word"

    def with_vocabulary(self, texts: Iterable[str], max_vocab: int = 60000, min_freq: int = 3) -> AwdLstmTokenizer:
        """This tokenizer's splitting with a vocabulary built from ``texts`` (fastai's ``make_vocab`` over their
        tokens), as fastai builds the target vocabulary when it fine-tunes a pretrained language model: a
        SentencePiece tokenizer keeps its model (fastai_ulmfit's ``SentencePieceTokenizer(sp_model=...)``), a word
        tokenizer is :meth:`from_texts`. Map a pretrained model onto it with ``hf_bpt3c.adapt_vocabulary``."""
        lang = self.init_kwargs.get("lang", "en")
        sp = self._sentencepiece()
        if not sp:
            return type(self).from_texts(texts, max_vocab=max_vocab, min_freq=min_freq, lang=lang)
        counts = Counter(token for text in texts for token in self.fastai_tokens(text))
        itos = make_vocab(counts, min_freq, max_vocab)
        backend, settings = build_backend(model_of_backend(self.backend_tokenizer, sp.settings), itos)
        return type(self)._from_backend(
            backend, bos=SPACE + BOS, lang=lang, sentencepiece=settings, split_special_tokens=True
        )

    # ------------------------------------------------------------------------------------------------------
    # SentencePiece: fastai's ids over the backend's (see sentencepiece_backend).
    # ------------------------------------------------------------------------------------------------------
    def _sentencepiece(self) -> SentencePieceIds | None:
        """The SentencePiece state of this tokenizer (None for a word tokenizer, whose language is checked)."""
        state = _SP_STATE.get(self)
        if state is None:
            init_kwargs = getattr(self, "init_kwargs", None)
            if init_kwargs is None:  # still in __init__
                return None
            settings = init_kwargs.get("sentencepiece")
            if settings:
                state = SentencePieceIds(self.backend_tokenizer, settings)
            else:
                _check_word_lang(init_kwargs.get("lang", "en"))  # saved before `lang` existed: English
                state = False
            _SP_STATE[self] = state
        return state or None

    def _convert_token_to_id_with_added_voc(self, token: str) -> int:
        sp = self._sentencepiece()
        return sp.token_id(token, self.backend_tokenizer) if sp else super()._convert_token_to_id_with_added_voc(token)

    def convert_ids_to_tokens(self, ids, skip_special_tokens: bool = False):
        tokens, sp = super().convert_ids_to_tokens(ids, skip_special_tokens=skip_special_tokens), self._sentencepiece()
        if not sp or not sp.names or isinstance(ids, int):
            return sp.token(ids, tokens) if sp and isinstance(ids, int) else tokens
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [sp.token(i, tok) for i, tok in zip([int(i) for i in ids if int(i) not in skip], tokens, strict=True)]

    def __len__(self) -> int:  # SentencePiece: fastai's vocabulary, not the model's pieces outside it
        sp = self._sentencepiece()
        return super().__len__() - (sp.base - sp.size if sp else 0)

    @property
    def vocab_size(self) -> int:
        sp = self._sentencepiece()
        return sp.size if sp else super().vocab_size

    def get_vocab(self) -> dict[str, int]:
        vocab, sp = super().get_vocab(), self._sentencepiece()
        return {tok: i for tok, i in vocab.items() if not sp.size <= i < sp.base} if sp else vocab

    def _fix_rows(self, rows: list[tuple[dict, list]]) -> None:
        """SentencePiece: the backend's ids in `_convert_encoding`'s rows -> fastai's (in place)."""
        sp = self._sentencepiece()
        for row, encodings in rows:
            row["input_ids"] = [sp.fix(ids, enc.tokens) for ids, enc in zip(row["input_ids"], encodings, strict=True)]

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False, **kwargs) -> list[str]:
        """Tokens of ``text`` (and ``pair``) as the backend produces them."""
        kwargs["return_offsets_mapping"] = True
        return super().tokenize(text, pair=pair, add_special_tokens=add_special_tokens, **kwargs)

    def fastai_tokens(self, text: str) -> list[str]:
        """fastai's token list for ``text``, ``xxbos`` included (SentencePiece: its pieces, ``▁xxbos`` first)."""
        if self._sentencepiece():
            return self.tokenize(text, add_special_tokens=True)
        body = fastai_tokenize(text)
        return [BOS, *body.split(" ")] if body else [BOS]

    def _prepare(self, text):
        if isinstance(text, str):
            return apply_rules(text) if self._sentencepiece() else fastai_tokenize(text)
        if isinstance(text, (list, tuple)):
            return [self._prepare(t) for t in text]
        return text

    def _encode_plus(self, text, text_pair=None, is_split_into_words: bool = False, **kwargs) -> BatchEncoding:
        sp = self._sentencepiece()
        if sp and is_split_into_words:
            raise ValueError(
                "is_split_into_words: a SentencePiece AwdLstmTokenizer takes text (look pieces up with "
                "convert_tokens_to_ids)"
            )
        plain = isinstance(text, str) or (isinstance(text, (list, tuple)) and all(isinstance(t, str) for t in text))
        if plain and text_pair is None and not is_split_into_words and not kwargs.get("sanitize_control_tokens"):
            return self._encode_texts(text, **kwargs)
        if not is_split_into_words:
            text, text_pair = self._prepare(text), self._prepare(text_pair)
        if not sp:
            return super()._encode_plus(text, text_pair, is_split_into_words=is_split_into_words, **kwargs)
        # Pairs: the backend's own pipeline (fastai never pairs texts), then fastai's ids.
        return_tensors, kwargs["split_special_tokens"] = kwargs.pop("return_tensors", None), True
        out = super()._encode_plus(text, text_pair, **kwargs)
        ids, encodings = out["input_ids"], out.encodings
        if ids and isinstance(ids[0], list):
            out["input_ids"] = [sp.fix(row, enc.tokens) for row, enc in zip(ids, encodings, strict=True)]
        else:
            out["input_ids"] = sp.fix(ids, encodings[0].tokens)
        return BatchEncoding(dict(out), encodings, tensor_type=return_tensors)

    def _encode_texts(
        self,
        text: str | list[str],
        add_special_tokens: bool = True,
        padding_strategy: PaddingStrategy = PaddingStrategy.DO_NOT_PAD,
        truncation_strategy: TruncationStrategy = TruncationStrategy.DO_NOT_TRUNCATE,
        max_length: int | None = None,
        stride: int = 0,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors=None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        verbose: bool = True,
        split_special_tokens: bool | None = None,
        **kwargs,
    ) -> BatchEncoding:
        """Raw texts: fastai rules and word splitting in Python, then one batched call to the Rust backend."""
        texts = [text] if isinstance(text, str) else list(text)
        self.set_truncation_and_padding(
            padding_strategy, truncation_strategy, max_length, stride, pad_to_multiple_of, padding_side
        )
        sp = self._sentencepiece()  # SentencePiece: text is never matched against special tokens, as in fastai
        split = True if sp else self.split_special_tokens if split_special_tokens is None else split_special_tokens
        backend = self.backend_tokenizer
        if backend.encode_special_tokens != split:  # as transformers' own encode does
            backend.encode_special_tokens = split
        plain = padding_strategy == PaddingStrategy.DO_NOT_PAD and truncation_strategy in (
            TruncationStrategy.DO_NOT_TRUNCATE,
            None,
        )
        extras = (return_overflowing_tokens, return_special_tokens_mask, return_offsets_mapping, return_length)
        if (
            plain
            and not any(extras)
            and not return_token_type_ids
            and (sp or isinstance(backend.model, models.WordLevel))
        ):
            if sp:
                ids = sp.ids(backend, [apply_rules(t) for t in texts], add_special_tokens)
                encoding = {"input_ids": ids}
                if return_attention_mask is not False:
                    encoding["attention_mask"] = [[1] * len(row) for row in ids]
            else:
                encoding = self._looked_up(texts, add_special_tokens, split, return_attention_mask)
            for ids in encoding["input_ids"]:
                self._eventual_warn_about_too_long_sequence(ids, max_length, verbose)
            if isinstance(text, str) and return_tensors is None:
                return BatchEncoding({key: value[0] for key, value in encoding.items()})
            return BatchEncoding(encoding, tensor_type=return_tensors)
        # Offsets (relative to the rule-processed text) cost as much as the lookup: only compute them on demand.
        if sp:  # with their tokens: unknown text is looked up
            encodings = sp.encodings(backend, [apply_rules(t) for t in texts], add_special_tokens)
        else:
            encode = backend.encode_batch if return_offsets_mapping else backend.encode_batch_fast
            encodings = encode(list(map(fastai_tokenize, texts)), add_special_tokens=add_special_tokens)
        rows = self._encoding_rows(
            encodings,
            return_token_type_ids=return_token_type_ids,
            return_attention_mask=return_attention_mask,
            return_overflowing_tokens=return_overflowing_tokens,
            return_special_tokens_mask=return_special_tokens_mask,
            return_offsets_mapping=return_offsets_mapping,
            return_length=return_length,
        )
        if sp:
            self._fix_rows(rows)
        keys = rows[0][0] if rows else self.model_input_names
        data = {key: [v for row, _ in rows for v in row[key]] for key in keys}
        if return_overflowing_tokens:
            data["overflow_to_sample_mapping"] = [i for i, (row, _) in enumerate(rows) for _ in row["input_ids"]]
        for ids in data["input_ids"]:
            self._eventual_warn_about_too_long_sequence(ids, max_length, verbose)
        if isinstance(text, str) and return_tensors is None and not return_overflowing_tokens:
            data = {key: value[0] for key, value in data.items()}
        return BatchEncoding(data, [e for _, row in rows for e in row], tensor_type=return_tensors)

    def _looked_up(self, texts: list[str], add_special_tokens: bool, split: bool, return_attention_mask) -> dict:
        """`{"input_ids": [...], "attention_mask": [...]}` of `texts` from the chunk-id memo (see the module doc)."""
        memos = _CHUNK_IDS.setdefault(self, {})
        key = (split, len(self))  # added tokens change the ids: a new memo
        if key not in memos:
            memos[key] = _ChunkIds(self.backend_tokenizer)
        prefix, suffix = _special_ids_around(self.backend_tokenizer) if add_special_tokens else ([], [])
        lookup = memos[key].__getitem__
        ids = [[*prefix, *itertools.chain.from_iterable(map(lookup, _chunks(t))), *suffix] for t in texts]
        if return_attention_mask is False:
            return {"input_ids": ids}
        return {"input_ids": ids, "attention_mask": [[1] * len(row) for row in ids]}

    def _encoding_rows(self, encodings: list, **flags) -> list[tuple[dict, list]]:
        """`tokenizers.Encoding`s -> (`{key: [row, ...]}`, encodings) per text, with transformers' own conversion
        (its private `_convert_encoding`; docs/architecture.md lists the private APIs the core uses, and CI runs
        the tokenizer tests on the oldest supported transformers, 5.23, and on the current one)."""
        return [self._convert_encoding(encoding, **flags) for encoding in encodings]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Readable text from tokens (see :func:`detokenize`)."""
        if isinstance(self.backend_tokenizer.model, models.Unigram):
            tokens = _pieces_to_words(tokens)
            if self._sentencepiece():
                tokens = [t for t in tokens if t]
        return detokenize(tokens)

    def _decode(self, token_ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces=None, **kwargs):
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        tokens = self.convert_ids_to_tokens([int(i) for i in token_ids], skip_special_tokens=skip_special_tokens)
        return self.convert_tokens_to_string([t for t in tokens if t is not None])


AwdLstmTokenizer.register_for_auto_class("AutoTokenizer")
