"""Rendering token attributions: a self-contained HTML page, a plot along the document, the top passages and the
display words of fastai tokens.

`html` renders a page with no script and no fetch (a Content-Security-Policy forbids both), every piece of document
text escaped; `plot` draws the attribution along the document (matplotlib, imported when a plot is drawn);
`top_passages` finds the windows with the largest summed score; `word_pieces` folds fastai's case markers into the
words they mark.
"""

from __future__ import annotations

import html as html_lib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..plots import new_figure

_CASE_MARKERS = ("xxmaj", "xxup")

__all__ = ["html", "plot", "top_passages", "word_pieces"]


def _as_float_list(scores, name: str = "scores") -> list[float]:
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().double().cpu().reshape(-1).tolist()
    elif isinstance(scores, np.ndarray):
        scores = scores.astype(float).reshape(-1).tolist()
    if not isinstance(scores, Sequence) or isinstance(scores, str):
        raise TypeError(f"{name} must be a 1-D tensor, array or list of floats, got {type(scores).__name__}")
    values = [float(s) for s in scores]
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name} must be finite numbers")
    return values


def _tokens_and_scores(tokens_or_text, scores) -> tuple[list[str], list[float]]:
    values = _as_float_list(scores)
    if isinstance(tokens_or_text, str):
        tokens = tokens_or_text.split()
        what = "whitespace-separated words of the text"
    elif isinstance(tokens_or_text, Sequence) and all(isinstance(t, str) for t in tokens_or_text):
        tokens, what = list(tokens_or_text), "tokens"
    else:
        raise TypeError("tokens_or_text must be a str (split on whitespace) or a list of str tokens")
    if len(tokens) != len(values):
        raise ValueError(f"scores must have one value per token: {len(tokens)} {what}, {len(values)} scores")
    return tokens, values


@dataclass
class _Piece:
    """What one displayed word covers: tokens `[start, end)`, its text and whether it is glued to the previous."""

    start: int
    end: int
    text: str
    glued: bool


def word_pieces(tokens: Sequence[str]) -> list[tuple[int, int, str]]:
    """Display words for fastai tokens: `xxmaj word` -> `Word`, `xxup word` -> `WORD` (a Unigram piece without a
    leading `▁` is shown glued to the one before). Returns `(start, end, text)` per displayed word, tokens
    `[start, end)`; every other token is a word of its own."""
    return [(p.start, p.end, p.text) for p in _pieces(tokens)]


def _pieces(tokens: Sequence[str]) -> list[_Piece]:
    unigram = any(t.startswith("▁") for t in tokens)
    pieces: list[_Piece] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in _CASE_MARKERS and i + 1 < len(tokens) and not tokens[i + 1].startswith("xx"):
            word = tokens[i + 1].lstrip("▁")
            text = word[:1].upper() + word[1:] if token == "xxmaj" else word.upper()
            pieces.append(_Piece(i, i + 2, text, unigram and not tokens[i + 1].startswith("▁") and bool(pieces)))
            i += 2
            continue
        glued = unigram and bool(pieces) and not token.startswith("▁") and not token.startswith("xx")
        pieces.append(_Piece(i, i + 1, token.lstrip("▁") if unigram else token, glued))
        i += 1
    return pieces


def top_passages(scores, k: int = 5, width: int = 16) -> list[tuple[int, int, float]]:
    """The `k` non-overlapping windows of `width` tokens with the largest summed score: `(start, end, total)`,
    best first. scores: 1-D, one per token."""
    values = np.asarray(_as_float_list(scores))
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be an int >= 0, got {k!r}")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be an int >= 1, got {width!r}")
    if values.size == 0 or k == 0:
        return []
    width = min(width, values.size)
    window_sums = np.convolve(values, np.ones(width), mode="valid")  # (n - width + 1,)
    taken = np.zeros(values.size, dtype=bool)
    passages = []
    for start in np.argsort(-window_sums, kind="stable"):
        if len(passages) == k:
            break
        if not taken[start : start + width].any():
            taken[start : start + width] = True
            passages.append((int(start), int(start + width), float(window_sums[start])))
    return passages


_PAGE_STYLE = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222;line-height:1.9}
h1{font-size:1.3rem} .meta{color:#555;font-size:.9rem}
.strip{display:flex;height:1.4rem;border:1px solid #bbb;margin:.5rem 0}
.strip a{flex:1 1 0;min-width:1px;text-decoration:none}
.strip a.kept{border-bottom:3px solid #2c7a2c}
.doc span{border-radius:3px;padding:0 1px}
.doc span.special{color:#888;font-size:.8em}
.doc span.passage{outline:2px solid #444}
.legend span{padding:0 .4rem;border-radius:3px}
ol.passages li{margin-bottom:.3rem}
"""
# no script, no fetch, no form: every page is self-contained
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; form-action 'none'; base-uri 'none'"
)


def _colour(score: float, scale: float) -> str:
    """Red for positive (towards the explained class), blue for negative, transparency by |score| / scale."""
    alpha = 0.0 if scale <= 0 else min(abs(score) / scale, 1.0) * 0.8
    rgb = "214,39,40" if score >= 0 else "31,119,180"
    return f"rgba({rgb},{alpha:.3f})"


# Bidirectional controls (they reorder how the text around them is displayed, so a page could show a document
# other than the one the model read) and unpaired surrogates (not valid Unicode: the page could not be written as
# UTF-8). Both are shown as visible `[U+XXXX]` marks instead.
_HIDDEN_CHARACTERS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def escape(text) -> str:
    """`str(text)` with `&`, `<`, `>` and both quotes HTML-escaped, and bidirectional controls (U+202E, U+2066, ...)
    and unpaired surrogates replaced by a visible `[U+XXXX]`."""
    shown = _HIDDEN_CHARACTERS.sub(lambda match: f"[U+{ord(match.group()):04X}]", str(text))
    return html_lib.escape(shown, quote=True)


def html(
    tokens_or_text: str | Sequence[str],
    scores,
    *,
    label: str | None = None,
    probability: float | None = None,
    title: str = "Which passages drove the prediction",
    method: str | None = None,
    chunk_starts: Sequence[int] | None = None,
    kept_span: tuple[int, int] | None = None,
    top_k: int = 5,
    passage_tokens: int = 16,
    strip_min_chunks: int = 4,
    max_strip_cells: int = 300,
    path: str | Path | None = None,
) -> str:
    """A self-contained HTML page with every word highlighted by its score (red: towards the predicted/explained
    class, blue: against it), the label and probability, and for long documents a per-chunk strip at the top
    whose cells link to the chunks, plus links to the top passages. No script, no external resource (a
    Content-Security-Policy forbids both); every piece of text is HTML-escaped.

    Args:
        tokens_or_text: the tokens the scores belong to (fastai's `xxmaj`/`xxup` are folded into the next word,
            their scores added), or a text whose whitespace-separated words the scores belong to.
        scores: 1-D, one per token.
        label, probability: the predicted (or explained) class and its probability, shown at the top.
        method: shown in the header (e.g. "gradient_x_input, scope full").
        chunk_starts: token positions where chunks begin (the strip's cells); default every 72 tokens.
        kept_span: `(start, end)` tokens of BPT3C's kept window, underlined in the strip.
        top_k, passage_tokens: how many passages (windows of that many tokens) are listed and outlined.
        strip_min_chunks: the strip is drawn from this many chunks on; max_strip_cells: chunks merge above it.
        path: also write the page there (UTF-8).
    Returns the page as a string.
    """
    tokens, values = _tokens_and_scores(tokens_or_text, scores)
    _check_page_options(probability, kept_span, strip_min_chunks, max_strip_cells)
    starts = _chunk_starts(chunk_starts, len(tokens))
    pieces = _pieces(tokens)
    piece_scores = [sum(values[p.start : p.end]) for p in pieces]
    scale = max((abs(s) for s in piece_scores), default=0.0)
    passages = top_passages(values, top_k, passage_tokens)
    anchors = _anchors(pieces, starts, passages)
    in_passage = _passage_tokens(passages, len(tokens))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">',
        f"<title>{escape(title)}</title><style>{_PAGE_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        _header(label, probability, method, len(tokens), len(starts), kept_span),
    ]
    if len(starts) >= strip_min_chunks:
        parts.append(_strip(values, starts, kept_span, max_strip_cells))
    parts.append(_passage_list(tokens, passages))
    spans = []
    for i, (piece, score) in enumerate(zip(pieces, piece_scores)):
        anchor_html = "".join(f'<a id="{a}"></a>' for a in anchors.get(i, []))
        classes = []
        if tokens[piece.start].startswith("xx") and piece.end - piece.start == 1:
            classes.append("special")
        if any(in_passage[piece.start : piece.end]):
            classes.append("passage")
        cls = f' class="{" ".join(classes)}"' if classes else ""
        spans.append(
            ("" if piece.glued or i == 0 else " ")
            + anchor_html
            + f'<span{cls} style="background-color:{_colour(score, scale)}" title="{score:.4g}">'
            + f"{escape(piece.text)}</span>"
        )
    page = "\n".join(parts) + '\n<p class="doc">' + "".join(spans) + "</p>\n</body></html>\n"
    if path is not None:
        Path(path).write_text(page, encoding="utf-8")
    return page


def _check_page_options(probability, kept_span, strip_min_chunks, max_strip_cells) -> None:
    """`ValueError`/`TypeError` naming the argument of `html` that is not of the documented form."""
    for name, value, low in (("strip_min_chunks", strip_min_chunks, 0), ("max_strip_cells", max_strip_cells, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if probability is not None and (
        isinstance(probability, bool) or not isinstance(probability, (int, float, np.floating, torch.Tensor))
    ):
        raise TypeError(f"probability must be a number, got {type(probability).__name__}")
    if kept_span is not None:
        try:
            start, end = (int(v) for v in kept_span)
        except (TypeError, ValueError):
            raise TypeError(f"kept_span must be a (start, end) pair of ints, got {kept_span!r}") from None
        if not 0 <= start <= end:
            raise ValueError(f"kept_span must satisfy 0 <= start <= end, got {kept_span!r}")


def _chunk_starts(chunk_starts, n_tokens: int) -> list[int]:
    if chunk_starts is None:
        return list(range(0, max(n_tokens, 1), 72))
    starts = sorted({int(s) for s in chunk_starts})
    if not starts or starts[0] != 0 or starts[-1] >= max(n_tokens, 1):
        raise ValueError(f"chunk_starts must begin at 0 and lie in [0, {n_tokens}), got {list(chunk_starts)[:5]}...")
    return starts


def _anchors(pieces: list[_Piece], starts: list[int], passages) -> dict[int, list[str]]:
    """piece index -> anchor ids placed before it: `chunk-<k>` at the piece holding chunk k's first token,
    `passage-<rank>` at the piece holding the passage's first token."""
    token_to_piece = {}
    for i, piece in enumerate(pieces):
        for t in range(piece.start, piece.end):
            token_to_piece[t] = i
    anchors: dict[int, list[str]] = {}
    for k, start in enumerate(starts):
        anchors.setdefault(token_to_piece.get(start, 0), []).append(f"chunk-{k}")
    for rank, (start, _, _) in enumerate(passages, 1):
        anchors.setdefault(token_to_piece.get(start, 0), []).append(f"passage-{rank}")
    return anchors


def _passage_tokens(passages, n_tokens: int) -> list[bool]:
    marked = [False] * n_tokens
    for start, end, _ in passages:
        marked[start:end] = [True] * (end - start)
    return marked


def _header(label, probability, method, n_tokens: int, n_chunks: int, kept_span) -> str:
    facts = []
    if label is not None:
        facts.append(f"prediction: <b>{escape(label)}</b>")
    if probability is not None:
        facts.append(f"probability {float(probability):.3f}")
    if method is not None:
        facts.append(f"attribution: {escape(method)}")
    facts.append(f"{n_tokens} tokens, {n_chunks} chunks")
    if kept_span is not None:
        facts.append(f"kept window: tokens {int(kept_span[0])}-{int(kept_span[1]) - 1}")
    legend = (
        '<span style="background-color:rgba(214,39,40,.6)">towards the class</span> '
        '<span style="background-color:rgba(31,119,180,.6)">against it</span>'
    )
    return f'<p class="meta">{" &middot; ".join(facts)}</p><p class="meta legend">{legend}</p>'


def _strip(values: list[float], starts: list[int], kept_span, max_cells: int) -> str:
    """One linked cell per chunk (neighbouring chunks merged above `max_cells`), coloured by its summed score."""
    group = -(-len(starts) // max_cells)
    ends = starts[1:] + [len(values)]
    cells = []
    for first in range(0, len(starts), group):
        lo, hi = starts[first], ends[min(first + group, len(starts)) - 1]
        cells.append((first, lo, hi, sum(values[lo:hi])))
    scale = max(abs(c[3]) for c in cells) if cells else 0.0
    links = []
    for k, lo, hi, total in cells:
        kept = kept_span is not None and lo >= kept_span[0] and hi <= kept_span[1]
        cls = ' class="kept"' if kept else ""
        links.append(
            f'<a{cls} href="#chunk-{k}" style="background-color:{_colour(total, scale)}" '
            f'title="tokens {lo}-{hi - 1}: {total:.4g}"></a>'
        )
    caption = '<p class="meta">Chunks (click to jump; underlined: kept window)</p>'
    return caption + f'<div class="strip">{"".join(links)}</div>'


def _passage_list(tokens: list[str], passages) -> str:
    if not passages:
        return ""
    items = []
    for rank, (start, end, total) in enumerate(passages, 1):
        words = " ".join(p.text for p in _pieces(tokens[start:end]))
        items.append(f'<li><a href="#passage-{rank}">tokens {start}-{end - 1}</a> ({total:.3g}): {escape(words)}</li>')
    return f'<p class="meta">Top passages</p><ol class="passages">{"".join(items)}</ol>'


# ----------------------------------------------------------------------------------------------------------------
# Plots (matplotlib is imported when a plot is drawn)
# ----------------------------------------------------------------------------------------------------------------


def plot(
    scores,
    path: str | Path | None = None,
    *,
    tokens: Sequence[str] | None = None,
    chunk_starts: Sequence[int] | None = None,
    kept_span: tuple[int, int] | None = None,
    top_k: int = 5,
    passage_tokens: int = 16,
    title: str | None = None,
    ax=None,
):
    """Attribution along the document (a PNG when `path` is given): the per-token scores, their running sum over
    `passage_tokens`, chunk boundaries (dashed, drawn up to 300 of them), the kept window (green), and the
    `top_k` passages labelled with their words (`tokens`) or positions. Returns the matplotlib Figure.

    scores: 1-D, one per token; tokens: the tokens (for the labels); ax: draw into these axes instead."""
    values = np.asarray(_as_float_list(scores))
    if tokens is not None and len(tokens) != values.size:
        raise ValueError(f"tokens must have one entry per score: {len(tokens)} tokens, {values.size} scores")
    starts = _chunk_starts(chunk_starts, values.size)
    fig, ax = (ax.figure, ax) if ax is not None else new_figure(12, 4.2)
    n = values.size
    if kept_span is not None:
        ax.axvspan(kept_span[0], kept_span[1], color="#dff0d8", zorder=0, label="kept window (BPT3C's gradient)")
    if 1 < len(starts) <= 300:
        for s in starts[1:]:
            ax.axvline(s, color="0.6", lw=0.6, ls="--", zorder=1)
        ax.plot([], [], color="0.6", lw=0.6, ls="--", label="chunk boundary (bptt)")
    positions = np.arange(n)
    ax.vlines(positions, 0, values, color=np.where(values >= 0, "#d62728", "#1f77b4"), lw=0.8, zorder=2)
    width = min(passage_tokens, n)
    running = np.convolve(values, np.ones(width) / width, mode="same")
    ax.plot(positions, running, color="black", lw=1.0, zorder=3, label=f"mean over {width} tokens")
    ax.axhline(0, color="0.3", lw=0.5)
    _label_passages(ax, values, tokens, top_k, passage_tokens)
    ax.set_xlim(0, max(n, 1))
    ax.set_xlabel(f"token position ({n} tokens)")
    ax.set_ylabel("attribution")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(loc="lower left", fontsize=7, framealpha=0.9)
    if path is not None:
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    return fig


def _label_passages(ax, values: np.ndarray, tokens, top_k: int, passage_tokens: int) -> None:
    """Shade the top passages and label them (their words, or their positions) near the top of the axes."""
    for rank, (start, end, _) in enumerate(top_passages(values, top_k, passage_tokens), 1):
        if tokens is not None:
            words = " ".join(p.text for p in _pieces(list(tokens[start:end])))
            text = words if len(words) <= 48 else words[:47] + "…"
        else:
            text = f"tokens {start}-{end - 1}"
        ax.axvspan(start, end, color="#f0c36d", alpha=0.45, zorder=1)
        middle = (start + end) / 2
        side = "right" if middle > 0.75 * values.size else "left" if middle < 0.25 * values.size else "center"
        ax.annotate(
            f"{rank}. {text}",
            xy=(middle, float(values[start:end].max())),
            xytext=(middle, 0.96 - 0.085 * (rank - 1)),
            textcoords=("data", "axes fraction"),
            fontsize=7,
            ha=side,
            va="top",
            arrowprops=dict(arrowstyle="-", color="0.4", lw=0.5),
            bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="0.6", lw=0.5, alpha=0.9),
            zorder=5,
        )
