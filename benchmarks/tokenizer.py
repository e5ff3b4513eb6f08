"""Tokenization speed: hf_bpt3c's AwdLstmTokenizer against fastai's ``tokenize_texts`` in the same run.

The IMDb sample (a local copy of texts.csv; docs/benchmarks.md#datasets) is repeated to ``--docs`` documents.
fastai runs first
(``tokenize_texts(texts, n_workers=2)``: default rules + spaCy, tokens only); ours then encodes the same texts
to ids and attention masks in batches of ``--batch-size`` (as ``datasets.map(batched=True)`` would), starting
from an empty chunk cache, once in this process and once split over ``--workers`` forked processes (as
``datasets.map(num_proc=2)`` would; the ids come back to the parent like fastai's tokens do). Prints documents
per second (wall clock) and CPU seconds (all processes and threads) for each, and the speed-ups.

    python benchmarks/tokenizer.py            # 50,000 documents
    python benchmarks/tokenizer.py --smoke    # a few hundred documents, seconds
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path

from hf_bpt3c.models.awd_lstm import tokenization_awd_lstm
from hf_bpt3c.models.awd_lstm.tokenization_awd_lstm import AwdLstmTokenizer

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imdb_sample" / "texts.csv"


def load_texts(n_docs: int) -> list[str]:
    """The IMDb sample's reviews, repeated (and cut) to ``n_docs`` documents."""
    with DATA.open(newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    return (texts * (n_docs // len(texts) + 1))[:n_docs]


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its finished child processes."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn, *args) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of ``fn(*args)``."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    fn(*args)
    return time.perf_counter() - wall, cpu_seconds() - cpu


def run_fastai(texts: list[str], n_workers: int) -> None:
    """fastai's ``tokenize_texts`` (default rules, SpacyTokenizer)."""
    from fastai.text.core import tokenize_texts

    tokenize_texts(texts, n_workers=n_workers)


_TOKENIZER: AwdLstmTokenizer | None = None


def encode_all(texts: list[str], batch_size: int) -> list[list[int]]:
    """Encode ``texts`` batch by batch with the tokenizer of this process; returns the ids."""
    ids: list[list[int]] = []
    for i in range(0, len(texts), batch_size):
        ids.extend(_TOKENIZER(texts[i : i + batch_size])["input_ids"])
    return ids


def _encode_slice(args: tuple[list[str], int]) -> list[list[int]]:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one process per core already
    return encode_all(*args)


def run_ours(texts: list[str], batch_size: int, num_proc: int) -> None:
    """Encode ``texts`` in this process (``num_proc=1``) or split over forked worker processes."""
    tokenization_awd_lstm.clear_caches()
    if num_proc == 1:
        encode_all(texts, batch_size)
        return
    step = -(-len(texts) // num_proc)
    slices = [(texts[i : i + step], batch_size) for i in range(0, len(texts), step)]
    with multiprocessing.get_context("fork").Pool(num_proc) as pool:
        pool.map(_encode_slice, slices)


def main(argv: list[str] | None = None) -> None:
    """Run the comparison and print documents/s."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=50_000, help="number of documents (default 50000)")
    parser.add_argument("--smoke", action="store_true", help="quick run on 300 documents")
    parser.add_argument("--workers", type=int, default=2, help="fastai's n_workers (default 2)")
    parser.add_argument("--batch-size", type=int, default=1000, help="our batch size (default 1000)")
    args = parser.parse_args(argv)
    if not DATA.exists():
        if args.smoke:  # CI without the datasets: nothing to measure, as the data-dependent tests skip
            print(f"skipped: data not found: {DATA}")
            return
        sys.exit(f"data not found: {DATA}")
    n_docs = 300 if args.smoke else args.docs
    texts = load_texts(n_docs)
    global _TOKENIZER
    _TOKENIZER = AwdLstmTokenizer.from_texts(load_texts(1000))
    fastai_wall, fastai_cpu = timed(run_fastai, texts, args.workers)
    print(f"{n_docs} documents (IMDb sample repeated), batches of {args.batch_size}")
    fastai_name = f"fastai tokenize_texts, n_workers={args.workers}"
    print(f"{fastai_name:42s} {n_docs / fastai_wall:8.0f} docs/s  {fastai_cpu:7.1f} CPU s")
    for num_proc in (1, args.workers):
        wall, cpu = timed(run_ours, texts, args.batch_size, num_proc)
        name = f"hf_bpt3c AwdLstmTokenizer, {num_proc} process{'es' if num_proc > 1 else ''}"
        speed_up = f"speed-up {fastai_wall / wall:5.1f}x (CPU {fastai_cpu / cpu:5.1f}x)"
        print(f"{name:42s} {n_docs / wall:8.0f} docs/s  {cpu:7.1f} CPU s  {speed_up}")


if __name__ == "__main__":
    main()
