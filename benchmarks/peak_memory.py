"""Peak resident memory of one BPT3C training step (or, with --inference, one eval forward pass), in a fresh
process.

Usage: python benchmarks/peak_memory.py LENGTH [--batch B] [--emb E] [--hidden H] [--layers N] [--inference]
    [--pooling window|document]
Prints a JSON line: {"length", "baseline_mb", "peak_mb", "step_mb"} where step_mb = peak - baseline, the
memory the training step itself added (baseline: model, optimizer state and a warm-up step on a tiny batch; the
kernel's peak mark is reset after the warm-up, Linux only).
"""

from __future__ import annotations

import argparse
import gc
import json

import torch

from hf_bpt3c import AwdLstmConfig, AwdLstmForSequenceClassification
from hf_bpt3c.models.awd_lstm.configuration_awd_lstm import CLASSIFIER_POOLINGS


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def reset_peak() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS, so earlier transient peaks do not count."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("length", type=int)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--emb", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--vocab", type=int, default=1000)
    parser.add_argument("--inference", action="store_true", help="measure an eval forward pass instead")
    parser.add_argument("--pooling", choices=CLASSIFIER_POOLINGS, default="window", help="classifier_pooling")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    config = AwdLstmConfig.for_classification(
        vocab_size=args.vocab,
        embedding_size=args.emb,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        classifier_pooling=args.pooling,
    )
    model = AwdLstmForSequenceClassification(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    labels = torch.zeros(args.batch, dtype=torch.long)

    def step(length: int) -> None:
        ids = torch.randint(9, args.vocab, (args.batch, length))
        if args.inference:
            with torch.no_grad():
                model.eval()(ids)
            return
        model(ids, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(config.bptt)  # allocate optimizer state and warm the allocator
    gc.collect()
    reset_peak()
    baseline = _status_mb("VmRSS")
    step(args.length)
    peak = _status_mb("VmHWM")
    print(
        json.dumps(
            {
                "length": args.length,
                "baseline_mb": round(baseline, 1),
                "peak_mb": round(peak, 1),
                "step_mb": round(peak - baseline, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
