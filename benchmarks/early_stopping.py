"""The classifier stage with and without early stopping on held-out training documents, from the same language
models: each direction's accuracy and that of the forward + backward ensemble, per seed and over the seeds.

Usage (from the repository root; first the language models, kept in a work folder by `main_job.py`):
    python benchmarks/main_job.py --train_file imdb_sample/texts.csv --frameworks ours --seeds 0 1 2 \\
        --workdir runs/bidi --ours_args="--lm_extra_file unsup.jsonl --lm_extra_max_texts 10000 --lm_epochs 2 \\
        --bidirectional"
    python benchmarks/early_stopping.py --train_file imdb_sample/texts.csv --workdir runs/bidi --seeds 0 1 2 \\
        --holdouts 0 10 --metrics loss accuracy --output runs/early_stopping.json

For each seed and direction the classifier stage of `run_ulmfit.py` (its defaults: 12 epochs at 1e-2, batch 32,
gradual unfreezing, max_len 1440, fastai's batch order) starts from `<workdir>/ours-seed<S>/<direction>/
language_model` with the seed set before the head is built, once per variant: 0 (the scripts' default, every
training document, the last epoch kept) and, for each `--holdouts` percent P > 0 and each of `--metrics`, P/metric
(P percent of the training documents held out, the epoch of their best metric kept: `--early_stopping_holdout P
--metric_for_best_model metric`). The validation split is only evaluated, never used to choose.
Each run is recorded in `--output` as it ends; a rerun skips the runs already there.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import TrainingArguments, set_seed

REPO_ROOT = Path(__file__).resolve().parent.parent
DIRECTIONS = ("forward", "backward")


def classifier_run(lm_dir: Path, splits, seed: int, holdout: int, metric: str | None, out: Path) -> dict:
    """One direction's classifier stage from `lm_dir`: its validation accuracy, kept epoch and minutes."""
    from hf_bpt3c import AwdLstmConfig
    from hf_bpt3c.training.scripts import ClassifierArguments, train_classifier

    args = ClassifierArguments(
        model_name_or_path=str(lm_dir),
        bptt=AwdLstmConfig.from_pretrained(lm_dir).bptt,
        early_stopping_holdout=holdout,
    )
    training = TrainingArguments(
        output_dir=str(out), num_train_epochs=12, per_device_train_batch_size=32, per_device_eval_batch_size=32,
        seed=seed, save_strategy="no", report_to=[], disable_tqdm=True, dataloader_pin_memory=False,
        metric_for_best_model=metric,
    )  # fmt: skip
    set_seed(seed)
    started = time.time()
    trainer, metrics = train_classifier(args, training, splits, "text", metrics_dir=REPO_ROOT / "examples" / "metrics")
    return {
        "accuracy": metrics["eval_accuracy"],
        "kept_epoch": trainer.model.model_card_info["training"].get("kept epoch"),
        "minutes": (time.time() - started) / 60,
    }


def ensemble_accuracy(folders: list[Path], splits) -> float:
    from hf_bpt3c import AwdLstmForSequenceClassification, AwdLstmTokenizer, ensemble_predict

    models = [AwdLstmForSequenceClassification.from_pretrained(folder) for folder in folders]
    tokenizer = AwdLstmTokenizer.from_pretrained(folders[0])
    prediction = ensemble_predict(models, tokenizer, list(splits["validation"]["text"]))
    return float(np.mean(np.asarray(prediction.labels) == np.asarray(splits["validation"]["label"])))


def print_table(results: dict) -> None:
    print("\n| held out / kept by | seed | forward | backward | forward + backward | kept epochs (fwd, bwd) | min |")
    print("|---|---|---|---|---|---|---|")
    for variant, runs in results.items():
        for seed, run in sorted(runs.items()):
            epochs = ", ".join(str(run[d]["kept_epoch"] or "-") for d in DIRECTIONS)
            minutes = sum(run[d]["minutes"] for d in DIRECTIONS)
            cells = " | ".join(f"{run[d]['accuracy']:.3f}" for d in DIRECTIONS)
            print(f"| {variant} | {seed} | {cells} | {run['ensemble']:.3f} | {epochs} | {minutes:.1f} |")
        if len(runs) > 1:
            mean = {d: statistics.mean(r[d]["accuracy"] for r in runs.values()) for d in DIRECTIONS}
            ensembles = [r["ensemble"] for r in runs.values()]
            print(
                f"| **{variant}** | mean of {len(runs)} | {mean['forward']:.3f} | {mean['backward']:.3f} | "
                f"**{statistics.mean(ensembles):.3f} ± {statistics.stdev(ensembles):.3f}** | | |"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train_file", type=Path, required=True, help="CSV with text, label and is_valid")
    parser.add_argument("--workdir", type=Path, required=True, help="main_job.py's --workdir of the bidirectional runs")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--holdouts", nargs="+", type=int, default=[0, 10], help="percents held out (0: none)")
    parser.add_argument("--metrics", nargs="+", default=["loss"], help="held-out metrics that pick the epoch")
    parser.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    parser.add_argument("--output", type=Path, help="JSON of every run, written as each ends; reruns skip those done")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for seed in args.seeds:
        for direction in DIRECTIONS:
            if not (args.workdir / f"ours-seed{seed}" / direction / "language_model").is_dir():
                parser.error(f"--workdir {args.workdir}: no ours-seed{seed}/{direction}/language_model in it")

    from hf_bpt3c.training.scripts import DataArguments, load_splits

    splits = load_splits(DataArguments(train_file=str(args.train_file), split_column="is_valid"))
    results = json.loads(args.output.read_text()) if args.output and args.output.is_file() else {}
    variants = [(h, m) for h in args.holdouts for m in ([None] if h == 0 else args.metrics)]
    for holdout, metric in variants:
        name = str(holdout) if metric is None else f"{holdout}/{metric}"
        for seed in args.seeds:
            if str(seed) in results.get(name, {}):
                continue
            run = {}
            with tempfile.TemporaryDirectory() as tmp:
                for direction in DIRECTIONS:
                    lm_dir = args.workdir / f"ours-seed{seed}" / direction / "language_model"
                    run[direction] = classifier_run(lm_dir, splits, seed, holdout, metric, Path(tmp) / direction)
                run["ensemble"] = ensemble_accuracy([Path(tmp) / d for d in DIRECTIONS], splits)
            results.setdefault(name, {})[str(seed)] = run
            print(f"{name} seed {seed}: {json.dumps(run)}", flush=True)
            if args.output:
                args.output.parent.mkdir(parents=True, exist_ok=True)
                args.output.write_text(json.dumps(results, indent=2))
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
