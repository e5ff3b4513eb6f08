"""Language-model training speed on a CPU with and without PyTorch's transparent huge pages for large tensors.

Usage (from the repository root):
    python benchmarks/lm_speed.py                          # vocabularies of 6,008 and 26,312 tokens, all threads
    python benchmarks/lm_speed.py --vocab_sizes 6008 --threads 1 --steps 60

Each setting runs in a fresh process (PyTorch reads `THP_MEM_ALLOC_ENABLE` once, at its first large allocation):
training steps of the main job's language model (emb 128, hidden 384, 2 layers, fastai's LM dropouts) on 32
streams of 72 random tokens (2,304 tokens a step, as `run_ulmfit.py`): forward, loss, backward and an AdamW step.
After warm-up steps it times `--steps` steps and prints tokens/s, the share of the process's CPU time spent in the
kernel, the minor page faults per step and the speed-up of `THP_MEM_ALLOC_ENABLE=1` (2 MB pages: the [2304, V]
logits, their log-softmax and gradient are allocated and freed every step; with 4 KB pages each costs thousands of
page faults).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def worker(vocab_size: int, steps: int, warmup: int, threads: int) -> dict:
    import torch

    from hf_bpt3c import AwdLstmConfig, AwdLstmForCausalLM

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = AwdLstmConfig(vocab_size=vocab_size, embedding_size=128, hidden_size=384, num_hidden_layers=2)
    model = AwdLstmForCausalLM(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = torch.randint(0, vocab_size, (32, 72))

    def step():
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    for _ in range(warmup):
        step()
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        step()
    seconds, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    return {
        "tokens_per_s": steps * batch.numel() / seconds,
        "kernel_share": system / (user + system),
        "faults_per_step": (after.ru_minflt - before.ru_minflt) / steps,
    }


def run(vocab_size: int, thp: bool, args) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if thp:
        env["THP_MEM_ALLOC_ENABLE"] = "1"
    command = [sys.executable, __file__, "--worker", str(vocab_size), "--steps", str(args.steps)]
    command += ["--warmup", str(args.warmup), "--threads", str(args.threads)]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab_sizes", nargs="+", type=int, default=[6008, 26312])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.steps, args.warmup, args.threads)))
        return 0
    import torch

    print(f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}, {args.threads} threads, fp32")
    print("| vocabulary | THP_MEM_ALLOC_ENABLE | tokens/s | kernel share of CPU time | page faults a step | speed-up |")
    print("|---|---|---|---|---|---|")
    for vocab_size in args.vocab_sizes:
        base = None
        for thp in (False, True):
            r = run(vocab_size, thp, args)
            base = base or r["tokens_per_s"]
            print(
                f"| {vocab_size:,} | {'1' if thp else 'unset'} | {r['tokens_per_s']:,.0f} | {r['kernel_share']:.0%} | "
                f"{r['faults_per_step']:,.0f} | {r['tokens_per_s'] / base:.2f}x |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
