"""fastai's SentencePiece tokenization on a Rust ``tokenizers`` backend.

fastai v2 numericalizes a text for a SentencePiece model as
``Numericalize(vocab)(Tokenizer(SentencePieceTokenizer(lang, sp_model=...))(text))``: its default pre-rules (the
ones of ``fastai_rules``; ``lowercase`` puts ``xxbos `` first), then ``EncodeAsPieces``, then each piece looked up in
fastai's vocabulary ``itos`` (``defaultdict(int)``: anything else is ``xxunk``, 0). Special tokens come out as
SentencePiece makes them: fastai trains with ``▁xxbos ▁xxmaj ...`` as user-defined symbols, so ``xxmaj`` in the
rule-processed text is the piece ``▁xxmaj`` (and ``xxbos`` the piece ``▁xxbos``, the first id of every document).

The backend reproduces ``EncodeAsPieces`` with what transformers' own SentencePiece converters use: the model's
precompiled character map (``Precompiled``), SentencePiece's whitespace handling, a ``Metaspace`` pre-tokenizer, the
user-defined symbols isolated, and a ``Unigram`` model with the pieces' scores. Its vocabulary is ordered so that the
ids are fastai's:

- id ``i < len(itos)`` is ``itos[i]``: a piece the model emits keeps its score; an entry the model never emits (the
  plain special tokens, ``xxfake``, and fastai's entries for the text of unknown characters) gets a score no
  segmentation chooses, and all but the special tokens and ``xxfake`` get a name with a space, which no text
  matches (``"č 0"``; repeated entries ``"tok 1"``, ``"tok 2"``, as fastai looks a repeated token up at its last
  id). The tokenizer shows the real names.
- after them come the pieces the model emits that ``itos`` lacks; the tokenizer maps their ids to ``xxunk`` (0).
- a run of characters the model does not know is one token (SentencePiece and ``tokenizers`` fuse it) whose text
  fastai looks up: the tokenizer maps it to the id of that text (``č``) when ``itos`` has it.

Where the Rust normalizer and SentencePiece disagree (``tokenizers``' ``Precompiled`` rewrites a whole grapheme
cluster from its shortest matching rule, so a compatibility character followed by a combining mark loses the mark,
and stacked combining marks can be dropped; SentencePiece also keeps user-defined symbols typed literally in the text,
``▁xxmaj``, out of normalization), the text is normalized here in Python exactly as SentencePiece does
(``SentencePieceIds.needs_exact``) and only then segmented by the backend.

``sentencepiece`` is needed to train a model (``train``), never to load or run one. Standard library and
``tokenizers`` only otherwise (a core module: copied next to saved tokenizers and loaded with
``trust_remote_code=True``).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import pickle
import re
import struct
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import Encoding, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

from .fastai_rules import BOS, FAKE, SPECIAL_TOKENS, apply_rules, make_vocab
from .safe_pickle import load_data_pickle

SPACE = "▁"
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
# fastai's `eu_langs`: character coverage 0.99999 for these, 0.9998 for the others.
EU_LANGS = frozenset("bg cs da de el en es et fi fr ga hr hu it lt lv mt nl pl pt ro sk sl sv".split())
INSTALL_HINT = "pip install 'hf_bpt3c[sentencepiece]'"
_MAX_FILE_BYTES = 256 * 2**20
_NEVER = -1e6  # the score of an entry the model never emits: no segmentation prefers it to the model's pieces


# ----------------------------------------------------------------------------------------------------------
# The .model file (a protobuf ModelProto), read without protobuf.
# ----------------------------------------------------------------------------------------------------------
@dataclass
class SentencePieceModel:
    """What the backend needs of a SentencePiece ``ModelProto``."""

    pieces: list[tuple[str, float, int]] = field(default_factory=list)  # (piece, score, type)
    model_type: int = 1  # UNIGRAM
    unk_id: int = 0
    byte_fallback: bool = False
    treat_whitespace_as_suffix: bool = False
    charsmap: bytes = b""
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True
    escape_whitespaces: bool = True


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (result - (1 << 64) if result >= 1 << 63 else result), pos
        shift += 7


def _fields(data: bytes):
    """``(field number, value)`` of a protobuf message: int for varints, bytes otherwise."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = data[pos : pos + size], pos + size
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > len(data):
            raise ValueError("truncated protobuf message")
        yield number, value


def read_model(source: str | os.PathLike | bytes) -> SentencePieceModel:
    """Parse a SentencePiece ``.model`` file (a path or its bytes)."""
    data = source if isinstance(source, (bytes, bytearray)) else _read_file(source, "SentencePiece model")
    model = SentencePieceModel()
    try:
        for number, value in _fields(data):
            if number == 1:  # SentencePiece
                piece, score, kind = "", 0.0, NORMAL
                for sub, subvalue in _fields(value):
                    if sub == 1:
                        piece = subvalue.decode("utf-8")
                    elif sub == 2:
                        score = struct.unpack("<f", subvalue)[0]
                    elif sub == 3:
                        kind = subvalue
                model.pieces.append((piece, score, kind))
            elif number == 2:  # TrainerSpec
                spec = dict(_fields(value))
                model.model_type = spec.get(3, 1)
                model.treat_whitespace_as_suffix = bool(spec.get(24, 0))
                model.byte_fallback = bool(spec.get(35, 0))
                model.unk_id = spec.get(40, 0)
            elif number == 3:  # NormalizerSpec
                spec = dict(_fields(value))
                model.charsmap = bytes(spec.get(2, b""))
                model.add_dummy_prefix = bool(spec.get(3, 1))
                model.remove_extra_whitespaces = bool(spec.get(4, 1))
                model.escape_whitespaces = bool(spec.get(5, 1))
    except (IndexError, ValueError, UnicodeDecodeError, struct.error) as err:
        raise ValueError(f"not a SentencePiece model: {err}") from None
    if not model.pieces:
        raise ValueError("not a SentencePiece model: it has no pieces")
    unsupported = {
        "model_type != unigram (fastai's default)": model.model_type != 1,
        "byte_fallback": model.byte_fallback,
        "treat_whitespace_as_suffix": model.treat_whitespace_as_suffix,
        "escape_whitespaces=false": not model.escape_whitespaces,
    }
    if any(unsupported.values()):
        raise ValueError(f"unsupported SentencePiece model: {', '.join(k for k, v in unsupported.items() if v)}")
    return model


def _read_file(path: str | os.PathLike, what: str) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found")
    with open(path, "rb") as file:
        data = file.read(_MAX_FILE_BYTES + 1)
    if len(data) > _MAX_FILE_BYTES:
        raise ValueError(f"{what} {path} refused: larger than {_MAX_FILE_BYTES >> 20} MiB")
    return data


def load_vocab(vocab: str | os.PathLike | Sequence[str]) -> list[str]:
    """fastai's ``itos``: a list of str, or the path of its pickle (read without running code)."""
    if isinstance(vocab, (str, os.PathLike)):
        path = vocab
        try:
            vocab = load_data_pickle(_read_file(path, "vocabulary file"))
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, UnicodeError) as err:
            raise ValueError(f"vocabulary file {path} refused: {' '.join(str(err).split())[:300]}") from None
        except (RecursionError, MemoryError):
            raise ValueError(f"vocabulary file {path} refused: it is not a flat list of tokens") from None
    if isinstance(vocab, (bytes, Mapping)) or not isinstance(vocab, Iterable):
        raise ValueError("the vocabulary must be a list of str (fastai's itos); pickle an L as list(vocab)")
    vocab = list(vocab)
    if not all(isinstance(tok, str) for tok in vocab):
        raise ValueError("the vocabulary must be a list of str (fastai's itos); pickle an L as list(vocab)")
    return vocab


# ----------------------------------------------------------------------------------------------------------
# SentencePiece's normalizer, exactly (for the texts the Rust one would normalize differently).
# ----------------------------------------------------------------------------------------------------------
class Charsmap:
    """A precompiled charsmap: a darts-clone double-array trie of UTF-8 keys and their NUL-terminated rewrites."""

    def __init__(self, blob: bytes):
        (size,) = struct.unpack_from("<I", blob, 0)
        self.units = struct.unpack_from(f"<{size // 4}I", blob, 4)
        self.rewrites = blob[4 + size :]

    def longest(self, data: bytes, start: int) -> tuple[int, bytes] | None:
        """SentencePiece's rule: the longest key at ``data[start:]`` -> (its length, its rewrite)."""
        units, best = self.units, None
        pos = (units[0] >> 10) << ((units[0] & 512) >> 6)
        for end in range(start, len(data)):
            byte = data[end]
            if byte == 0:
                break
            pos ^= byte
            if pos >= len(units) or units[pos] & 0x800000FF != byte:
                break
            unit = units[pos]
            pos ^= (unit >> 10) << ((unit & 512) >> 6)
            if unit & 256:
                value = units[pos] & 0x7FFFFFFF
                best = (end + 1 - start, self.rewrites[value : self.rewrites.index(0, value)])
        return best


def _char_length(byte: int) -> int:
    return 1 if byte < 0x80 else 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4


def normalize(text: str, charsmap: Charsmap | None, settings: Mapping, whitespace: bool = True) -> str:
    """SentencePiece's ``Normalizer::Normalize``: user-defined symbols kept as typed, the longest charsmap rule at
    each position, then (``whitespace``) leading, trailing and repeated spaces removed, the dummy prefix added and
    spaces escaped to ``▁``."""
    data = text.encode("utf-8")
    user = [s.encode("utf-8") for s in settings.get("user_defined_symbols", ())] if whitespace else []
    user.sort(key=len, reverse=True)
    remove = whitespace and settings.get("remove_extra_whitespaces", True)
    space = SPACE.encode("utf-8") if whitespace else b" "

    def prefix(i: int) -> tuple[bytes, int]:
        for symbol in user:
            if data.startswith(symbol, i):
                return symbol, len(symbol)
        found = charsmap.longest(data, i) if charsmap is not None else None
        if found:
            return found[1], found[0]
        size = _char_length(data[i])
        return data[i : i + size], size

    out, i = bytearray(), 0
    while remove and i < len(data):
        piece, size = prefix(i)
        if piece != b" ":
            break
        i += size
    if whitespace and settings.get("add_dummy_prefix", True):
        out += space
    prev_space = remove
    while i < len(data):
        piece, size = prefix(i)
        while prev_space and piece.startswith(b" "):
            piece = piece[1:]
        if piece:
            out += piece.replace(b" ", space)
            prev_space = piece.endswith(b" ")
        i += size
        if not remove:
            prev_space = False
    while remove and out.endswith(space):
        del out[-len(space) :]
    return out.decode("utf-8")


@functools.cache
def _grapheme_marks() -> tuple[frozenset, dict[int, str]]:
    """Characters that extend a grapheme cluster (combining marks, joiners, variation selectors, emoji modifiers,
    Hangul jamo, ...) or prepend to one: only around them can the Rust normalizer cut text differently. Returns
    them and a ``str.translate`` table marking them ``\x01`` (extend) and ``\x02`` (prepend)."""
    extend = [(0x200C, 0x200D), (0xFE00, 0xFE0F), (0xE0100, 0xE01EF), (0x1F3FB, 0x1F3FF), (0xE0020, 0xE007F)]
    extend += [(0x1100, 0x11FF), (0xA960, 0xA97F), (0xD7B0, 0xD7FF), (0xFF9E, 0xFF9F), (0x1F1E6, 0x1F1FF)]
    prepend = [(0x600, 0x605), (0x6DD, 0x6DD), (0x70F, 0x70F), (0x890, 0x891), (0x8E2, 0x8E2), (0xD4E, 0xD4E)]
    prepend += [(0x110BD, 0x110BD), (0x110CD, 0x110CD), (0x111C2, 0x111C3), (0x1193F, 0x1193F), (0x11941, 0x11941)]
    prepend += [(0x11A3A, 0x11A3A), (0x11A84, 0x11A89), (0x11D46, 0x11D46), (0x11F02, 0x11F02)]
    table = {code: "\x01" for start, end in extend for code in range(start, end + 1)}
    table.update((code, "\x01") for code in range(0x20000) if unicodedata.category(chr(code)) in ("Mn", "Mc", "Me"))
    table.update((code, "\x02") for start, end in prepend for code in range(start, end + 1))
    marks = frozenset(map(chr, table))
    table.update({1: "\x03", 2: "\x03"})
    return marks, table


_RE_CLUSTER = re.compile(r"\x02+[^\x01\x02]?\x01*|[^\x01\x02]?\x01+", re.S)


# ----------------------------------------------------------------------------------------------------------
# The backend.
# ----------------------------------------------------------------------------------------------------------
def build_backend(model: SentencePieceModel, itos: Sequence[str]) -> tuple[Tokenizer, dict]:
    """The ``tokenizers`` backend of ``model`` whose ids are ``itos``'s (see the module doc), and the settings the
    tokenizer keeps (``tokenizer_config.json``)."""
    emitted = {piece: score for piece, score, kind in model.pieces if kind in (NORMAL, USER_DEFINED)}
    user = [piece for piece, _, kind in model.pieces if kind == USER_DEFINED]
    last = {tok: i for i, tok in enumerate(itos)}
    kept_names = set(SPECIAL_TOKENS) | {FAKE}
    vocab, taken = [], set(itos)
    for i, tok in enumerate(itos):
        if last[tok] == i and tok in emitted:
            vocab.append((tok, emitted[tok]))
        elif last[tok] == i and tok in kept_names:
            vocab.append((tok, _NEVER))
        else:  # never a piece: a name no text matches ("<tok> 0" for fastai's text of unknown characters)
            k = 0 if last[tok] == i else 1
            while f"{tok} {k}" in taken:
                k += 1
            taken.add(f"{tok} {k}")
            vocab.append((f"{tok} {k}", _NEVER))
    vocab += [(piece, score) for piece, score in emitted.items() if piece not in last]
    backend = Tokenizer(models.Unigram(vocab, unk_id=0, byte_fallback=False))

    steps = [normalizers.Precompiled(model.charsmap)] if model.charsmap else []
    if model.remove_extra_whitespaces:
        steps += [normalizers.Replace(Regex(r"\A +| +\z"), ""), normalizers.Replace(Regex(" {2,}"), " ")]
    steps.append(normalizers.Replace(" ", SPACE))
    if model.add_dummy_prefix:  # Metaspace adds no prefix to a text that starts with "▁"; SentencePiece does
        steps.append(normalizers.Replace(Regex(r"\A▁"), SPACE * 2))
    backend.normalizer = normalizers.Sequence(steps)
    # A piece never spans a "▁" that it does not start with: each "▁word" is segmented on its own (and cached).
    split = not any(SPACE in piece[1:] for piece in emitted)
    settings = {
        "vocab_size": len(itos),
        "user_defined_symbols": user,
        "add_dummy_prefix": model.add_dummy_prefix,
        "remove_extra_whitespaces": model.remove_extra_whitespaces,
        "split": split,
    }
    backend.pre_tokenizer = _pre_tokenizer(settings, "always" if model.add_dummy_prefix else "never")
    backend.decoder = decoders.Metaspace(replacement=SPACE, prepend_scheme="always", split=split)
    return backend, settings


def model_of_backend(backend: Tokenizer, settings: Mapping) -> SentencePieceModel:
    """The SentencePiece model inside a backend made by ``build_backend`` (its emitted pieces with their scores,
    the character map and the whitespace flags), to build a backend over another vocabulary."""
    spec = json.loads(backend.to_str())
    user = set(settings["user_defined_symbols"])
    pieces = [
        (piece, score, USER_DEFINED if piece in user else NORMAL)
        for piece, score in spec["model"]["vocab"]
        if score != _NEVER and " " not in piece
    ]
    return SentencePieceModel(
        pieces=pieces,
        charsmap=SentencePieceIds._charsmap_blob(backend),
        add_dummy_prefix=bool(settings["add_dummy_prefix"]),
        remove_extra_whitespaces=bool(settings["remove_extra_whitespaces"]),
    )


def _pre_tokenizer(settings: Mapping, prepend_scheme: str) -> pre_tokenizers.PreTokenizer:
    steps = [pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme=prepend_scheme, split=settings["split"])]
    user = sorted(settings["user_defined_symbols"], key=len, reverse=True)
    if user:  # SentencePiece emits a user-defined symbol whole wherever it occurs
        steps.append(pre_tokenizers.Split(Regex("|".join(map(re.escape, user))), behavior="isolated"))
    return pre_tokenizers.Sequence(steps)


class SentencePieceIds:
    """What a SentencePiece tokenizer adds to its backend to give fastai's ids (see the module doc)."""

    max_memo = 100_000

    def __init__(self, backend: Tokenizer, settings: Mapping):
        self.settings = settings
        self.size = int(settings["vocab_size"])
        self.base = backend.get_vocab_size(with_added_tokens=False)
        renamed = {name: i for name, i in backend.get_vocab(with_added_tokens=False).items() if " " in name}
        self.names = {i: name.rsplit(" ", 1)[0] for name, i in renamed.items()}  # id -> fastai's token
        self.surfaces = {name[:-2]: i for name, i in renamed.items() if name.endswith(" 0")}
        user = sorted(settings.get("user_defined_symbols", ()), key=len, reverse=True)
        self.literal = re.compile("|".join(map(re.escape, user))) if user else None
        self.memo: dict[str, bool] = {}
        blob = self._charsmap_blob(backend)
        self.charsmap = Charsmap(blob) if blob else None
        self.precompiled = normalizers.Precompiled(blob) if blob else None
        self.exact_backend = Tokenizer.from_str(backend.to_str())  # for Python-normalized text
        self.exact_backend.normalizer = normalizers.Sequence([])
        self.exact_backend.pre_tokenizer = _pre_tokenizer(settings, "never")
        self.exact_backend.encode_special_tokens = True

    @staticmethod
    def _charsmap_blob(backend: Tokenizer) -> bytes:
        spec = json.loads(backend.to_str()).get("normalizer") or {}
        for step in spec.get("normalizers", [spec]):
            if step.get("type") == "Precompiled":
                return base64.b64decode(step["precompiled_charsmap"])
        return b""

    def token_id(self, token: str, backend: Tokenizer) -> int:
        """fastai's ``o2i[token]``."""
        idx = backend.token_to_id(token)
        if idx is None:
            return self.surfaces.get(token, 0)
        return 0 if self.size <= idx < self.base else idx

    def token(self, idx: int, name: str | None) -> str | None:
        """fastai's ``itos[idx]`` for the backend's name of ``idx``."""
        return self.names.get(idx, name)

    def needs_exact(self, text: str) -> bool:
        """Whether the Rust normalizer would normalize ``text`` differently from SentencePiece."""
        if self.literal is not None and self.literal.search(text):
            return True
        marks, table = _grapheme_marks()
        if self.charsmap is None or marks.isdisjoint(text):
            return False
        for match in _RE_CLUSTER.finditer(text.translate(table)):
            cluster = text[match.start() : match.end()]
            same = self.memo.get(cluster)
            if same is None:
                same = self.precompiled.normalize_str(cluster) == normalize(cluster, self.charsmap, {}, False)
                if len(self.memo) >= self.max_memo:
                    self.memo.clear()
                self.memo[cluster] = same
            if not same:
                return True
        return False

    def exact_text(self, text: str) -> str:
        return normalize(text, self.charsmap, self.settings)

    def fix(self, ids: list[int], tokens: Sequence[str] | None = None) -> list[int]:
        """The backend's ids -> fastai's: pieces outside ``itos`` -> 0, unknown text that ``itos`` has -> its id."""
        if tokens is not None and self.surfaces and 0 in ids:
            ids = [self.surfaces.get(tok, 0) if idx == 0 else idx for idx, tok in zip(ids, tokens, strict=True)]
        if ids and max(ids) >= self.size:
            ids = [0 if self.size <= idx < self.base else idx for idx in ids]
        return ids

    def needs_tokens(self, ids: list[int]) -> bool:
        return bool(self.surfaces) and 0 in ids

    def ids(self, backend: Tokenizer, texts: list[str], add_special_tokens: bool) -> list[list[int]]:
        """fastai's ids of rule-processed texts (the plain call: no padding, truncation or offsets)."""
        exact = [self.needs_exact(text) for text in texts]
        fast = [i for i, e in enumerate(exact) if not e]
        rows: list[list[int]] = [[] for _ in texts]
        for i, enc in zip(
            fast, backend.encode_batch_fast([texts[i] for i in fast], add_special_tokens=add_special_tokens)
        ):
            rows[i] = enc.ids
        again = [i for i in fast if self.needs_tokens(rows[i])]  # unknown text that fastai looks up: see its tokens
        for i, enc in zip(
            again, backend.encode_batch([texts[i] for i in again], add_special_tokens=add_special_tokens)
        ):
            rows[i] = self.fix(enc.ids, enc.tokens)
        for i in set(fast) - set(again):
            rows[i] = self.fix(rows[i])
        slow = [i for i, e in enumerate(exact) if e]
        if slow:
            self._sync(backend)
            normalized = [self.exact_text(texts[i]) for i in slow]
            for i, enc in zip(slow, self.exact_backend.encode_batch(normalized, add_special_tokens=add_special_tokens)):
                rows[i] = self.fix(enc.ids, enc.tokens)
        return rows

    def _sync(self, backend: Tokenizer) -> None:
        self.exact_backend.post_processor = backend.post_processor
        self.exact_backend.no_padding()
        if backend.truncation:
            self.exact_backend.enable_truncation(**backend.truncation)
        else:
            self.exact_backend.no_truncation()

    def encodings(self, backend: Tokenizer, texts: list[str], add_special_tokens: bool) -> list[Encoding]:
        """``tokenizers.Encoding``s of rule-processed texts with the backend's truncation and padding (their ids are
        the backend's: ``fix`` them with their tokens)."""
        exact = [self.needs_exact(text) for text in texts]
        if not any(exact):
            return backend.encode_batch(texts, add_special_tokens=add_special_tokens)
        padding = backend.padding
        self._sync(backend)
        backend.no_padding()
        try:
            encodings = backend.encode_batch(texts, add_special_tokens=add_special_tokens)
            slow = [i for i, e in enumerate(exact) if e]
            normalized = [self.exact_text(texts[i]) for i in slow]
            for i, enc in zip(slow, self.exact_backend.encode_batch(normalized, add_special_tokens=add_special_tokens)):
                encodings[i] = enc
        finally:
            if padding:
                backend.enable_padding(**padding)
        if padding:
            length = padding["length"] or max((len(enc.ids) for enc in encodings), default=0)
            multiple = padding["pad_to_multiple_of"]
            if multiple and length % multiple:
                length += multiple - length % multiple
            for enc in encodings:
                enc.pad(
                    length,
                    direction=padding["direction"],
                    pad_id=padding["pad_id"],
                    pad_type_id=padding["pad_type_id"],
                    pad_token=padding["pad_token"],
                )
        return encodings


# ----------------------------------------------------------------------------------------------------------
# Training like fastai's SentencePieceTokenizer.setup + Numericalize.setups.
# ----------------------------------------------------------------------------------------------------------
def fastai_vocab_size(lines: Iterable[str], max_vocab_sz: int = 30000) -> int:
    """fastai's ``_get_vocab_sz``: a quarter of the distinct whitespace-separated words, rounded up to a multiple
    of 8, at least 29 and at most ``max_vocab_sz``."""
    words: set[str] = set()
    for line in lines:
        words.update(line.split())
        if len(words) // 4 > max_vocab_sz:
            return max_vocab_sz
    size = len(words) // 4
    size += -size % 8
    return max(size, 29)


def train(
    texts: Iterable[str], lang: str = "en", vocab_size: int | None = None, min_freq: int = 3, max_vocab: int = 60000
) -> tuple[bytes, list[str]]:
    """Train a SentencePiece model on ``texts`` as fastai does, and build fastai's vocabulary over its pieces.

    The texts go through fastai's rules (``xxbos `` first) and are written one per line; the trainer gets fastai's
    flags (unigram, ``vocab_size`` or ``_get_vocab_sz``'s heuristic, character coverage 0.99999 for fastai's
    ``eu_langs`` else 0.9998, the special tokens as ``▁``-prefixed user-defined symbols, ``unk_id`` after them, no
    pad/bos/eos, ``hard_vocab_limit=false``); ``make_vocab(min_freq, max_vocab)`` then counts the pieces of the same
    texts. Returns the ``.model`` bytes and ``itos``.
    """
    try:
        import sentencepiece as spm
    except ImportError:
        raise ImportError(f"training a SentencePiece tokenizer needs sentencepiece: {INSTALL_HINT}") from None
    lines = [f"{BOS} {apply_rules(text)}" for text in texts]  # fastai's `lowercase` rule adds "xxbos "
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "texts.out"
        with open(path, "w", encoding="utf-8") as file:
            for line in lines:
                file.write(f"{line}\n")
        specials = [SPACE + tok for tok in SPECIAL_TOKENS]
        spm.SentencePieceTrainer.Train(
            input=str(path),
            vocab_size=vocab_size if vocab_size is not None else fastai_vocab_size(lines),
            model_prefix=str(Path(tmp) / "spm"),
            character_coverage=0.99999 if lang in EU_LANGS else 0.9998,
            model_type="unigram",
            unk_id=len(specials),
            pad_id=-1,
            bos_id=-1,
            eos_id=-1,
            minloglevel=2,
            user_defined_symbols=",".join(specials),
            hard_vocab_limit="false",
        )
        model = (Path(tmp) / "spm.model").read_bytes()
    processor = spm.SentencePieceProcessor(model_proto=model)
    counts = Counter(piece for line in lines for piece in processor.EncodeAsPieces(line))
    return model, make_vocab(counts, min_freq, max_vocab)
