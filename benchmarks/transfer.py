"""The main job from scratch and from a pretrained language model, side by side, over several seeds.

Usage (from the repository root; first pretrain a language model, see docs/transfer.md):
    python benchmarks/transfer.py --pretrained runs/pretrain_corpus_lm            # seeds 42 1 2, about 35 min
    python benchmarks/transfer.py --pretrained runs/pretrain_corpus_lm \
        --extra "--lm_extra_file imdb_unsup/unsup.jsonl --lm_extra_max_texts 2000" \
        --extra_scratch "--lm_epochs 4" --extra_pretrained "--lm_epochs 3"   # + 2,000 unlabelled reviews, 4 passes

For each seed it runs `examples/run_ulmfit.py` on the IMDb sample twice at the same time, one thread each: from
scratch (the README's main job) and with `--model_name_or_path PRETRAINED` (target vocabulary, LM fine-tuning,
classifier). It prints a markdown table of validation accuracy, macro F1, the language model's perplexity on the
validation texts and the minutes of each run, the means over seeds, and how the pretrained model's vocabulary covers
the target texts and its perplexity on the validation texts before any fine-tuning.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from hf_bpt3c import AwdLstmForCausalLM, AwdLstmTokenizer
from hf_bpt3c.convert.transfer import adapt_vocabulary, vocabulary_of
from hf_bpt3c.training.data import LMStreamDataset

REPO_ROOT = Path(__file__).resolve().parents[1]
IMDB_CSV = REPO_ROOT.parent / "shared" / "data" / "imdb_sample" / "texts.csv"
STARTS = ("scratch", "pretrained")


def run_pair(seed: int, pretrained: str, out: Path, extra: list[str], extra_by_start: dict[str, list[str]]) -> dict:
    """Both starts for one seed, launched together (one thread each); returns {start: results}."""
    base = [
        sys.executable, str(REPO_ROOT / "examples" / "run_ulmfit.py"),
        "--train_file", str(IMDB_CSV), "--split_column", "is_valid", "--text_column", "text",
        "--label_column", "label", "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true",
        "--seed", str(seed), *extra,
    ]  # fmt: skip
    commands = {
        "scratch": base + ["--output_dir", str(out / f"scratch-{seed}")],
        "pretrained": base + ["--output_dir", str(out / f"pretrained-{seed}"), "--model_name_or_path", pretrained],
    }
    for start, more in extra_by_start.items():
        commands[start] += more
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT / "examples")}
    started, processes = time.perf_counter(), {}
    for start, command in commands.items():
        log = open(out / f"{start}-{seed}.log", "w")  # noqa: SIM115 (closed with the process below)
        processes[start] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env), log)
    results = {}
    for start, (process, log) in processes.items():
        if process.wait() != 0:
            raise RuntimeError(f"{shlex.join(commands[start])} failed: see {log.name}")
        log.close()
        folder = out / f"{start}-{seed}"
        evaluation = json.loads((folder / "eval_results.json").read_text())
        lm = json.loads((folder / "language_model" / "lm_results.json").read_text())
        minutes = float(re.search(r"validation accuracy: .* in ([\d.]+) min", Path(log.name).read_text()).group(1))
        results[start] = {
            "accuracy": evaluation["eval_accuracy"],
            "f1": evaluation["eval_f1"],
            "perplexity": lm["perplexity"],
            "minutes": minutes,
        }
    print(f"seed {seed} done in {(time.perf_counter() - started) / 60:.1f} min", file=sys.stderr, flush=True)
    return results


def imdb_texts() -> tuple[list[str], list[str]]:
    with IMDB_CSV.open(newline="") as f:
        rows = list(csv.DictReader(f))
    train = [row["text"] for row in rows if row["is_valid"].strip().lower() != "true"]
    valid = [row["text"] for row in rows if row["is_valid"].strip().lower() == "true"]
    return train, valid


def before_fine_tuning(pretrained: str, batch_size: int = 32) -> dict:
    """How the pretrained LM meets the target texts: vocabulary coverage (types, token occurrences) and the
    perplexity on the validation texts with the target vocabulary mapped on, before any fine-tuning (computed as
    `run_language_modeling.py` evaluates: `batch_size` streams, state carried, mean of the batches' losses)."""
    train, valid = imdb_texts()
    target = AwdLstmTokenizer.from_texts(train)  # the main job's vocabulary (max_vocab 60000, min_freq 3)
    source = AwdLstmTokenizer.from_pretrained(pretrained)
    known = set(vocabulary_of(source))
    has_row = [token in known for token in vocabulary_of(target)]
    ids = [i for doc in target(train)["input_ids"] for i in doc]
    model = adapt_vocabulary(AwdLstmForCausalLM.from_pretrained(pretrained), source, target).model.eval()
    streams = LMStreamDataset(target(valid)["input_ids"], batch_size, model.config.bptt)
    losses, state = [], None
    with torch.no_grad():
        for window in range(streams.n_windows):
            batch = torch.stack([streams[window * batch_size + row]["input_ids"] for row in range(batch_size)])
            out = model(batch, labels=batch, state=state, use_cache=True)
            losses.append(out.loss.item())
            state = out.state
    return {
        "types": len(has_row),
        "types_with_row": sum(has_row),
        "token_share_with_row": sum(has_row[i] for i in ids) / len(ids),
        "unk_share": sum(i == target.unk_token_id for i in ids) / len(ids),
        "perplexity_before": math.exp(statistics.mean(losses)),
    }


def summary(rows: dict[int, dict]) -> str:
    lines = [
        "| seed | start | accuracy | macro F1 | LM perplexity | minutes |",
        "|---|---|---|---|---|---|",
    ]
    for seed, results in rows.items():
        for start in STARTS:
            r = results[start]
            cells = [str(seed), start, f"{r['accuracy']:.3f}", f"{r['f1']:.3f}", f"{r['perplexity']:.1f}"]
            lines.append("| " + " | ".join([*cells, f"{r['minutes']:.1f}"]) + " |")
    for start in STARTS:
        values = {k: [rows[s][start][k] for s in rows] for k in ("accuracy", "f1", "perplexity", "minutes")}
        spread = f" ± {statistics.stdev(values['accuracy']):.3f}" if len(rows) > 1 else ""
        lines.append(
            f"| mean | {start} | **{statistics.mean(values['accuracy']):.3f}**{spread} | "
            f"{statistics.mean(values['f1']):.3f} | {statistics.mean(values['perplexity']):.1f} | "
            f"{statistics.mean(values['minutes']):.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrained", required=True, help="folder of the pretrained language model")
    parser.add_argument("--seeds", type=int, nargs="*", default=[42, 1, 2], help="none: only the coverage line")
    parser.add_argument("--output_dir", default="runs/transfer_benchmark")
    parser.add_argument(
        "--extra", default="", help='more run_ulmfit.py arguments for both starts (--extra="--a 1 --b")'
    )
    parser.add_argument("--extra_scratch", default="", help="more run_ulmfit.py arguments, scratch start only")
    parser.add_argument("--extra_pretrained", default="", help="more run_ulmfit.py arguments, pretrained start only")
    args = parser.parse_args()
    if not IMDB_CSV.is_file():
        sys.exit(f"{IMDB_CSV} not found")
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    coverage = before_fine_tuning(args.pretrained)
    extra_by_start = {"scratch": shlex.split(args.extra_scratch), "pretrained": shlex.split(args.extra_pretrained)}
    rows = {seed: run_pair(seed, args.pretrained, out, shlex.split(args.extra), extra_by_start) for seed in args.seeds}
    if rows:
        print(f"\n## The main job from scratch and from {args.pretrained} (IMDb sample, 800 / 200 reviews)\n")
        print("Each seed's two runs ran side by side, one thread each.\n")
        print(summary(rows))
    print(
        f"\nTarget vocabulary: {coverage['types']} tokens, {coverage['types_with_row']} with a pretrained row; "
        f"{100 * coverage['token_share_with_row']:.1f}% of the training texts' tokens have one "
        f"(xxunk: {100 * coverage['unk_share']:.1f}%). Perplexity of the pretrained LM on the validation texts "
        f"before fine-tuning (target vocabulary mapped on): {coverage['perplexity_before']:.1f}."
    )
    (out / "results.json").write_text(json.dumps({"coverage": coverage, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
