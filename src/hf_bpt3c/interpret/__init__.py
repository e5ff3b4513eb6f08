"""Seeing why: which passages of a long document drove a BPT3C classifier's decision, and which documents it gets
most wrong.

- `token_attributions` scores every token of every document for one class (default: the predicted one):
  `"gradient"` (fastai's intrinsic attention: the norm of the target logit's gradient w.r.t. the token's
  embedding), `"gradient_x_input"` (that gradient dotted with the embedding), `"integrated_gradients"` (the same
  along a straight path from the padding embedding, Gauss-Legendre quadrature over `steps` points).
  `scope="kept"` explains the model as BPT3C trains it: gradient only inside the kept window (the chunks in the
  last `max_len` tokens), the state detached at every chunk boundary, exactly 0 before the window.
  `scope="full"` follows the gradient through the carried state across every boundary back to the first token.
- `html` renders a self-contained page (no script, no fetch; a Content-Security-Policy forbids both), every piece
  of document text escaped; `plot` draws the attribution along the document (matplotlib, imported lazily).
- `confusion_matrix` and `top_losses` take `trainer.predict`'s output (with the trainer and the dataset, so that
  predictions are paired with their documents even when `group_by_length` reordered them) or texts with labels.

Full scope, checkpointed back-propagation through time. The document is read once without autograd, keeping
only the state `(h, c)` of every layer where each `bptt` chunk begins (a few KB per chunk) and the running
concat pooling (with, for the max, the position each feature's maximum came from). The head's gradient w.r.t.
the pooled features then gives each kept token's output gradient directly (mean: `1/count` on every kept token;
max: at the arg-max position; last: at the last token). The chunks are then walked from last to first: chunk c's
forward is recomputed with autograd from its saved input state, and `torch.autograd.grad` is handed the gradient
of its outputs and the gradient of its output state that chunk c+1 passed back; it returns the gradient of its
input embeddings (the tokens' scores) and of its input state, which goes on to chunk c-1. Only one chunk's graph
exists at a time. This is exact, not an approximation: the recomputation reads the same weights, the same tokens
and the same saved state, in eval mode (no dropout), so it rebuilds the very graph of the plain forward; and the
chain rule through the state, `d f/d s_c = J_c^T (d f/d out_c, d f/d s_{c+1})`, is reverse-mode differentiation
of the unrolled recurrence, only grouped by chunk. The tests compare it with plain autograd through the whole
document (no detach) to 1e-8 of the largest score in float64.
"""

from __future__ import annotations

import html as html_lib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..models.awd_lstm.modeling_awd_lstm import AwdLstmForSequenceClassification
from ..plots import new_figure
from ..serving.ensemble import batched_logits, eval_mode

METHODS = ("gradient", "gradient_x_input", "integrated_gradients")
SCOPES = ("kept", "full")
_SIGNED_METHODS = ("gradient_x_input", "integrated_gradients")
_CASE_MARKERS = ("xxmaj", "xxup")

__all__ = [
    "TokenAttributions",
    "token_attributions",
    "word_pieces",
    "top_passages",
    "html",
    "plot",
    "DocumentPredictions",
    "predict_documents",
    "prediction_order",
    "predictions_in_dataset_order",
    "ConfusionMatrix",
    "confusion_matrix",
    "top_losses",
    "losses_html",
]


# ----------------------------------------------------------------------------------------------------------------
# Token attributions
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class TokenAttributions:
    """What `token_attributions` returns, one entry per document (in the caller's row order).

    Attributes:
        scores: one 1-D tensor per document, `(length_i,)`: a float per real token, in document order (padding
            removed; for a backward model too, although it reads the document reversed).
        target: `(batch,)` the class explained for each document.
        logits: `(batch, num_labels)` the model's logits.
        method, scope: as requested.
        baseline_logits: `(batch, num_labels)` the logits at the integration baseline (integrated gradients;
            None otherwise). With scope "full" a document's scores sum to `logits - baseline_logits` at its target.
        chunk_starts: per document, the document positions where its `bptt` chunks begin (ascending).
        kept_spans: per document, `(start, end)` of the kept window in document positions.
    """

    scores: list[torch.Tensor]
    target: torch.Tensor
    logits: torch.Tensor
    method: str
    scope: str
    baseline_logits: torch.Tensor | None = None
    chunk_starts: list[list[int]] = field(default_factory=list)
    kept_spans: list[tuple[int, int]] = field(default_factory=list)

    @property
    def probabilities(self) -> torch.Tensor:
        """`(batch, num_labels)` softmax of the logits."""
        return self.logits.softmax(dim=-1)


def token_attributions(
    model: AwdLstmForSequenceClassification,
    input_ids: torch.Tensor | Sequence[Sequence[int]],
    attention_mask: torch.Tensor | None = None,
    target: int | Sequence[int] | torch.Tensor | None = None,
    method: str = "gradient_x_input",
    scope: str = "kept",
    steps: int = 32,
    batch_size: int = 16,
) -> TokenAttributions:
    """Score every token of every document for the target class.

    Args:
        model: an `AwdLstmForSequenceClassification` (run in eval mode here, its mode restored afterwards).
        input_ids: `(batch, seq)` or `(seq,)` ids, padded on either side, or a list of id lists (no padding).
        attention_mask: `(batch, seq)` 1 for tokens, 0 for padding (default: positions holding `pad_token_id`).
        target: the class to explain: one id for every document, one per document, or None (the predicted one).
        method: `"gradient"` (norm of d logit / d embedding, >= 0), `"gradient_x_input"` (gradient . embedding) or
            `"integrated_gradients"` (baseline: the padding embedding at every position).
        scope: `"kept"` (gradient as BPT3C trains the model: inside the kept window only, detached at each chunk
            boundary, 0 before the window) or `"full"` (through the carried state back to the first token;
            memory bounded by one chunk, see the module docstring).
        steps: integration points of integrated gradients (Gauss-Legendre on [0, 1]).
        batch_size: integration points run together as rows of one LSTM batch.

    Integrated gradients with `scope="full"` moves the whole document from the baseline to itself, and the scores
    sum to `logits - baseline_logits` at the target (completeness) up to the quadrature error. With `"kept"` it
    moves only the kept window (the tokens before it are context that warms up the state) and integrates BPT3C's
    truncated gradient, which is detached between chunks: the scores then sum to that difference only when the
    window is a single chunk.
    """
    if not isinstance(model, AwdLstmForSequenceClassification):
        raise TypeError(f"model must be an AwdLstmForSequenceClassification, got {type(model).__name__}")
    _check_choice("method", method, METHODS)
    _check_choice("scope", scope, SCOPES)
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    documents = _reading_order_documents(model, input_ids, attention_mask)
    targets = _targets(target, len(documents), model.config.num_labels)
    results = []
    with eval_mode(model), torch.enable_grad():
        for ids, doc_target in zip(documents, targets):
            reader = _CheckpointedReader(model, ids, scope)
            results.append(reader.attribute(method, doc_target, steps, batch_size))
    return _collect(model, results, method, scope)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def _reading_order_documents(
    model: AwdLstmForSequenceClassification, input_ids, attention_mask: torch.Tensor | None
) -> list[torch.Tensor]:
    """Each document's ids `(length,)` in the order the model reads them (reversed for a backward model)."""
    device = model.awd_lstm.embeddings.weight.device
    if isinstance(input_ids, torch.Tensor):
        ids = input_ids.unsqueeze(0) if input_ids.dim() == 1 else input_ids
        mask = attention_mask
        if isinstance(mask, torch.Tensor):
            mask = (mask.unsqueeze(0) if mask.dim() == 1 else mask).to(device)
        tokens, lengths = model._justified_documents(ids.to(device), mask, None)
        return [tokens[row, :n] for row, n in enumerate(lengths.tolist())]
    if attention_mask is not None:
        raise ValueError("attention_mask goes with a padded input_ids tensor, not with a list of id lists")
    if not isinstance(input_ids, Sequence) or len(input_ids) == 0:
        raise TypeError("input_ids must be a (batch, seq) tensor or a non-empty list of token-id lists")
    docs = [input_ids] if all(isinstance(t, int) for t in input_ids) else list(input_ids)
    out = []
    for row, doc in enumerate(docs):
        if not isinstance(doc, Sequence | torch.Tensor) or len(doc) == 0:
            raise ValueError(f"input_ids[{row}] must be a non-empty list of token ids")
        ids = torch.as_tensor(doc, dtype=torch.long, device=device).view(1, -1)
        tokens, _ = model._justified_documents(ids, torch.ones_like(ids), None)
        out.append(tokens[0])
    return out


def _targets(target, batch: int, num_labels: int) -> list[int | None]:
    if target is None:
        return [None] * batch
    values = torch.as_tensor(target).reshape(-1).tolist()
    if torch.as_tensor(target).is_floating_point() or any(isinstance(v, bool) for v in values):
        raise TypeError(f"target must be class ids (int), got {target!r}")
    if len(values) == 1:
        values = values * batch
    if len(values) != batch:
        raise ValueError(f"target must be one class id or one per document ({batch}), got {len(values)}")
    if any(v < 0 or v >= num_labels for v in values):
        raise ValueError(f"target must be class ids in [0, num_labels={num_labels}), got {values}")
    return values


@dataclass
class _DocumentResult:
    scores: torch.Tensor  # (length,) reading order
    target: int
    logits: torch.Tensor  # (num_labels,)
    baseline_logits: torch.Tensor | None
    kept_start: int  # reading position where the kept window begins


def _collect(model, results: list[_DocumentResult], method: str, scope: str) -> TokenAttributions:
    bptt, backwards = model.config.bptt, model.config.backwards
    scores, chunk_starts, kept_spans = [], [], []
    for result in results:
        length = result.scores.numel()
        if backwards:  # reading position r is document position length-1-r
            scores.append(result.scores.flip(0))
            chunk_starts.append(sorted(length - min(r + bptt, length) for r in range(0, length, bptt)))
            kept_spans.append((0, length - result.kept_start))
        else:
            scores.append(result.scores)
            chunk_starts.append(list(range(0, length, bptt)))
            kept_spans.append((result.kept_start, length))
    baseline = [r.baseline_logits for r in results]
    return TokenAttributions(
        scores=scores,
        target=torch.tensor([r.target for r in results]),
        logits=torch.stack([r.logits for r in results]),
        method=method,
        scope=scope,
        baseline_logits=None if baseline[0] is None else torch.stack(baseline),
        chunk_starts=chunk_starts,
        kept_spans=kept_spans,
    )


ChunkInputs = Callable[[int, int], torch.Tensor]  # (start, end) -> input embeddings (rows, end-start, emb)


class _RunningPool:
    """Concat pooling `[last, max, mean]` over the kept chunks of one document (rows: versions of it), without
    autograd; remembers where each feature's maximum came from, so that the pooled features' gradient can be
    handed to each chunk's outputs (`output_gradient`)."""

    def __init__(self, length: int, kept_start: int):
        self.length, self.count = length, length - kept_start
        self.last = self.max = self.argmax = self.sum = None

    def update(self, out: torch.Tensor, start: int) -> None:
        """out: `(rows, chunk, feat)` outputs of the kept chunk beginning at `start`."""
        chunk_max, chunk_arg = out.max(dim=1)  # (rows, feat)
        if self.max is None:
            self.max, self.argmax, self.sum = chunk_max, chunk_arg + start, out.sum(dim=1)
        else:
            better = chunk_max > self.max
            self.max = torch.where(better, chunk_max, self.max)
            self.argmax = torch.where(better, chunk_arg + start, self.argmax)
            self.sum = self.sum + out.sum(dim=1)
        if start + out.size(1) == self.length:
            self.last = out[:, -1]

    def result(self) -> torch.Tensor:
        """`(rows, 3*feat)`, the order of the model's `_ConcatPool`."""
        return torch.cat([self.last, self.max, self.sum / self.count], dim=1)

    def output_gradient(self, d_pooled: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """d_pooled: `(rows, 3*feat)` -> the gradient of the outputs of the kept chunk `[start, end)`,
        `(rows, end-start, feat)`."""
        d_last, d_max, d_mean = d_pooled.chunk(3, dim=1)  # each (rows, feat)
        d_out = (d_mean / self.count).unsqueeze(1).repeat(1, end - start, 1)
        if end == self.length:
            d_out[:, -1] += d_last
        inside = (self.argmax >= start) & (self.argmax < end)
        at = (self.argmax - start).clamp(0, end - start - 1).unsqueeze(1)  # (rows, 1, feat)
        return d_out.scatter_add_(1, at, (d_max * inside).unsqueeze(1))


class _CheckpointedReader:
    """One document `(length,)` in reading order: BPT3C's chunks, the kept window, the forward pass that keeps
    only the state at each chunk boundary, and the backward walk that recomputes one chunk at a time."""

    def __init__(self, model: AwdLstmForSequenceClassification, ids: torch.Tensor, scope: str):
        self.model, self.backbone, self.ids, self.scope = model, model.awd_lstm, ids, scope
        bptt, max_len = model.config.bptt, model.config.max_len
        self.length = ids.numel()
        self.bounds = [(s, min(s + bptt, self.length)) for s in range(0, self.length, bptt)]
        # the first chunk inside the last max_len tokens (as `encode_documents`)
        self.kept_start = -(-max(self.length - max_len, 0) // bptt) * bptt
        self.weight = self.backbone.embeddings.weight

    def embeddings(self, start: int, end: int) -> torch.Tensor:
        """`(end-start, emb)` the document's own token embeddings."""
        return F.embedding(self.ids[start:end], self.weight).detach()

    def baseline(self) -> torch.Tensor:
        """`(emb,)` the padding embedding (zeros without a pad token)."""
        pad = self.model.config.pad_token_id
        return self.weight[pad].detach() if pad is not None else self.weight.new_zeros(self.weight.size(1))

    def _is_context(self, start: int) -> bool:
        """In scope "kept" the chunks before the window are context: always the document itself, never explained."""
        return self.scope == "kept" and start < self.kept_start

    def _walked_chunks(self) -> list[int]:
        return [c for c, (s, _) in enumerate(self.bounds) if not self._is_context(s)]

    def _run(self, x: torch.Tensor, state) -> tuple[torch.Tensor, tuple]:
        out, new_state, _ = self.backbone.run_layers(self.backbone.embed(inputs_embeds=x), state)
        return out, new_state

    @torch.no_grad()
    def forward(self, inputs: ChunkInputs, rows: int) -> tuple[_RunningPool, dict[int, tuple]]:
        """Read the document once without autograd; return the pooling and the state entering each walked chunk."""
        state = self.backbone.initial_state(1, self.weight)
        pool, saved = _RunningPool(self.length, self.kept_start), {}
        for c, (start, end) in enumerate(self.bounds):
            if self._is_context(start):
                x = self.embeddings(start, end).unsqueeze(0)
            else:
                if state[0][0].size(0) != rows:  # the context was read once; the explained part has `rows` rows
                    state = tuple((h.expand(rows, -1).contiguous(), s.expand(rows, -1).contiguous()) for h, s in state)
                saved[c] = state
                x = inputs(start, end)
            out, state = self._run(x, state)
            if start >= self.kept_start:
                pool.update(out, start)
        return pool, saved

    def logits(self, inputs: ChunkInputs, rows: int) -> torch.Tensor:
        """`(rows, num_labels)` without autograd."""
        pool, _ = self.forward(inputs, rows)
        with torch.no_grad():
            return self.model.classifier(pool.result())

    def gradients(
        self, inputs: ChunkInputs, rows: int, target: int | None, on_chunk: Callable[[int, int, torch.Tensor], None]
    ) -> tuple[torch.Tensor, int]:
        """Back-propagate the target logit (summed over rows; None: the first row's predicted class) chunk by chunk;
        `on_chunk(start, end, d_inputs)` receives the gradient `(rows, end-start, emb)` of each walked chunk's
        inputs. Returns the logits `(rows, num_labels)` and the target."""
        pool, saved = self.forward(inputs, rows)
        pooled = pool.result().detach().requires_grad_(True)
        logits = self.model.classifier(pooled)
        target = int(logits[0].argmax()) if target is None else target
        (d_pooled,) = torch.autograd.grad(logits[:, target].sum(), pooled)
        d_state = None  # gradient of the state leaving the current chunk (scope "full")
        for c in reversed(self._walked_chunks()):
            start, end = self.bounds[c]
            carry = self.scope == "full" and c > 0
            state_in = tuple((h.detach().requires_grad_(carry), s.detach().requires_grad_(carry)) for h, s in saved[c])
            x = inputs(start, end).detach().requires_grad_(True)
            out, state_out = self._run(x, state_in)
            outputs, grads = [], []
            if start >= self.kept_start:
                outputs.append(out)
                grads.append(pool.output_gradient(d_pooled, start, end))
            if d_state is not None:
                outputs += [t for pair in state_out for t in pair]
                grads += d_state
            wrt = [x] + ([t for pair in state_in for t in pair] if carry else [])
            d_wrt = torch.autograd.grad(outputs, wrt, grads)
            on_chunk(start, end, d_wrt[0])
            d_state = list(d_wrt[1:]) if carry else None
        return logits.detach(), target

    def attribute(self, method: str, target: int | None, steps: int, batch_size: int) -> _DocumentResult:
        scores = self.weight.new_zeros(self.length)
        document = lambda start, end: self.embeddings(start, end).unsqueeze(0)  # noqa: E731
        if method != "integrated_gradients":

            def score_chunk(start: int, end: int, d_inputs: torch.Tensor) -> None:
                if method == "gradient":
                    scores[start:end] = d_inputs[0].norm(dim=-1)
                else:
                    scores[start:end] = (d_inputs[0] * self.embeddings(start, end)).sum(dim=-1)

            logits, target = self.gradients(document, 1, target, score_chunk)  # one read of the document
            return _DocumentResult(scores, target, logits[0], None, self.kept_start)
        logits = self.logits(document, 1)[0]
        target = int(logits.argmax()) if target is None else target
        baseline_logits = self.integrated_gradients(scores, target, steps, batch_size)
        return _DocumentResult(scores, target, logits, baseline_logits, self.kept_start)

    def integrated_gradients(self, scores: torch.Tensor, target: int, steps: int, batch_size: int) -> torch.Tensor:
        """Add the integrated gradients of the target logit into `scores`; return the baseline's logits."""
        nodes, weights = np.polynomial.legendre.leggauss(steps)  # on [-1, 1]
        alphas = torch.tensor((nodes + 1) / 2, dtype=self.weight.dtype, device=self.weight.device)
        quad_weights = torch.tensor(weights / 2, dtype=self.weight.dtype, device=self.weight.device)
        base = self.baseline()

        def path(alpha: torch.Tensor) -> ChunkInputs:  # alpha: (rows,)
            return lambda start, end: base + alpha.view(-1, 1, 1) * (self.embeddings(start, end) - base)

        for first in range(0, steps, batch_size):
            alpha, w = alphas[first : first + batch_size], quad_weights[first : first + batch_size]

            def score_chunk(start: int, end: int, d_inputs: torch.Tensor, w=w) -> None:
                delta = self.embeddings(start, end) - base  # (chunk, emb)
                scores[start:end] += ((d_inputs * delta).sum(dim=-1) * w.unsqueeze(1)).sum(dim=0)

            self.gradients(path(alpha), alpha.numel(), target, score_chunk)
        return self.logits(path(alphas.new_zeros(1)), 1)[0]


# ----------------------------------------------------------------------------------------------------------------
# Words, passages, HTML
# ----------------------------------------------------------------------------------------------------------------


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
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; form-action 'none'; base-uri 'none'"


def _colour(score: float, scale: float) -> str:
    """Red for positive (towards the explained class), blue for negative, transparency by |score| / scale."""
    alpha = 0.0 if scale <= 0 else min(abs(score) / scale, 1.0) * 0.8
    rgb = "214,39,40" if score >= 0 else "31,119,180"
    return f"rgba({rgb},{alpha:.3f})"


def _escape(text) -> str:
    return html_lib.escape(str(text), quote=True)


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
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        f"<title>{_escape(title)}</title><style>{_PAGE_STYLE}</style></head><body>",
        f"<h1>{_escape(title)}</h1>",
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
            + f"{_escape(piece.text)}</span>"
        )
    page = "\n".join(parts) + '\n<p class="doc">' + "".join(spans) + "</p>\n</body></html>\n"
    if path is not None:
        Path(path).write_text(page, encoding="utf-8")
    return page


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
        facts.append(f"prediction: <b>{_escape(label)}</b>")
    if probability is not None:
        facts.append(f"probability {float(probability):.3f}")
    if method is not None:
        facts.append(f"attribution: {_escape(method)}")
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
        items.append(f'<li><a href="#passage-{rank}">tokens {start}-{end - 1}</a> ({total:.3g}): {_escape(words)}</li>')
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


# ----------------------------------------------------------------------------------------------------------------
# Predictions over a labelled set: order, confusion matrix, top losses
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class DocumentPredictions:
    """Predictions paired with their documents: row i of `logits` and `labels` belongs to document i.

    Attributes:
        logits: `(n, num_labels)`. labels: `(n,)` true class ids.
        texts: the documents' texts (or None). label_names: class names by id (or None).
        rows: the dataset row of each prediction (`range(n)` when built in document order).
    """

    logits: torch.Tensor
    labels: torch.Tensor
    texts: list[str] | None = None
    label_names: list[str] | None = None
    rows: list[int] | None = None

    @property
    def losses(self) -> torch.Tensor:
        """`(n,)` cross-entropy of each document."""
        return F.cross_entropy(self.logits.double(), self.labels, reduction="none")

    @property
    def predicted(self) -> torch.Tensor:
        return self.logits.argmax(dim=-1)

    def name(self, label: int) -> str:
        return self.label_names[label] if self.label_names and label < len(self.label_names) else str(label)


def _label_names_of(model) -> list[str] | None:
    id2label = getattr(getattr(model, "config", None), "id2label", None)
    if not id2label:
        return None
    return [str(id2label[i]) for i in sorted(int(k) for k in id2label)]


def _label_ids(labels, label_names: list[str] | None, num_labels: int) -> torch.Tensor:
    """Class ids `(n,)` from ids or class names."""
    ids = []
    for i, label in enumerate(labels):
        if isinstance(label, str):
            if label_names and label in label_names:
                ids.append(label_names.index(label))
            elif label.strip().lstrip("-").isdigit():
                ids.append(int(label))
            else:
                raise ValueError(f"labels[{i}] = {label!r} is not a class name of the model ({label_names})")
        else:
            ids.append(int(label))
    tensor = torch.tensor(ids, dtype=torch.long)
    if tensor.numel() and (tensor.min() < 0 or tensor.max() >= num_labels):
        raise ValueError(f"labels must be class ids in [0, {num_labels}) or class names, got {sorted(set(ids))}")
    return tensor


def predict_documents(
    model: AwdLstmForSequenceClassification,
    tokenizer,
    texts: Sequence[str],
    labels: Sequence,
    *,
    batch_size: int = 16,
    progress: bool = False,
) -> DocumentPredictions:
    """Run the model over `texts` (batches of similar lengths) and return the logits in the texts' order.

    labels: one per text, class ids or class names (`model.config.id2label`)."""
    if not isinstance(model, AwdLstmForSequenceClassification):
        raise TypeError(f"model must be an AwdLstmForSequenceClassification, got {type(model).__name__}")
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a list of str")
    if len(labels) != len(texts):
        raise ValueError(f"labels must have one entry per text: {len(texts)} texts, {len(labels)} labels")
    names = _label_names_of(model)
    label_ids = _label_ids(labels, names, model.config.num_labels)
    encoded = tokenizer(list(texts))["input_ids"]
    logits = batched_logits(model, tokenizer, encoded, batch_size, progress=progress)
    return DocumentPredictions(logits, label_ids, list(texts), names, list(range(len(texts))))


def prediction_order(trainer, dataset) -> list[int]:
    """The dataset row behind each row of `trainer.predict(dataset).predictions`.

    With `train_sampling_strategy="group_by_length"` transformers 5 length-groups prediction batches too (a
    `LengthGroupedSampler` seeded with `args.data_seed` or `args.seed`, fresh for every call). This asks the
    trainer for the very dataloader `predict` uses (`trainer.get_test_dataloader(dataset)`, public) and reads the
    indices of its batch sampler: the same seeded order, whatever sampler a Trainer subclass installs. Single
    process only (a distributed run gathers the ranks' batches interleaved)."""
    if getattr(trainer.args, "world_size", 1) > 1:
        raise ValueError("prediction_order needs a single-process Trainer (world_size 1); under DDP predict in order")
    loader = trainer.get_test_dataloader(dataset)
    batch_sampler = getattr(loader, "batch_sampler", None)
    if batch_sampler is None:
        raise ValueError("the trainer's test dataloader has no batch sampler: its prediction order is unknown")
    return [int(i) for batch in batch_sampler for i in batch]


def _dataset_labels(dataset) -> list[int] | None:
    for column in ("labels", "label"):
        try:
            if hasattr(dataset, "column_names"):
                if column in dataset.column_names:
                    return [int(v) for v in dataset[column]]
                continue
            return [int(row[column]) for row in dataset]
        except (KeyError, TypeError, ValueError):
            continue
    return None


def predictions_in_dataset_order(trainer, dataset, output=None, texts: Sequence[str] | None = None):
    """`trainer.predict(dataset)` (or its `output`, if already run) with row i belonging to `dataset[i]`.

    The order comes from `prediction_order`; it is checked against the output's own `label_ids` (which come in
    the prediction order) where the dataset holds labels. texts: the documents' texts in dataset order (default:
    a "text" column of the dataset, else the input ids decoded by `trainer.processing_class`)."""
    output = trainer.predict(dataset) if output is None else output
    logits = torch.as_tensor(np.asarray(_logits_of(output)), dtype=torch.float32)
    if output.label_ids is None:
        raise ValueError("the prediction output has no label_ids: the dataset needs a 'labels' column")
    label_ids = torch.as_tensor(np.asarray(output.label_ids), dtype=torch.long).reshape(-1)
    order = prediction_order(trainer, dataset)
    if len(order) != logits.size(0):
        raise ValueError(
            f"the output has {logits.size(0)} predictions but the trainer's dataloader yields {len(order)} rows: "
            "was it predicted on this dataset with this trainer?"
        )
    dataset_labels = _dataset_labels(dataset)
    if dataset_labels is not None and [dataset_labels[i] for i in order] != label_ids.tolist():
        raise ValueError(
            "the output's label_ids do not match the dataset's labels in the trainer's prediction order: the output "
            "was not produced by trainer.predict(dataset) with this trainer's current seed"
        )
    n = len(dataset)
    if sorted(order) != list(range(n)):
        raise ValueError(f"the predictions cover {len(set(order))} of the {n} documents (dataloader_drop_last?)")
    in_order_logits = torch.empty(n, logits.size(1))
    in_order_labels = torch.empty(n, dtype=torch.long)
    in_order_logits[order], in_order_labels[order] = logits, label_ids
    texts = _dataset_texts(trainer, dataset) if texts is None else list(texts)
    if texts is not None and len(texts) != n:
        raise ValueError(f"texts must have one entry per dataset row ({n}), got {len(texts)}")
    return DocumentPredictions(in_order_logits, in_order_labels, texts, _label_names_of(trainer.model), list(range(n)))


def _logits_of(output):
    predictions = output.predictions
    return predictions[0] if isinstance(predictions, tuple) else predictions


def _dataset_texts(trainer, dataset) -> list[str] | None:
    if hasattr(dataset, "column_names") and "text" in dataset.column_names:
        return list(dataset["text"])
    rows = [dataset[i] for i in range(len(dataset))]
    if rows and all(isinstance(r, dict) and isinstance(r.get("text"), str) for r in rows):
        return [r["text"] for r in rows]
    tokenizer = getattr(trainer, "processing_class", None)
    if tokenizer is None or not all(isinstance(r, dict) and "input_ids" in r for r in rows):
        return None
    return [tokenizer.decode(list(r["input_ids"]), skip_special_tokens=True) for r in rows]


def _resolve(predictions, trainer, dataset, model, tokenizer, texts, labels, batch_size, progress, need_documents):
    """Any accepted source -> DocumentPredictions (document order where `need_documents`)."""
    if isinstance(predictions, DocumentPredictions):
        return predictions
    if predictions is not None and hasattr(predictions, "predictions") and hasattr(predictions, "label_ids"):
        if trainer is not None and dataset is not None:
            return predictions_in_dataset_order(trainer, dataset, predictions, texts)
        if need_documents:
            raise ValueError(
                "a trainer.predict output is in the trainer's prediction order, not the dataset's (group_by_length "
                "reorders it): pass trainer= and dataset= to pair each prediction with its document"
            )
        label_ids = predictions.label_ids
        if label_ids is None:
            raise ValueError("the prediction output has no label_ids")
        logits = torch.as_tensor(np.asarray(_logits_of(predictions)), dtype=torch.float32)
        label_ids = torch.as_tensor(np.asarray(label_ids), dtype=torch.long).reshape(-1)
        return DocumentPredictions(logits, label_ids, None, _label_names_of(model) if model is not None else None)
    if predictions is not None:
        raise TypeError(
            "predictions must be a trainer.predict output (PredictionOutput) or DocumentPredictions, got "
            f"{type(predictions).__name__}"
        )
    if trainer is not None and dataset is not None:
        return predictions_in_dataset_order(trainer, dataset, None, texts)
    if model is not None and tokenizer is not None and texts is not None and labels is not None:
        return predict_documents(model, tokenizer, texts, labels, batch_size=batch_size, progress=progress)
    raise ValueError(
        "give a trainer.predict output (with trainer= and dataset=), trainer= and dataset=, or model=, tokenizer=, "
        "texts= and labels="
    )


@dataclass
class ConfusionMatrix:
    """counts: `(num_labels, num_labels)` numpy ints, rows the true class, columns the predicted one."""

    counts: np.ndarray
    label_names: list[str]

    @property
    def accuracy(self) -> float:
        total = self.counts.sum()
        return float(np.trace(self.counts) / total) if total else float("nan")

    def plot(self, path: str | Path | None = None, *, title: str | None = None, ax=None):
        """A PNG when `path` is given: counts and row shares per cell. Returns the Figure."""
        size = max(3.5, 0.6 * len(self.label_names) + 2.5)
        fig, ax = (ax.figure, ax) if ax is not None else new_figure(size, size)
        rows = self.counts.sum(axis=1, keepdims=True)
        shares = np.divide(self.counts, rows, out=np.zeros(self.counts.shape), where=rows > 0)
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        ticks = range(len(self.label_names))
        ax.set_xticks(ticks, self.label_names, rotation=45, ha="right")
        ax.set_yticks(ticks, self.label_names)
        for i in ticks:
            for j in ticks:
                colour = "white" if shares[i, j] > 0.6 else "black"
                ax.text(j, i, f"{self.counts[i, j]}\n{shares[i, j]:.0%}", ha="center", va="center", color=colour)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title or f"accuracy {self.accuracy:.3f} ({int(self.counts.sum())} documents)", fontsize=10)
        if path is not None:
            fig.tight_layout()
            fig.savefig(path, dpi=110)
        return fig


def confusion_matrix(
    predictions=None,
    *,
    trainer=None,
    dataset=None,
    model: AwdLstmForSequenceClassification | None = None,
    tokenizer=None,
    texts: Sequence[str] | None = None,
    labels: Sequence | None = None,
    label_names: Sequence[str] | None = None,
    batch_size: int = 16,
    progress: bool = False,
    path: str | Path | None = None,
) -> ConfusionMatrix:
    """Counts of (true, predicted) classes, from `trainer.predict`'s output (its own `label_ids` suffice: both
    come in the prediction order), from `DocumentPredictions`, from `trainer` + `dataset`, or from `model` +
    `tokenizer` + `texts` + `labels`. `path`: also draw the PNG there."""
    source = _resolve(predictions, trainer, dataset, model, tokenizer, texts, labels, batch_size, progress, False)
    num_labels = source.logits.size(1)
    counts = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(counts, (source.labels.numpy(), source.predicted.numpy()), 1)
    names = list(label_names) if label_names is not None else [source.name(i) for i in range(num_labels)]
    if len(names) != num_labels:
        raise ValueError(f"label_names must have {num_labels} entries, got {len(names)}")
    matrix = ConfusionMatrix(counts, [str(n) for n in names])
    if path is not None:
        matrix.plot(path)
    return matrix


def top_losses(
    predictions=None,
    k: int = 10,
    *,
    trainer=None,
    dataset=None,
    model: AwdLstmForSequenceClassification | None = None,
    tokenizer=None,
    texts: Sequence[str] | None = None,
    labels: Sequence | None = None,
    excerpt_chars: int = 300,
    batch_size: int = 16,
    progress: bool = False,
) -> list[dict]:
    """The `k` documents with the largest cross-entropy, worst first: dicts with `row` (the document's index),
    `text` (an excerpt), `label` (true), `predicted`, `probability` (of the predicted class), `loss`.

    Sources as `confusion_matrix`, but a `trainer.predict` output needs `trainer=` and `dataset=` as well: its rows
    are in the trainer's prediction order, which `group_by_length` makes differ from the dataset's."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    source = _resolve(predictions, trainer, dataset, model, tokenizer, texts, labels, batch_size, progress, True)
    losses = source.losses
    probabilities = source.logits.double().softmax(dim=-1)
    ranked = sorted(range(losses.numel()), key=lambda i: -float(losses[i]))[:k]
    table = []
    for i in ranked:
        predicted = int(source.predicted[i])
        text = source.texts[i] if source.texts is not None else ""
        table.append(
            {
                "row": source.rows[i] if source.rows is not None else i,
                "text": text if len(text) <= excerpt_chars else text[: excerpt_chars - 1] + "…",
                "label": source.name(int(source.labels[i])),
                "predicted": source.name(predicted),
                "probability": float(probabilities[i, predicted]),
                "loss": float(losses[i]),
            }
        )
    return table


def losses_html(table: Sequence[dict], *, title: str = "Top losses", path: str | Path | None = None) -> str:
    """A self-contained HTML table of `top_losses` rows, every value escaped. `path`: also write it there."""
    columns = ["row", "label", "predicted", "probability", "loss", "text"]
    head = "".join(f"<th>{_escape(c)}</th>" for c in columns)
    body = []
    for entry in table:
        if not isinstance(entry, dict):
            raise TypeError(f"table must be a list of dicts (top_losses rows), got {type(entry).__name__}")
        cells = []
        for column in columns:
            value = entry.get(column, "")
            text = f"{value:.4f}" if isinstance(value, float) else str(value)
            cells.append(f"<td>{_escape(text)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    style = (
        "body{font-family:system-ui,sans-serif;margin:2rem}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.3rem .5rem;vertical-align:top}td:last-child{max-width:50rem}"
    )
    page = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        f"<title>{_escape(title)}</title><style>{style}</style></head><body>\n<h1>{_escape(title)}</h1>\n"
        f"<table><tr>{head}</tr>\n{chr(10).join(body)}\n</table></body></html>\n"
    )
    if path is not None:
        Path(path).write_text(page, encoding="utf-8")
    return page
