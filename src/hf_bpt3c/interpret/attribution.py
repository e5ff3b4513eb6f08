"""Token attributions: which tokens of a long document drove a BPT3C classifier's decision.

`token_attributions` scores every token of every document for one class (default: the predicted one):
`"gradient"` (fastai's intrinsic attention: the norm of the target logit's gradient w.r.t. the token's embedding),
`"gradient_x_input"` (that gradient dotted with the embedding), `"integrated_gradients"` (the same along a straight
path from the padding embedding, Gauss-Legendre quadrature over `steps` points). `scope="kept"` explains the model
as BPT3C trains it: gradient only inside the kept window (the chunks in the last `max_len` tokens), the state
detached at every chunk boundary, exactly 0 before the window. `scope="full"` follows the gradient through the
carried state across every boundary back to the first token.

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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..models.awd_lstm.modeling_awd_lstm import AwdLstmForSequenceClassification
from ..serving.prediction import eval_mode

METHODS = ("gradient", "gradient_x_input", "integrated_gradients")
SCOPES = ("kept", "full")

__all__ = ["METHODS", "SCOPES", "TokenAttributions", "token_attributions"]


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
