"""Where a BPT3C training step spends its time: ours at ULMFiT sizes under `torch.profiler`, one step profiled
after a warm-up step.

Usage (from the repository root):
    python benchmarks/profile_training.py                    # bf16 where native, else fp32; bs 16 x 1024 tokens
    python benchmarks/profile_training.py --dtype float32 --length 256

Prints the wall time of the profiled step, the share of its CPU time in matrix products, in the LSTM's pointwise
gate arithmetic and in the rest, the operators with the most self time, and the speed of one time step's
recurrent product alone (`(batch x hidden) @ (hidden x 4*hidden)`, the product the step makes thousands of).
"""

from __future__ import annotations

import argparse
import time

import torch

from hf_bpt3c import AwdLstmConfig, AwdLstmForSequenceClassification
from hf_bpt3c.models.awd_lstm.hardware import bf16_is_native, cpu_summary

MATMUL = {"aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::_int_mm"}
POINTWISE = {"aten::sigmoid", "aten::tanh", "aten::mul", "aten::addcmul", "aten::add", "aten::sub", "aten::rsub"}
POINTWISE |= {name + "_" for name in POINTWISE}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto")
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = args.dtype if args.dtype != "auto" else "bfloat16" if bf16_is_native("cpu") else "float32"
    torch.manual_seed(0)
    config = AwdLstmConfig.for_classification(
        vocab_size=8000, embedding_size=400, hidden_size=1152, num_hidden_layers=3, bptt=72, max_len=1440,
        num_labels=2, compute_dtype=dtype,
    )  # fmt: skip
    model = AwdLstmForSequenceClassification(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(9, 8000, (args.batch, args.length))
    labels = torch.randint(0, 2, (args.batch,))

    def step() -> None:
        model(ids, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up
    start = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        step()
    wall = time.perf_counter() - start
    events = profile.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    share = {
        "matrix products": sum(e.self_cpu_time_total for e in events if e.key in MATMUL) / total,
        "LSTM pointwise (sigmoid, tanh, mul, add)": sum(e.self_cpu_time_total for e in events if e.key in POINTWISE)
        / total,
    }
    share["everything else"] = 1 - sum(share.values())
    print(f"# {cpu_summary()}; {args.threads} thread(s); {dtype}; batch {args.batch} x {args.length} tokens\n")
    print(f"Profiled training step: {wall:.2f} s wall ({args.batch * args.length / wall:,.0f} tokens/s).\n")
    print("| share of CPU time | % |\n|---|---|")
    for name, fraction in share.items():
        print(f"| {name} | {100 * fraction:.0f}% |")
    print("\n| operator | self CPU ms | % | calls |\n|---|---|---|---|")
    for event in sorted(events, key=lambda e: -e.self_cpu_time_total)[:12]:
        print(
            f"| {event.key} | {event.self_cpu_time_total / 1000:,.0f} | {100 * event.self_cpu_time_total / total:.0f}% "
            f"| {event.count:,} |"
        )
    print("\nOne recurrent product alone, GFLOP/s:\n\n| rows | float32 | bfloat16 |\n|---|---|---|")
    for rows in (args.batch, 2 * args.batch):
        fp32, bf16 = (recurrent_product_gflops(rows, config.hidden_size, d) for d in (torch.float32, torch.bfloat16))
        print(f"| {rows} | {fp32:.0f} | {bf16:.0f} |")


def recurrent_product_gflops(rows: int, hidden: int, dtype: torch.dtype, reps: int = 300) -> float:
    """GFLOP/s of `(rows x hidden) @ (hidden x 4*hidden)` in `dtype` (best of 3 timings of `reps` products)."""
    h, weight = torch.randn(rows, hidden).to(dtype), torch.randn(4 * hidden, hidden).to(dtype).t()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(reps):
            torch.mm(h, weight)
        best = min(best, (time.perf_counter() - start) / reps)
    return 2 * rows * hidden * 4 * hidden / best / 1e9


if __name__ == "__main__":
    main()
