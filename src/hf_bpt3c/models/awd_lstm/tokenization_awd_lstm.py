"""ULMFiT word tokenizer: fastai v2's text rules and spaCy-English word splitting on a Rust `tokenizers` backend.

Pipeline (same order and output as fastai's ``Tokenizer(SpacyTokenizer('en'))`` with the default rules):

1. fastai's pre-rules ``fix_html, replace_rep, replace_wrep, spec_add_spaces, rm_useless_spaces,
   replace_all_caps, replace_maj, lowercase`` as compiled regular expressions (in Python: they need
   back-references and counts that ``tokenizers`` normalizers cannot express);
2. spaCy-English-like word splitting (whitespace handling, prefixes, suffixes, infixes, URLs and the English
   tokenizer exceptions), memoised per whitespace-delimited chunk, then fastai's ``replace_space`` post-rule;
3. the words, joined by single spaces, go in one batch to the Rust backend (``CharDelimiterSplit(" ")``
   pre-tokenizer, ``WordLevel`` or ``Unigram`` model, a post-processor that prepends ``xxbos``).

A word-level vocabulary encodes each whitespace-delimited chunk on its own (the pre-tokenizer splits at spaces,
a special token cannot span one, the post-processor only prepends ``xxbos``), so the plain call (no padding,
truncation, offsets or overflow: what ``datasets.map`` does) looks the ids of each chunk up in a memo filled by the
backend (``_ChunkIds``): the same ids, without building a Rust ``Encoding`` per document.

The saved ``tokenizer.json`` therefore maps fastai-tokenized text (tokens joined by spaces, fastai's on-disk
format) to ids on its own; raw text needs this class, which ``save_pretrained`` ships as remote code.

Offsets would refer to the rule-processed text and cost the Rust backend as much as the lookup itself, so they
are only computed when asked for (``return_offsets_mapping=True``, which also gives ``BatchEncoding.tokens()`` and
``word_ids()``); otherwise use ``tokenize`` or ``convert_ids_to_tokens`` to see tokens.

The English punctuation classes below and the tokenizer exceptions (``spacy_english_exceptions``) follow spaCy's
English defaults (spaCy, MIT licence, (c) ExplosionAI GmbH), restricted to what can occur in fastai's lowercased
text.

This module must only import the standard library, ``tokenizers``, ``transformers`` and its data module
``spacy_english_exceptions`` (relative: both are copied next to saved tokenizers and loaded with
``trust_remote_code=True``).
"""

from __future__ import annotations

import functools
import html
import itertools
import re
import unicodedata
import weakref
from collections import Counter
from collections.abc import Iterable, Sequence

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import BatchEncoding, TokenizersBackend
from transformers.tokenization_utils_base import TruncationStrategy
from transformers.utils import PaddingStrategy

from .spacy_english_exceptions import EXCEPTIONS

UNK, PAD, BOS, EOS, FLD, TK_REP, TK_WREP, TK_UP, TK_MAJ = SPECIAL_TOKENS = (
    "xxunk xxpad xxbos xxeos xxfld xxrep xxwrep xxup xxmaj".split()
)
FAKE = "xxfake"
_SPECIAL_SET = frozenset(SPECIAL_TOKENS)

# ----------------------------------------------------------------------------------------------------------
# fastai v2 pre-rules (fastai/text/core.py), re-expressed for speed with identical output.
# ----------------------------------------------------------------------------------------------------------
_HTML_FIXES = (
    ("#39;", "'"),
    ("amp;", "&"),
    ("#146;", "'"),
    ("nbsp;", " "),
    ("#36;", "$"),
    ("\\n", "\n"),
    ("quot;", "'"),
    ("<br />", "\n"),
    ('\\"', '"'),
    ("<unk>", UNK),
    (" @.@ ", "."),
    (" @-@ ", "-"),
    ("...", " …"),
)
_RE_REP_ANY = re.compile(r"(.)\1\1", re.S)
_RE_REP = re.compile(r"(\S)(\1{2,})")
_RE_WREP_ANY = re.compile(r"\s(\w++)\s++\1\s++\1")
_RE_WREP_START = re.compile(r"(\w++)\s++\1\s++\1")
_RE_WREP = re.compile(r"(?:\s|^)(\w+)\s+((?:\1\s+)+)\1(\s|\W|$)")
_RE_SPACES = re.compile(" {2,}")
# A token of 2+ chars, all caps (fastai: `[A-Z]+[^a-z\s]*`) -> insert `xxup` (lowercasing happens at the end).
_RE_ALL_CAPS = re.compile(r"[A-Z](?<!\S[A-Z])(?=[^a-z\s]++(?!\S))")
# A Capitalised token that replace_all_caps left alone, i.e. containing a lowercase ASCII letter -> `xxmaj`.
_RE_MAJ = re.compile(r"[A-Z](?<!\S[A-Z])(?=[^A-Z\s]*?[a-z][^A-Z\s]*+(?!\S))")
# A whitespace run other than one plain space: spaCy turns it into a token (minus a leading plain space).
_RE_WS_RUN = re.compile(r"[^\S ]\s*")


def fix_html(text: str) -> str:
    """fastai's ``fix_html``: undo common HTML/wiki escapes, then ``html.unescape``."""
    for old, new in _HTML_FIXES:
        text = text.replace(old, new)
    return html.unescape(text)


def _rep(match: re.Match) -> str:
    char, rest = match.groups()
    return f" {TK_REP} {len(rest) + 1} {char} "


def _wrep(match: re.Match) -> str:
    word, reps, end = match.groups()
    return f" {TK_WREP} {len(reps.split()) + 2} {word} {end}"


def _up(match: re.Match) -> str:
    return f"{TK_UP} {match[0]}"


def _maj(match: re.Match) -> str:
    return f"{TK_MAJ} {match[0]}"


def apply_rules(text: str) -> str:
    """Apply fastai v2's default pre-rules, except that ``xxbos`` is left to the post-processor."""
    text = fix_html(text)
    if _RE_REP_ANY.search(text):
        text = _RE_REP.sub(_rep, text)
    if _RE_WREP_ANY.search(text) or _RE_WREP_START.match(text):
        text = _RE_WREP.sub(_wrep, text)
    if "/" in text or "#" in text or "\\" in text:
        text = text.replace("/", " / ").replace("#", " # ").replace("\\", " \\ ")
    if "  " in text:
        text = _RE_SPACES.sub(" ", text)
    text = _RE_ALL_CAPS.sub(_up, text)
    text = _RE_MAJ.sub(_maj, text)
    return text.lower().strip()


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


def clear_caches() -> None:
    """Empty the word-splitting and chunk-id memos (benchmarks start from empty ones)."""
    _CACHE.clear()
    _CHUNK_IDS.clear()


# ----------------------------------------------------------------------------------------------------------
# Detokenization for decode().
# ----------------------------------------------------------------------------------------------------------
_RE_DETOK_SPACE = re.compile(r" (?=[.,!?;:%)\]}…]|n't\b|'(?:s|m|re|ve|d|ll)\b)|(?<=[(\[{$#]) ")


def _restore_case(tokens: Sequence[str]) -> list[str]:
    """Apply ``xxmaj`` (capitalise) and ``xxup`` (upper-case) to the token that follows them."""
    out: list[str] = []
    for tok in tokens:
        if out and out[-1] in (TK_MAJ, TK_UP) and tok not in _SPECIAL_SET:
            out[-1] = tok[:1].upper() + tok[1:] if out[-1] == TK_MAJ else tok.upper()
        else:
            out.append(tok)
    return out


def detokenize(tokens: Sequence[str]) -> str:
    """Readable text from fastai tokens: ``xxmaj``/``xxup`` restore case, ``xxrep``/``xxwrep`` expand."""
    tokens = _restore_case(tokens)
    words: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in (TK_REP, TK_WREP) and i + 2 < len(tokens) and tokens[i + 1].isdigit():
            count, unit = int(tokens[i + 1]), tokens[i + 2]
            words.append(unit * count if tok == TK_REP else " ".join([unit] * count))
            i += 3
        else:
            words.append(tok)
            i += 1
    text = " ".join(w.replace("▁", " ") for w in words if w != FAKE and not w.startswith(FAKE + " "))
    return _RE_DETOK_SPACE.sub("", text)


def _pieces_to_words(pieces: Sequence[str]) -> list[str]:
    """Unigram pieces -> words: ``▁`` starts a word, special tokens stand alone, other pieces continue a word."""
    words: list[str] = []
    glue = False
    for piece in pieces:
        if piece in _SPECIAL_SET:
            words.append(piece)
            glue = False
        elif piece.startswith("▁") or not glue:
            words.append(piece[1:] if piece.startswith("▁") else piece)
            glue = True
        else:
            words[-1] += piece
    return words


# ----------------------------------------------------------------------------------------------------------
# The transformers tokenizer.
# ----------------------------------------------------------------------------------------------------------
def make_vocab(counts: Counter, min_freq: int = 3, max_vocab: int = 60000) -> list[str]:
    """fastai's ``make_vocab``: frequent tokens, special tokens first, ``xxfake`` padding to a multiple of 8."""
    vocab = [tok for tok, count in counts.most_common(max_vocab) if count >= min_freq]
    for tok in reversed(SPECIAL_TOKENS):
        if tok in vocab:
            vocab.remove(tok)
        vocab.insert(0, tok)
    vocab = vocab[:max_vocab]
    return vocab + [FAKE] * (8 - len(vocab) % 8)


def _unique_names(itos: Sequence[str]) -> dict[str, int]:
    """token -> id keeping every id; repeated entries get names with a space, which no text can produce."""
    vocab: dict[str, int] = {}
    for idx, tok in enumerate(itos):
        name, k = tok, 0
        while name in vocab:
            k += 1
            name = f"{tok} {k}"
        vocab[name] = idx
    return vocab


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


class AwdLstmTokenizer(TokenizersBackend):
    """fastai/ULMFiT-compatible tokenizer (fastai v2 rules, spaCy English words, ``xxbos`` first).

    Build one with :meth:`from_texts` or :meth:`from_fastai_vocab`, save it with ``save_pretrained`` and
    reload it with ``AutoTokenizer.from_pretrained``. Ids: ``xxunk=0 xxpad=1 xxbos=2 xxeos=3 xxfld=4 xxrep=5
    xxwrep=6 xxup=7 xxmaj=8``. With ``is_split_into_words=True`` the input words are taken as finished fastai
    tokens and only looked up.
    """

    model_input_names = ["input_ids", "attention_mask"]
    padding_side = "right"

    @classmethod
    def _from_backend(cls, backend: Tokenizer, **kwargs) -> AwdLstmTokenizer:
        specials = [AddedToken(t, special=True, normalized=False, single_word=True) for t in (UNK, PAD, BOS, EOS)]
        backend.add_special_tokens(specials)
        return cls(
            tokenizer_object=backend,
            unk_token=UNK,
            pad_token=PAD,
            bos_token=BOS,
            eos_token=EOS,
            add_bos_token=True,
            add_eos_token=False,
            clean_up_tokenization_spaces=False,
            **kwargs,
        )

    @classmethod
    def from_fastai_vocab(cls, itos: Sequence[str], **kwargs) -> AwdLstmTokenizer:
        """Word-level tokenizer over a fastai ``itos`` list; every id is kept (``len(tokenizer) == len(itos)``)."""
        missing = [tok for tok in SPECIAL_TOKENS if tok not in itos]
        if missing:
            raise ValueError(f"the vocabulary lacks fastai's special tokens {missing}")
        return cls._from_backend(_word_backend(list(itos)), **kwargs)

    @classmethod
    def from_texts(
        cls,
        texts: Iterable[str],
        max_vocab: int = 60000,
        min_freq: int = 3,
        model: str = "word",
        **kwargs,
    ) -> AwdLstmTokenizer:
        """Build the vocabulary from raw texts.

        ``model="word"``: fastai's ``make_vocab`` (tokens seen at least ``min_freq`` times, at most ``max_vocab``,
        special tokens first, ``xxfake`` padding to a multiple of 8). ``model="unigram"``: a unigram subword
        model of ``max_vocab`` pieces (MultiFiT used 15000) trained on the rule-processed words; ``min_freq``
        is unused.
        """
        if model == "unigram":
            return cls._from_backend(_unigram_backend(texts, max_vocab), **kwargs)
        if model != "word":
            raise ValueError(f"model must be 'word' or 'unigram', not {model!r}")
        counts: Counter = Counter()
        for text in texts:
            counts[BOS] += 1
            counts.update(fastai_tokenize(text).split(" "))
        counts.pop("", None)
        return cls._from_backend(_word_backend(make_vocab(counts, min_freq, max_vocab)), **kwargs)

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False, **kwargs) -> list[str]:
        """Tokens of ``text`` (and ``pair``) as the backend produces them."""
        kwargs["return_offsets_mapping"] = True
        return super().tokenize(text, pair=pair, add_special_tokens=add_special_tokens, **kwargs)

    def fastai_tokens(self, text: str) -> list[str]:
        """fastai's token list for ``text``, ``xxbos`` included."""
        body = fastai_tokenize(text)
        return [BOS, *body.split(" ")] if body else [BOS]

    def _prepare(self, text):
        if isinstance(text, str):
            return fastai_tokenize(text)
        if isinstance(text, (list, tuple)):
            return [self._prepare(t) for t in text]
        return text

    def _encode_plus(self, text, text_pair=None, is_split_into_words: bool = False, **kwargs) -> BatchEncoding:
        plain = isinstance(text, str) or (isinstance(text, (list, tuple)) and all(isinstance(t, str) for t in text))
        if plain and text_pair is None and not is_split_into_words and not kwargs.get("sanitize_control_tokens"):
            return self._encode_texts(text, **kwargs)
        if not is_split_into_words:
            text, text_pair = self._prepare(text), self._prepare(text_pair)
        return super()._encode_plus(text, text_pair, is_split_into_words=is_split_into_words, **kwargs)

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
        split = self.split_special_tokens if split_special_tokens is None else split_special_tokens
        backend = self.backend_tokenizer
        if backend.encode_special_tokens != split:  # as transformers' own encode does
            backend.encode_special_tokens = split
        plain = padding_strategy == PaddingStrategy.DO_NOT_PAD and truncation_strategy in (
            TruncationStrategy.DO_NOT_TRUNCATE,
            None,
        )
        extras = (return_overflowing_tokens, return_special_tokens_mask, return_offsets_mapping, return_length)
        if plain and not any(extras) and not return_token_type_ids and isinstance(backend.model, models.WordLevel):
            encoding = self._looked_up(texts, add_special_tokens, split, return_attention_mask)
            for ids in encoding["input_ids"]:
                self._eventual_warn_about_too_long_sequence(ids, max_length, verbose)
            if isinstance(text, str) and return_tensors is None:
                return BatchEncoding({key: value[0] for key, value in encoding.items()})
            return BatchEncoding(encoding, tensor_type=return_tensors)
        # Offsets (relative to the rule-processed text) cost as much as the lookup: only compute them on demand.
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
        return detokenize(tokens)

    def _decode(self, token_ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces=None, **kwargs):
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        tokens = self.convert_ids_to_tokens([int(i) for i in token_ids], skip_special_tokens=skip_special_tokens)
        return self.convert_tokens_to_string([t for t in tokens if t is not None])


AwdLstmTokenizer.register_for_auto_class("AutoTokenizer")
