"""fastai v2's text rules (``fastai/text/core.py``), shared by the word and the SentencePiece tokenizers.

fastai's default pre-rules ``fix_html, replace_rep, replace_wrep, spec_add_spaces, rm_useless_spaces,
replace_all_caps, replace_maj, lowercase`` re-expressed as compiled regular expressions with identical output (they
need back-references and counts that ``tokenizers`` normalizers cannot express), fastai's ``make_vocab``, and the
detokenisation behind ``decode``. The rules are language-independent: fastai applies the same ones before spaCy and
before SentencePiece.

Standard library only (a core module: copied next to saved tokenizers and loaded with ``trust_remote_code=True``).
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Sequence

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


# ----------------------------------------------------------------------------------------------------------
# Vocabulary.
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
