"""Inference under `torch.compile` against eager PyTorch, ULMFiT sizes, random weights, float32 and bfloat16.

Usage (from the repository root):
    python benchmarks/compile_speed.py              # bs 16 x 1024 tokens, and a batch of mixed lengths
    python benchmarks/compile_speed.py --threads 1

Prints the compile time (the first call of each shape) and the steady-state time (best of `--reps` after it) of
eager and compiled inference, and the largest logit difference between them.
"""

from __future__ import annotations

import argparse
import time

import torch

from hf_bpt3c import AwdLstmConfig, AwdLstmForSequenceClassification
from hf_bpt3c.models.awd_lstm.hardware import bf16_is_native, cpu_summary


def batches(vocab: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """`uniform`: 16 documents of 1024 tokens; `mixed`: 16 documents of 60-1,700 tokens, right-padded."""
    gen = torch.Generator().manual_seed(0)
    uniform = torch.randint(9, vocab, (16, 1024), generator=gen)
    lengths = torch.linspace(60, 1700, 16).long()
    mixed = torch.randint(9, vocab, (16, int(lengths.max())), generator=gen)
    mask = (torch.arange(mixed.size(1)) < lengths.unsqueeze(1)).long()
    return {
        "uniform 16 x 1024": (uniform, torch.ones_like(uniform)),
        "mixed 60-1700": (mixed.masked_fill(mask == 0, 1), mask),
    }


def timed(model, ids: torch.Tensor, mask: torch.Tensor, reps: int) -> tuple[torch.Tensor, float, float]:
    """Logits, seconds of the first call, best seconds of `reps` more calls."""
    with torch.inference_mode():
        start = time.perf_counter()
        logits = model(ids, attention_mask=mask).logits
        first = time.perf_counter() - start
        best = float("inf")
        for _ in range(reps):
            start = time.perf_counter()
            model(ids, attention_mask=mask)
            best = min(best, time.perf_counter() - start)
    return logits, first, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = AwdLstmConfig.for_classification(
        vocab_size=8000, embedding_size=400, hidden_size=1152, num_hidden_layers=3, bptt=72, max_len=1440,
        num_labels=2,
    )  # fmt: skip
    dtypes = ["float32"] + (["bfloat16"] if bf16_is_native("cpu") else [])
    print(f"# {cpu_summary()}; {args.threads} thread(s); torch {torch.__version__}\n")
    head = ["batch", "dtype", "eager first s", "eager s", "compiled first s (compiling)", "compiled s", "speed-up"]
    print("| " + " | ".join([*head, "max abs diff"]) + " |")
    print("|---|---|---|---|---|---|---|---|")
    for dtype in dtypes:
        model = AwdLstmForSequenceClassification(config).eval()
        model.config.compute_dtype = dtype
        compiled = torch.compile(model)
        for name, (ids, mask) in batches(config.vocab_size).items():
            eager_logits, eager_first, eager = timed(model, ids, mask, args.reps)
            compiled_logits, compiled_first, fast = timed(compiled, ids, mask, args.reps)
            diff = (eager_logits - compiled_logits).abs().max().item()
            print(
                f"| {name} | {dtype} | {eager_first:.2f} | {eager:.2f} | {compiled_first:.1f} | {fast:.2f} | "
                f"{eager / fast:.2f}x | {diff:.1e} |"
            )


if __name__ == "__main__":
    main()
