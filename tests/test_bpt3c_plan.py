"""The BPT3C planner's invariants on random batches (hypothesis): chunks counted from each document's first token,
the rows a chunk runs are a prefix, every kept token pooled exactly once, the autograd graph bounded by max_len."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_bpt3c.models.awd_lstm.bpt3c_plan import INFERENCE_CHUNK_TOKENS, kept_columns, kept_window_start, plan_chunks

batches = st.integers(1, 40).flatmap(  # AwdLstmConfig requires max_len >= bptt
    lambda bptt: st.fixed_dictionaries(
        {
            "lengths": st.lists(st.integers(1, 400), min_size=1, max_size=8),
            "bptt": st.just(bptt),
            "max_len": st.integers(bptt, 200),
            "grad": st.booleans(),
            "training": st.booleans(),
        }
    )
)


def fastai_kept_positions(length: int, bptt: int, max_len: int) -> set[int]:
    """fastai's rule, written from its loop: a chunk starting at i (0, bptt, ...) is kept when `sl - i <= max_len`."""
    return {p for i in range(0, length, bptt) if length - i <= max_len for p in range(i, min(i + bptt, length))}


def plan_of(batch: dict):
    return plan_chunks(
        torch.tensor(batch["lengths"]), batch["bptt"], batch["max_len"], batch["grad"], batch["training"]
    )


@settings(max_examples=300, deadline=None)
@given(batches)
def test_rows_are_the_documents_longest_first(batch):
    plan = plan_of(batch)
    lengths = torch.tensor(batch["lengths"])
    assert torch.equal(plan.lengths, lengths[plan.order])
    assert (plan.lengths[:-1] >= plan.lengths[1:]).all()
    assert torch.equal(plan.order[plan.restore], torch.arange(len(lengths)))
    assert torch.equal(plan.ends - plan.first, plan.lengths)


@settings(max_examples=300, deadline=None)
@given(batches)
def test_chunks_tile_the_columns_and_are_counted_from_each_documents_first_token(batch):
    plan, bptt = plan_of(batch), batch["bptt"]
    starts = [c.start for c in plan.chunks]
    assert starts[0] == 0 and all(a.end == b.start for a, b in zip(plan.chunks, plan.chunks[1:]))
    assert plan.chunks[-1].end == int(plan.ends.max())
    stepped = batch["grad"] or batch["training"]
    for chunk in plan.chunks:
        width = chunk.end - chunk.start
        if stepped:
            assert width == bptt or chunk is plan.chunks[-1]
            for row in range(len(plan.lengths)):
                if plan.first[row] <= chunk.start < plan.ends[row]:
                    assert (chunk.start - int(plan.first[row])) % bptt == 0
        else:
            assert width <= max(bptt, INFERENCE_CHUNK_TOKENS // bptt * bptt)
    if batch["grad"]:  # documents moved right by whole chunks only
        assert (plan.first % bptt == 0).all()


@settings(max_examples=300, deadline=None)
@given(batches)
def test_the_rows_a_chunk_runs_are_a_prefix(batch):
    plan = plan_of(batch)
    for chunk in plan.chunks:
        inside = [int(plan.first[r]) <= chunk.start < int(plan.ends[r]) for r in range(len(plan.lengths))]
        assert any(inside)
        assert max(r for r, is_inside in enumerate(inside) if is_inside) == chunk.rows - 1
        assert all(int(plan.first[r]) <= chunk.start for r in range(chunk.rows))


@settings(max_examples=300, deadline=None)
@given(batches)
def test_every_kept_token_is_pooled_exactly_once_and_the_last_token_once(batch):
    plan, bptt, max_len = plan_of(batch), batch["bptt"], batch["max_len"]
    n_docs = len(plan.lengths)
    pooled_positions = [[] for _ in range(n_docs)]
    last_seen = [0] * n_docs
    for chunk in plan.chunks:
        kept, last_at = kept_columns(chunk, plan.ends[: chunk.rows], plan.kept_from[: chunk.rows])
        assert kept.shape == (chunk.rows, chunk.end - chunk.start)
        if not chunk.pooled:
            assert not kept.any()
            continue
        for row in range(chunk.rows):
            columns = (chunk.start + kept[row].nonzero().squeeze(1)).tolist()
            pooled_positions[row] += [c - int(plan.first[row]) for c in columns]
            if last_at[row] >= 0:
                last_seen[row] += 1
                assert chunk.start + int(last_at[row]) == int(plan.ends[row]) - 1
    for row in range(n_docs):
        length = int(plan.lengths[row])
        assert sorted(pooled_positions[row]) == sorted(set(pooled_positions[row]))  # once each
        assert set(pooled_positions[row]) == fastai_kept_positions(length, bptt, max_len)
        assert last_seen[row] == 1
    assert torch.equal(plan.kept_from - plan.first, kept_window_start(plan.lengths, bptt, max_len))


@settings(max_examples=300, deadline=None)
@given(batches)
def test_autograd_covers_the_kept_tokens_and_is_bounded_by_max_len(batch):
    plan, bptt, max_len = plan_of(batch), batch["bptt"], batch["max_len"]
    grad_chunks = [c for c in plan.chunks if c.grad]
    if not batch["grad"]:
        assert not grad_chunks
        return
    assert len(grad_chunks) <= -(-max_len // bptt)  # the graph spans at most max_len / bptt chunk columns
    assert all(not c.grad for c in plan.chunks[: len(plan.chunks) - len(grad_chunks)])  # a suffix of the chunks
    for chunk in plan.chunks:
        kept, _ = kept_columns(chunk, plan.ends[: chunk.rows], plan.kept_from[: chunk.rows])
        if kept.any():
            assert chunk.grad
