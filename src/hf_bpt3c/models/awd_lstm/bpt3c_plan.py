"""BPT3C planning: which columns of a batch each chunk covers, which rows run it, which tokens are pooled.

Pure functions of the document lengths (no model), and `run_plan`, the one BPT3C loop over a plan (fastai's
`SentenceEncoder.forward`): run a chunk, pool its kept outputs, carry the state detached. The classifier's
`encode_documents` reads documents through it, and so can any other reader of BPT3C with a `step` of its own
(another runtime's graph, a chunk recomputed for its gradient).

Invariants of `plan_chunks` (property-tested in tests/test_bpt3c_plan.py):
- rows are the documents longest first (`order`); document r occupies columns `[first[r], ends[r])`;
- with autograd (training), chunks are `bptt` columns and every document's chunks are counted from its own first
  token: `(start - first[r]) % bptt == 0`; each document is moved right by whole chunks (`first`) so that every
  kept window begins at the same column, where autograd begins (`grad_from`);
- the rows a chunk runs (`rows`) are a prefix: every row that is inside its document at the chunk is in it, and
  every row in it has begun its document;
- every pooled token is pooled exactly once: the kept tokens (the chunks beginning in a document's last `max_len`
  tokens) with `pooling="window"` (fastai's rule), every token of the document with `pooling="document"`; the
  chunks with autograd are the kept ones either way.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .configuration_awd_lstm import CLASSIFIER_POOLINGS

LstmState = tuple[tuple[torch.Tensor, torch.Tensor], ...]  # per layer (h, c), each (batch, layer_size)
# step(chunk, chunk_tokens (rows, chunk[, emb]), state of those rows) -> outputs (rows, chunk, feat), new state
ChunkStep = Callable[["Chunk", torch.Tensor, LstmState], tuple[torch.Tensor, LstmState]]

# In inference (no autograd, no dropout) chunk boundaries change nothing, so documents are read in longer
# chunks: fewer recurrent calls, larger input-projection matmuls, memory still bounded by the chunk.
INFERENCE_CHUNK_TOKENS = 1024


@dataclass(frozen=True)
class Chunk:
    """Columns `[start, end)`, run by rows `[0, rows)`, with autograd (`grad`), pooled if any kept token is in it."""

    start: int
    end: int
    rows: int
    grad: bool
    pooled: bool


@dataclass
class ChunkPlan:
    """How a batch of documents is read (tensors `(batch,)` in the sorted row order, longest document first).

    order: the caller's row of each sorted row; restore: its inverse. lengths: tokens per document. first: the
    column of each document's first token; ends: the column after its last; kept_from: the column where its kept
    window begins; pooled_from: the column where its pooled tokens begin (`kept_from`, or `first` when the whole
    document is pooled). chunks: in reading order.
    """

    order: torch.Tensor
    restore: torch.Tensor
    lengths: torch.Tensor
    first: torch.Tensor
    ends: torch.Tensor
    kept_from: torch.Tensor
    pooled_from: torch.Tensor
    chunks: list[Chunk]


def kept_window_start(lengths: torch.Tensor, bptt: int, max_len: int) -> torch.Tensor:
    """`(batch,)` document position where the kept window begins: the first `bptt` chunk (counted from the
    document's first token) that begins inside its last `max_len` tokens (fastai: `sl - i <= max_len`)."""
    return torch.div((lengths - max_len).clamp(min=0) + bptt - 1, bptt, rounding_mode="floor") * bptt


@torch.compiler.disable  # a plan is Python over a handful of integers: run eagerly under torch.compile
def plan_chunks(
    lengths: torch.Tensor, bptt: int, max_len: int, grad: bool, training: bool, pooling: str = "window"
) -> ChunkPlan:
    """The reading plan of documents of `lengths` `(batch,)` (>= 1 each).

    grad: a gradient is wanted (the kept chunks run with autograd, the documents are aligned on their kept
    windows); training: chunks of exactly `bptt` tokens (BPT3C's unit of truncation and dropout; implied by grad);
    pooling: `"window"` pools the kept windows, `"document"` every token (the autograd window is the same).
    """
    if pooling not in CLASSIFIER_POOLINGS:
        raise ValueError(f'pooling must be "window" or "document", got {pooling!r}')
    order = torch.argsort(lengths, descending=True, stable=True)  # longest first
    lengths = lengths[order]
    kept_start = kept_window_start(lengths, bptt, max_len)
    # With autograd, move each document right by whole chunks so that every kept window begins at the same
    # column: columns before it only warm up the state, columns from it on are kept for every row, and the graph
    # spans about max_len / bptt chunk columns whatever the mix of lengths (one dropped recurrent weight per
    # layer and column). Without autograd every document starts at column 0.
    grad_from = int(kept_start.max()) if grad else 0
    first = grad_from - kept_start if grad else torch.zeros_like(kept_start)
    ends, kept_from = first + lengths, first + kept_start
    pooled_from = first if pooling == "document" else kept_from
    first_list, end_list, pooled_from_list = first.tolist(), ends.tolist(), pooled_from.tolist()
    chunks = []
    for start, end in chunk_bounds(end_list, bptt, grad or training):
        # rows that began by `start` are a prefix (`first` grows down the rows); run up to the last unfinished one
        # (a finished row in between reads padding: its outputs are not pooled, its state not used)
        rows = 1 + max(row for row in range(len(end_list)) if first_list[row] <= start < end_list[row])
        pooled = min(pooled_from_list[:rows]) < end
        chunks.append(Chunk(start, end, rows, grad and start >= grad_from, pooled))
    return ChunkPlan(order, torch.argsort(order), lengths, first, ends, kept_from, pooled_from, chunks)


def chunk_bounds(ends: list[int], bptt: int, training: bool) -> list[tuple[int, int]]:
    """`(start, end)` columns of the chunks; `ends` is the column after each document's last token.

    Training: `bptt` chunks (the last one may be shorter), BPT3C's unit of truncation and dropout. Inference:
    boundaries change nothing, so a chunk runs up to `INFERENCE_CHUNK_TOKENS` but also stops where a document ends
    (at least `bptt` tokens on): finished documents leave the batch and little padding is computed.
    """
    last = max(ends)
    if training:
        return [(start, min(start + bptt, last)) for start in range(0, last, bptt)]
    longest = max(bptt, INFERENCE_CHUNK_TOKENS // bptt * bptt)
    stops = sorted(set(ends))
    bounds, start = [], 0
    while start < last:
        next_stop = stops[bisect.bisect_right(stops, start)]
        end = min(start + longest, max(next_stop, start + bptt), last)
        bounds.append((start, end))
        start = end
    return bounds


def kept_columns(chunk: Chunk, ends: torch.Tensor, pooled_from: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For the chunk's rows (`ends`, `pooled_from`: their first `chunk.rows` entries): bool `(rows, chunk)`, the
    columns pooled, and `(rows,)` the chunk position of each row's last token, or -1 if it is not in the chunk."""
    columns = chunk.start + torch.arange(chunk.end - chunk.start, device=ends.device)  # (chunk,)
    kept = (columns >= pooled_from.unsqueeze(1)) & (columns < ends.unsqueeze(1))  # (rows, chunk)
    last_at = ends - 1 - chunk.start
    last_at = torch.where(last_at < chunk.end - chunk.start, last_at, torch.full_like(last_at, -1))
    return kept, last_at


class ConcatPool:
    """Running concat pooling over the kept tokens, updated chunk by chunk (no concatenated outputs).

    Holds, per document, the output at its last real token, the running max and the running sum/count.
    Updates are functional so that autograd can flow into every kept chunk. With `track_argmax` it also keeps the
    column each feature's maximum came from, so that a gradient of the pooled features can be handed back to each
    chunk's outputs without autograd (`output_gradient`: a chunk-by-chunk backward, as the attribution reader does).
    """

    def __init__(self, batch: int, features: int, like: torch.Tensor, track_argmax: bool = False):
        self.last = like.new_zeros(batch, features)
        self.max = like.new_full((batch, features), float("-inf"))
        self.sum = like.new_zeros(batch, features)
        self.count = like.new_zeros(batch, 1)
        self.argmax = torch.zeros(batch, features, dtype=torch.long, device=like.device) if track_argmax else None

    def update(self, out: torch.Tensor, kept: torch.Tensor, last_at: torch.Tensor, start: int = 0) -> None:
        """out: `(n, chunk, feat)` for the first n documents; kept: bool `(n, chunk)`; last_at: `(n,)` the chunk
        position of each document's last token, or -1 if it is not in this chunk; start: the chunk's first column."""
        n_rest = self.sum.size(0) - out.size(0)

        def full(x: torch.Tensor, fill: float) -> torch.Tensor:  # (n, feat) -> (batch, feat)
            return torch.cat([x, x.new_full((n_rest, x.size(1)), fill)])

        kept3 = kept.unsqueeze(-1)
        self.sum = self.sum + full(out.masked_fill(~kept3, 0.0).sum(dim=1), 0.0)
        kept_out = out.masked_fill(~kept3, float("-inf"))
        if self.argmax is None:
            self.max = torch.maximum(self.max, full(kept_out.amax(dim=1), float("-inf")))
        else:
            chunk_max, chunk_arg = kept_out.max(dim=1)  # (n, feat): the first position of each maximum
            better = full(chunk_max, float("-inf")) > self.max
            self.argmax = torch.where(better, full(chunk_arg + start, 0), self.argmax)
            self.max = torch.maximum(self.max, full(chunk_max, float("-inf")))
        self.count = self.count + full(kept.sum(dim=1, keepdim=True).to(out.dtype), 0.0)
        has_last = last_at >= 0
        if bool(has_last.any()):
            at_last = out[torch.arange(out.size(0), device=out.device), last_at.clamp(min=0)]  # (n, feat)
            is_last_row = full(has_last.unsqueeze(1).to(out.dtype), 0.0).bool()
            self.last = torch.where(is_last_row, full(at_last, 0.0), self.last)

    def result(self) -> torch.Tensor:
        """`(batch, 3*feat)`: [last, max, mean], fastai's order."""
        return torch.cat([self.last, self.max, self.sum / self.count], dim=1)

    def output_gradient(
        self, d_pooled: torch.Tensor, kept: torch.Tensor, last_at: torch.Tensor, start: int
    ) -> torch.Tensor:
        """The gradient of a chunk's outputs from `d_pooled` `(batch, 3*feat)`, the gradient of `result()` (needs
        `track_argmax`). kept, last_at, start: as given to `update` for that chunk (its first n documents).
        Returns `(n, chunk, feat)`: mean's share on every kept token, last's at the last token, max's at the
        arg-max."""
        if self.argmax is None:
            raise ValueError("output_gradient needs a ConcatPool made with track_argmax=True")
        n, width = kept.shape
        d_last, d_max, d_mean = d_pooled[:n].chunk(3, dim=1)  # each (n, feat)
        d_out = (d_mean / self.count[:n]).unsqueeze(1) * kept.unsqueeze(-1)  # (n, chunk, feat)
        rows = (last_at >= 0).nonzero().squeeze(1)
        d_out[rows, last_at[rows]] += d_last[rows]
        argmax = self.argmax[:n]
        inside = (argmax >= start) & (argmax < start + width)
        at = (argmax - start).clamp(0, width - 1).unsqueeze(1)  # (n, 1, feat)
        return d_out.scatter_add_(1, at, (d_max * inside).unsqueeze(1))


def run_plan(
    plan: ChunkPlan, tokens: torch.Tensor, state: LstmState, step: ChunkStep, pool: ConcatPool
) -> torch.Tensor:
    """BPT3C: read `tokens` `(batch, width[, emb])` (sorted and aligned as planned: `shift_right(tokens[plan.order],
    plan.first, plan.lengths)`) chunk by chunk, starting from `state`; return the pooled features in the caller's
    row order, `(batch, 3*feat)`.

    Each chunk runs `step` on the rows that read it, with autograd only if the plan says so; its kept outputs go
    into `pool`; the state is carried to the next chunk detached, so no gradient crosses a chunk boundary.
    """
    for chunk in plan.chunks:
        n = chunk.rows
        with torch.set_grad_enabled(chunk.grad):
            out, new_state = step(chunk, tokens[:n, chunk.start : chunk.end], tuple((h[:n], c[:n]) for h, c in state))
            if chunk.pooled:
                pool.update(out, *kept_columns(chunk, plan.ends[:n], plan.pooled_from[:n]), chunk.start)
        state = tuple(
            (torch.cat([new_h, h[n:]]).detach(), torch.cat([new_c, c[n:]]).detach())
            for (new_h, new_c), (h, c) in zip(new_state, state)
        )
    return pool.result()[plan.restore]


# ----------------------------------------------------------------------------------------------------------------
# Moving documents within a batch: real tokens first (reversed for a backward model), shifted right by chunks
# ----------------------------------------------------------------------------------------------------------------


def justify_order(mask: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """`(batch, seq)` gather index that puts each row's real tokens first, in order (or reversed, for a backward
    model), padding after them. mask: bool `(batch, seq)`."""
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # real positions first
    if reverse:
        lengths = mask.sum(dim=1, keepdim=True)  # (batch, 1)
        k = torch.arange(mask.size(1), device=mask.device).unsqueeze(0)
        order = order.gather(1, torch.where(k < lengths, lengths - 1 - k, k))
    return order


def left_justify(tokens: torch.Tensor, mask: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """Move each row's real tokens to the front, keeping their order (or reversing it, for a backward model).
    tokens: `(batch, seq[, feat])`, mask: bool `(batch, seq)`."""
    if not reverse and bool(mask.all()):
        return tokens  # nothing to move (saves an O(batch*seq) sort on long unpadded documents)
    order = justify_order(mask, reverse)
    if tokens.dim() == 3:
        order = order.unsqueeze(-1).expand(-1, -1, tokens.size(-1))
    return tokens.gather(1, order)


def shift_right(tokens: torch.Tensor, shift: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Left-justified `tokens` `(batch, seq[, feat])` with row r moved right by `shift[r]` positions:
    `(batch, max(shift + lengths)[, feat])`. Positions outside a row's tokens hold id 0 (zero embeddings)."""
    if not bool(shift.any()):
        return tokens
    width = int((shift + lengths).max())
    source = torch.arange(width, device=tokens.device) - shift.unsqueeze(1)  # (batch, width)
    inside = (source >= 0) & (source < lengths.unsqueeze(1))
    source = source.clamp(0, tokens.size(1) - 1)
    if tokens.dim() == 3:
        moved = tokens.gather(1, source.unsqueeze(-1).expand(-1, -1, tokens.size(-1)))
        return moved * inside.unsqueeze(-1).to(moved.dtype)
    return tokens.gather(1, source).masked_fill(~inside, 0)
