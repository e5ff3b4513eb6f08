"""Peak memory and time of one token attribution of a random document, in a process of its own.

Prints one JSON line: tokens, peak_rss_mb (the process's peak resident set, imports included), start_rss_mb
(after building the model, before the attribution), seconds (the attribution alone).

Usage:
    python tests/interpret_memory_worker.py --tokens 100000                       # the test's model (emb 32/hid 128)
    python tests/interpret_memory_worker.py --tokens 10000 --embedding-size 128 --hidden-size 384 --layers 2
    python tests/interpret_memory_worker.py --tokens 10000 --model runs/imdb           # a saved classifier
    python tests/interpret_memory_worker.py --tokens 100000 --naive    # plain autograd through the whole document
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

from hf_bpt3c import AwdLstmConfig, AwdLstmForSequenceClassification, interpret  # noqa: E402


def peak_rss_mb() -> float:
    """This process's peak RSS since it started (Linux: VmHWM; `ru_maxrss` would include the peak of the parent
    that forked it, e.g. a large pytest process)."""
    try:
        with open("/proc/self/status") as f:
            return int(next(line for line in f if line.startswith("VmHWM:")).split()[1]) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux, bytes on macOS


def build_model(args: argparse.Namespace) -> AwdLstmForSequenceClassification:
    if args.model:
        return AwdLstmForSequenceClassification.from_pretrained(args.model).eval()
    config = AwdLstmConfig.for_classification(
        vocab_size=args.vocab,
        embedding_size=args.embedding_size,
        hidden_size=args.hidden_size,
        num_hidden_layers=args.layers,
        bptt=args.bptt,
        max_len=args.max_len,
        num_labels=2,
    )
    return AwdLstmForSequenceClassification(config).eval()


def naive_full_gradient(model: AwdLstmForSequenceClassification, ids: torch.Tensor) -> torch.Tensor:
    """For comparison: the full-scope gradient by plain autograd, the whole document's graph held at once."""
    embeds = model.awd_lstm.embeddings(ids).detach().requires_grad_(True)
    x, state = embeds.unsqueeze(0), model.awd_lstm.initial_state(1, embeds)
    out, _, _ = model.awd_lstm.run_layers(x, state)
    length, bptt, max_len = ids.numel(), model.config.bptt, model.config.max_len
    kept = out[0, -(-max(length - max_len, 0) // bptt) * bptt :]
    pooled = torch.cat([kept[-1], kept.max(dim=0).values, kept.mean(dim=0)])
    logits = model.classifier(pooled.unsqueeze(0))[0]
    (grad,) = torch.autograd.grad(logits[int(logits.argmax())], embeds)
    return grad.norm(dim=-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, required=True)
    parser.add_argument("--model", default=None, help="a saved classifier folder instead of a random model")
    parser.add_argument("--vocab", type=int, default=1000)
    parser.add_argument("--embedding-size", type=int, default=32)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--bptt", type=int, default=72)
    parser.add_argument("--max-len", type=int, default=1440)
    parser.add_argument("--method", default="gradient")
    parser.add_argument("--scope", default="full")
    parser.add_argument("--naive", action="store_true", help="plain autograd through the document instead")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args)
    ids = torch.randint(9, model.config.vocab_size, (args.tokens,))
    start_rss = peak_rss_mb()
    started = time.perf_counter()
    if args.naive:
        scores = naive_full_gradient(model, ids)
    else:
        scores = interpret.token_attributions(model, ids, method=args.method, scope=args.scope).scores[0]
    seconds = time.perf_counter() - started
    assert scores.numel() == args.tokens and bool(torch.isfinite(scores).all())
    result = dict(tokens=args.tokens, peak_rss_mb=round(peak_rss_mb(), 1), start_rss_mb=round(start_rss, 1))
    print(json.dumps({**result, "seconds": round(seconds, 2), "naive": args.naive}))


if __name__ == "__main__":
    main()
