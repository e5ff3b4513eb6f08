"""The main job on one labelled CSV, three ways, several seeds: hf_bpt3c's `run_ulmfit.py`, fastai 2.8's own ULMFiT
pipeline at the same sizes and epochs, and TF-IDF baselines. Prints accuracy, macro F1 and minutes per run and the
mean ± standard deviation over the seeds.

Usage (from the repository root; the CSV has `text`, `label` and a boolean `is_valid` column):
    python benchmarks/main_job.py --train_file german_news/texts.csv --tokenizer_type sentencepiece --lang de \\
        --seeds 0 1 2 --output runs/main_job_de.json
    python benchmarks/main_job.py --train_file imdb_sample/texts.csv --seeds 0 1 2
    python benchmarks/main_job.py --train_file ... --frameworks tfidf          # the baselines only (seconds)
    python benchmarks/main_job.py --train_file ... --smoke                     # tiny sizes, one seed (a minute)

Each run is recorded in `--output` as soon as it ends, and a rerun of the same command skips the runs already there
(so a long measurement can be interrupted and resumed).

- ours: `examples/run_ulmfit.py` from scratch (its defaults: a language model of 128/384/2 layers, bptt 72, 12
  epochs at 1e-2 on the training and validation texts, then the BPT3C classifier, 12 epochs, gradual unfreezing,
  max_len 1440), with `--tokenizer_type`, `--lang`, `--sp_vocab_size` passed on; `--ours_args` adds flags.
- fastai: the same stages as fastai's text tutorial does them: `TextBlock.from_df(is_lm=True)` (the tokenizer,
  `SentencePieceTokenizer(lang, vocab_sz)` or fastai's default spaCy words, set up on the language model's
  training texts), `language_model_learner(AWD_LSTM, same sizes, drop_mult 1, pretrained=False)`,
  `fit_one_cycle(12, 1e-2)` on the training and validation texts, `save_encoder`; then
  `text_classifier_learner(drop_mult 0.5, seq_len 72, max_len 1440)`, `load_encoder` and the tutorial's gradual
  unfreezing: one epoch at 2e-2 (head), one at slice(1e-2/2.6^4, 1e-2) (freeze_to(-2)), one at
  slice(5e-3/2.6^4, 5e-3) (freeze_to(-3)), the remaining epochs at slice(1e-3/2.6^4, 1e-3) (all).
- tfidf: word 1-2-grams, sublinear tf, min_df 2, trained on the training rows; logistic regression (C=10) and a
  linear SVM (deterministic: run once).
Torch uses every core for both frameworks (run nothing else meanwhile: the minutes are wall-clock).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SIZES = dict(emb=128, hidden=384, layers=2, bptt=72, max_len=1440, lm_epochs=12, lm_lr=1e-2, epochs=12, batch=32)
SMOKE = dict(emb=32, hidden=64, layers=2, bptt=24, max_len=96, lm_epochs=1, lm_lr=1e-2, epochs=4, batch=16)


def read_split(path: Path, smoke: bool):
    import pandas as pd

    frame = pd.read_csv(path, keep_default_na=False)
    frame["is_valid"] = frame["is_valid"].astype(str).str.lower().isin(["true", "1"])
    if smoke:  # the --quick sizes of run_ulmfit.py: its first 160 training and 80 validation rows
        frame = pd.concat([frame[~frame.is_valid].head(160), frame[frame.is_valid].head(80)])
    return frame


def scores(labels, predictions) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "macro_f1": float(f1_score(labels, predictions, average="macro")),
    }


def run_tfidf(frame) -> dict[str, dict]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    train, valid = frame[~frame.is_valid], frame[frame.is_valid]
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    x_train, x_valid = vectorizer.fit_transform(train.text), vectorizer.transform(valid.text)
    results = {}
    for name, model in (("tfidf_lr", LogisticRegression(C=10, max_iter=5000)), ("tfidf_svm", LinearSVC())):
        started = time.time()
        model.fit(x_train, train.label)
        results[name] = {**scores(valid.label, model.predict(x_valid)), "minutes": (time.time() - started) / 60}
    return results


DIRECTION_KEYS = (("accuracy", "accuracy"), ("macro_f1", "f1"), ("minutes", "minutes"))


def run_ours(args, seed: int, workdir: Path) -> dict:
    """`examples/run_ulmfit.py` in a process of its own; its eval_results.json (with `--bidirectional` in
    `--ours_args`: the forward + backward ensemble's metrics, and each direction's as `forward_accuracy`, ...)."""
    out = workdir / f"ours-seed{seed}"
    command = [
        sys.executable, str(REPO_ROOT / "examples" / "run_ulmfit.py"), "--train_file", str(args.train_file),
        "--split_column", "is_valid", "--text_column", "text", "--label_column", "label", "--output_dir", str(out),
        "--save_strategy", "no", "--report_to", "none", "--seed", str(seed), "--disable_tqdm", "true",
    ]  # fmt: skip
    for flag in ("tokenizer_type", "lang", "sp_vocab_size"):
        if getattr(args, flag) is not None:
            command += [f"--{flag}", str(getattr(args, flag))]
    command += ["--quick"] if args.smoke else []
    command += args.ours_args.split() if args.ours_args else []
    started = time.time()
    subprocess.run(command, check=True, cwd=REPO_ROOT, stdout=subprocess.DEVNULL if args.quiet else None)
    minutes = (time.time() - started) / 60
    metrics = json.loads((out / "eval_results.json").read_text())
    if "ensemble_accuracy" in metrics:  # --bidirectional: the ensemble's, and each direction's as well
        directions = {f"{d}_{k}": metrics[f"{d}_{m}"] for d in ("forward", "backward") for k, m in DIRECTION_KEYS}
        return {"accuracy": metrics["ensemble_accuracy"], "macro_f1": metrics["ensemble_f1"], "minutes": minutes,
                **directions}  # fmt: skip
    return {"accuracy": metrics["eval_accuracy"], "macro_f1": metrics["eval_f1"], "minutes": minutes}


def fastai_tokenizer(args, cache_dir: Path):
    from fastai.text.all import SentencePieceTokenizer

    if args.tokenizer_type == "sentencepiece":
        return SentencePieceTokenizer(lang=args.lang or "en", vocab_sz=args.sp_vocab_size, cache_dir=cache_dir)
    return None  # fastai's default: spaCy words


def run_fastai(args, frame, seed: int, workdir: Path) -> dict:
    """fastai's own pipeline (see the module doc), wall-clock minutes included."""
    import pandas as pd
    from fastai.text.all import (
        AWD_LSTM,
        CategoryBlock,
        ColReader,
        ColSplitter,
        DataBlock,
        TextBlock,
        awd_lstm_clas_config,
        awd_lstm_lm_config,
        language_model_learner,
        set_seed,
        text_classifier_learner,
    )

    size = SMOKE if args.smoke else SIZES
    path = workdir / f"fastai-seed{seed}"
    path.mkdir(parents=True, exist_ok=True)
    started = time.time()
    set_seed(seed, reproducible=True)
    tok = fastai_tokenizer(args, path / "tokenizer")
    # The language model reads every text (training and validation) and is validated on the validation texts.
    lm_frame = pd.concat([frame.assign(lm_valid=False), frame[frame.is_valid].assign(lm_valid=True)])
    lm_block = TextBlock.from_df("text", is_lm=True, tok=tok, seq_len=size["bptt"], n_workers=1)
    lm_data = DataBlock(blocks=lm_block, get_x=ColReader("text"), splitter=ColSplitter("lm_valid"))
    lm_loaders = lm_data.dataloaders(lm_frame, bs=size["batch"], seq_len=size["bptt"], path=path)
    lm_config = {**awd_lstm_lm_config, "emb_sz": size["emb"], "n_hid": size["hidden"], "n_layers": size["layers"]}
    lm = language_model_learner(lm_loaders, AWD_LSTM, config=lm_config, drop_mult=1.0, pretrained=False, path=path)
    with lm.no_bar(), lm.no_logging():
        lm.fit_one_cycle(size["lm_epochs"], size["lm_lr"])
    lm.save_encoder("encoder")

    clas_block = TextBlock.from_df("text", vocab=lm_loaders.vocab, tok=tok, seq_len=size["bptt"], n_workers=1)
    clas_data = DataBlock(
        blocks=(clas_block, CategoryBlock),
        get_x=ColReader("text"),
        get_y=ColReader("label"),
        splitter=ColSplitter("is_valid"),
    )
    loaders = clas_data.dataloaders(frame, bs=size["batch"], seq_len=size["bptt"], path=path)
    clas_config = {**awd_lstm_clas_config, "emb_sz": size["emb"], "n_hid": size["hidden"], "n_layers": size["layers"]}
    learn = text_classifier_learner(
        loaders, AWD_LSTM, config=clas_config, drop_mult=0.5, pretrained=False, seq_len=size["bptt"],
        max_len=size["max_len"], path=path,
    )  # fmt: skip
    learn.load_encoder("encoder")
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(1, 2e-2)
        learn.freeze_to(-2)
        learn.fit_one_cycle(1, slice(1e-2 / 2.6**4, 1e-2))
        learn.freeze_to(-3)
        learn.fit_one_cycle(1, slice(5e-3 / 2.6**4, 5e-3))
        learn.unfreeze()
        learn.fit_one_cycle(size["epochs"] - 3, slice(1e-3 / 2.6**4, 1e-3))
        probabilities, targets = learn.get_preds(ds_idx=1)
    minutes = (time.time() - started) / 60
    vocab = loaders.vocab[1]
    labels = [vocab[int(i)] for i in targets]
    predictions = [vocab[int(i)] for i in probabilities.argmax(dim=1)]
    return {**scores(labels, predictions), "minutes": minutes}


def summarize(runs: list[dict]) -> dict:
    summary = {"n": len(runs)}
    for key in ("accuracy", "macro_f1", "minutes"):
        values = [run[key] for run in runs]
        summary[key] = statistics.mean(values)
        summary[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return summary


def print_table(results: dict) -> None:
    print("\n| pipeline | seed | accuracy | macro F1 | minutes |\n|---|---|---|---|---|")
    for name, runs in results.items():
        for seed, run in sorted(runs.items(), key=lambda item: str(item[0])):
            print(f"| {name} | {seed} | {run['accuracy']:.4f} | {run['macro_f1']:.4f} | {run['minutes']:.1f} |")
        if len(runs) > 1:
            s = summarize(list(runs.values()))
            print(
                f"| **{name}** | mean of {s['n']} | {s['accuracy']:.4f} ± {s['accuracy_std']:.4f} | "
                f"{s['macro_f1']:.4f} ± {s['macro_f1_std']:.4f} | {s['minutes']:.1f} |"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train_file", type=Path, required=True, help="CSV with text, label and is_valid")
    parser.add_argument(
        "--frameworks", nargs="+", choices=("ours", "fastai", "tfidf"), default=["ours", "fastai", "tfidf"]
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--tokenizer_type", choices=("word", "sentencepiece"))
    parser.add_argument("--lang")
    parser.add_argument("--sp_vocab_size", type=int)
    parser.add_argument("--ours_args", help="more flags for run_ulmfit.py, e.g. '--classifier_epochs 16'")
    parser.add_argument("--workdir", type=Path, help="where the runs write their models (default: a temporary one)")
    parser.add_argument("--output", type=Path, help="JSON of every run, written as each ends; reruns skip those done")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and data (--quick), the first seed")
    parser.add_argument("--quiet", action="store_true", help="hide run_ulmfit.py's output")
    args = parser.parse_args(argv)
    if not args.train_file.is_file():
        parser.error(f"--train_file {args.train_file} not found")
    seeds = args.seeds[:1] if args.smoke else args.seeds
    frame = read_split(args.train_file, args.smoke)
    results = json.loads(args.output.read_text()) if args.output and args.output.is_file() else {}

    def record(name: str, seed, run: dict) -> None:
        results.setdefault(name, {})[str(seed)] = run
        print(f"{name} seed {seed}: {json.dumps(run)}", flush=True)
        if args.output:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(results, indent=2))

    print(f"{len(frame)} documents ({int(frame.is_valid.sum())} validation), {frame.label.nunique()} classes")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        if "tfidf" in args.frameworks and "tfidf_svm" not in results:
            for name, run in run_tfidf(frame).items():
                record(name, "-", run)
        for seed in seeds:
            for name in ("ours", "fastai"):
                if name in args.frameworks and str(seed) not in results.get(name, {}):
                    runner = run_ours if name == "ours" else lambda a, s, w: run_fastai(a, frame, s, w)
                    record(name, seed, runner(args, seed, workdir))
    print_table(results)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
