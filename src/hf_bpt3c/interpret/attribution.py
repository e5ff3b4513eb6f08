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

from ..models.awd_lstm.bpt3c_plan import Chunk, ChunkPlan, ConcatPool, kept_columns, plan_chunks, run_plan
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
    chunk_bounds: list[tuple[int, int]]  # (start, end) reading positions of BPT3C's chunks


def _collect(model, results: list[_DocumentResult], method: str, scope: str) -> TokenAttributions:
    scores, chunk_starts, kept_spans = [], [], []
    for result in results:
        length = result.scores.numel()
        if model.config.backwards:  # reading position r is document position length-1-r
            scores.append(result.scores.flip(0))
            chunk_starts.append(sorted(length - end for _, end in result.chunk_bounds))
            kept_spans.append((0, length - result.kept_start))
        else:
            scores.append(result.scores)
            chunk_starts.append([start for start, _ in result.chunk_bounds])
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


class _CheckpointedReader:
    """One document `(length,)` in reading order, as `rows` versions of it (integration points): BPT3C's plan of
    the document (`plan_chunks`: `bptt` chunks from its first token, the kept window), the forward pass through the
    model's loop (`run_plan`) that keeps only the state entering each chunk, and the backward walk that recomputes
    one chunk at a time."""

    def __init__(self, model: AwdLstmForSequenceClassification, ids: torch.Tensor, scope: str):
        self.model, self.backbone, self.ids, self.scope = model, model.awd_lstm, ids, scope
        self.length = ids.numel()
        self.weight = self.backbone.embeddings.weight
        self.plan = self._plan(rows=1)
        self.kept_start = int(self.plan.kept_from[0])  # the first chunk inside the last max_len tokens

    def _plan(self, rows: int) -> ChunkPlan:
        """The plan of `rows` copies of the document: chunks of `bptt` tokens (as in training), no autograd."""
        lengths = torch.full((rows,), self.length, dtype=torch.long, device=self.ids.device)
        config = self.model.config
        return plan_chunks(lengths, config.bptt, config.max_len, False, True, config.classifier_pooling)

    def embeddings(self, start: int, end: int) -> torch.Tensor:
        """`(end-start, emb)` the document's own token embeddings."""
        return F.embedding(self.ids[start:end], self.weight).detach()

    def baseline(self) -> torch.Tensor:
        """`(emb,)` the padding embedding (zeros without a pad token)."""
        pad = self.model.config.pad_token_id
        return self.weight[pad].detach() if pad is not None else self.weight.new_zeros(self.weight.size(1))

    def _is_context(self, chunk: Chunk) -> bool:
        """In scope "kept" the chunks before the window are context: always the document itself, never explained."""
        return self.scope == "kept" and chunk.start < self.kept_start

    def _run(self, x: torch.Tensor, state) -> tuple[torch.Tensor, tuple]:
        out, new_state, _ = self.backbone.run_layers(self.backbone.embed(inputs_embeds=x), state)
        return out, new_state

    @torch.no_grad()
    def forward(self, inputs: ChunkInputs, rows: int) -> tuple[ChunkPlan, ConcatPool, dict[int, tuple]]:
        """Read the document once without autograd through `run_plan`; return the plan, the pooling (with the
        arg-max of every feature) and the state entering each walked chunk, keyed by its start."""
        plan, saved = self._plan(rows), {}

        def step(chunk: Chunk, _positions: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
            if self._is_context(chunk):  # the context is the same for every row: read once, then copied
                out, state = self._run(self.embeddings(chunk.start, chunk.end).unsqueeze(0), _first_row(state))
                return out.expand(rows, -1, -1), _expanded(state, rows)
            saved[chunk.start] = state
            return self._run(inputs(chunk.start, chunk.end), state)

        positions = torch.arange(self.length, device=self.ids.device).expand(rows, -1)  # what each chunk covers
        pool = ConcatPool(rows, self.model.config.embedding_size, self.weight, track_argmax=True)
        run_plan(plan, positions, self.backbone.initial_state(rows, self.weight), step, pool)
        return plan, pool, saved

    def logits(self, inputs: ChunkInputs, rows: int) -> torch.Tensor:
        """`(rows, num_labels)` without autograd."""
        _, pool, _ = self.forward(inputs, rows)
        with torch.no_grad():
            return self.model.classifier(pool.result())

    def gradients(
        self, inputs: ChunkInputs, rows: int, target: int | None, on_chunk: Callable[[int, int, torch.Tensor], None]
    ) -> tuple[torch.Tensor, int]:
        """Back-propagate the target logit (summed over rows; None: the first row's predicted class) chunk by chunk;
        `on_chunk(start, end, d_inputs)` receives the gradient `(rows, end-start, emb)` of each walked chunk's
        inputs. Returns the logits `(rows, num_labels)` and the target."""
        plan, pool, saved = self.forward(inputs, rows)
        pooled = pool.result().detach().requires_grad_(True)
        logits = self.model.classifier(pooled)
        target = int(logits[0].argmax()) if target is None else target
        (d_pooled,) = torch.autograd.grad(logits[:, target].sum(), pooled)
        d_state = None  # gradient of the state leaving the current chunk (scope "full")
        for chunk in reversed([c for c in plan.chunks if not self._is_context(c)]):
            start, end = chunk.start, chunk.end
            carry = self.scope == "full" and start > 0
            state_in = tuple(
                (h.detach().requires_grad_(carry), s.detach().requires_grad_(carry)) for h, s in saved[start]
            )
            x = inputs(start, end).detach().requires_grad_(True)
            out, state_out = self._run(x, state_in)
            outputs, grads = [], []
            if chunk.pooled:
                kept, last_at = kept_columns(chunk, plan.ends, plan.pooled_from)
                outputs.append(out)
                grads.append(pool.output_gradient(d_pooled, kept, last_at, start))
            if d_state is not None:
                outputs += [t for pair in state_out for t in pair]
                grads += d_state
            wrt = [x] + ([t for pair in state_in for t in pair] if carry else [])
            d_wrt = torch.autograd.grad(outputs, wrt, grads)
            on_chunk(start, end, d_wrt[0])
            d_state = list(d_wrt[1:]) if carry else None
        return logits.detach(), target

    def _chunk_bounds(self) -> list[tuple[int, int]]:
        return [(chunk.start, chunk.end) for chunk in self.plan.chunks]

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
            return _DocumentResult(scores, target, logits[0], None, self.kept_start, self._chunk_bounds())
        logits = self.logits(document, 1)[0]
        target = int(logits.argmax()) if target is None else target
        baseline_logits = self.integrated_gradients(scores, target, steps, batch_size)
        return _DocumentResult(scores, target, logits, baseline_logits, self.kept_start, self._chunk_bounds())

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


def _first_row(state: tuple) -> tuple:
    return tuple((h[:1], c[:1]) for h, c in state)


def _expanded(state: tuple, rows: int) -> tuple:
    """A one-row state as `rows` identical rows."""
    return tuple((h.expand(rows, -1).contiguous(), c.expand(rows, -1).contiguous()) for h, c in state)
