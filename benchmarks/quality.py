"""Classification quality, fastai 2.8 vs hf_bpt3c, trained from scratch side by side.

Usage (from the repository root):
    python benchmarks/quality.py                       # TREC-6, the IMDb sample, German news; seeds 0 1 2
    python benchmarks/quality.py --datasets trec --seeds 0 1 2
    python benchmarks/quality.py --batch_orders group_by_length sortish   # ours twice per seed, both orders
    python benchmarks/quality.py --datasets german --poolings window document --max_len 288
    python benchmarks/quality.py --smoke               # seconds: tiny sizes and data, every code path
    python benchmarks/quality.py --output runs/quality.json

For each dataset and seed, both frameworks get:
- the same tokens: `AwdLstmTokenizer.from_texts` on the training texts (word level for TREC-6 and IMDb; for the
  German articles fastai's SentencePiece tokenization, `model="sentencepiece", lang="de"`, whose ids equal
  fastai's `SentencePieceTokenizer`'s); fastai receives the token ids directly;
- the same sizes and the same initial weights: fastai's `get_text_classifier(AWD_LSTM, ...)` is built under the
  seed (no pretrained encoder: there is none to download here) and ours loads its weights, renamed by
  `hf_bpt3c.convert.fastai_to_hf_state_dict`;
- the same recipe: fastai's classifier dropouts (drop_mult 0.5), Adam(0.8/0.99, eps 1e-5) with decoupled weight
  decay 0.01 on every parameter, discriminative learning rates (/2.6 per layer group, fastai's
  `awd_lstm_clas_split` groups), one one-cycle schedule over all epochs (fastai's `fit_one_cycle`, moms
  0.8/0.7/0.8), gradual unfreezing (head first, one more group per epoch; Adam's state is kept, as ours does),
  AR/TAR 2/1, gradient clipping at norm 1 (Trainer's default), batches of similar lengths.
Each framework batches as designed: fastai's `SortedDL` with `pad_input_chunk`; ours `Trainer` with right padding
and `--batch_orders` (`sortish`, the scripts' default: `SortishDataset`, fastai's order; `group_by_length`: Trainer's).
Ours runs once per batch order and `--poolings` value (`window`: fastai's rule; `document`: every token pooled),
each from the same initial weights. The evaluation split is scored once at the end. Prints the accuracies per
seed, their means and the mean paired difference (ours - fastai) with its standard error.

The datasets are read from `shared/data` next to the repository: `trec/TREC.train` and
`trec/TREC.test` (the TREC question classification data, Li & Roth), `imdb_sample/texts.csv` (fastai's
`URLs.IMDB_SAMPLE`) and `german_news/texts.csv` (the 10kGNAD articles of DER STANDARD, 9 topics; the IMDb
sample's layout: `label`, `text`, `is_valid`).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from hf_bpt3c.training.scripts import BATCH_ORDERS, CLASSIFIER_POOLINGS

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT.parent / "shared" / "data"


@dataclass
class Setting:
    """One dataset's sizes and recipe (the same for both frameworks)."""

    dataset: str
    emb: int = 128
    hidden: int = 384
    layers: int = 2
    bptt: int = 72
    max_len: int = 1440
    epochs: int = 8
    lr: float = 1e-2
    batch_size: int = 32
    min_freq: int = 3
    max_train: int | None = None
    max_eval: int | None = None
    tokenizer: str = "word"  # or "sentencepiece" (fastai's SentencePieceTokenizer)
    lang: str = "en"


SETTINGS = {
    "trec": Setting("trec", emb=200, hidden=512, layers=3, epochs=8, lr=2e-2),
    "imdb": Setting("imdb", emb=128, hidden=384, layers=2, epochs=12, lr=1e-2),
    "german": Setting(
        "german", emb=128, hidden=384, layers=2, epochs=12, lr=1e-2, tokenizer="sentencepiece", lang="de"
    ),
}
SMOKE = dict(emb=16, hidden=24, layers=2, bptt=8, max_len=24, epochs=2, batch_size=8, min_freq=1)
SMOKE_DOCS = {"trec": (48, 24), "imdb": (24, 12), "german": (24, 12)}


# ----------------------------------------------------------------------------------------------------------------
# Data: (texts, labels) for the training and evaluation splits
# ----------------------------------------------------------------------------------------------------------------


def load_trec() -> tuple[list[str], list[str], list[str], list[str]]:
    """TREC-6: `COARSE:fine question` per line (latin-1); the class is the coarse label."""

    def read(name: str) -> tuple[list[str], list[str]]:
        lines = (DATA_DIR / "trec" / name).read_bytes().decode("latin-1").split("\n")
        rows = [line.split(" ", 1) for line in lines if line.strip()]
        return [text for _, text in rows], [label.split(":")[0] for label, _ in rows]

    train_texts, train_labels = read("TREC.train")
    eval_texts, eval_labels = read("TREC.test")
    return train_texts, train_labels, eval_texts, eval_labels


def load_split_csv(path: Path) -> tuple[list[str], list[str], list[str], list[str]]:
    """A `label`, `text`, `is_valid` CSV: rows with `is_valid` False train, True evaluate."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    train = [r for r in rows if r["is_valid"] != "True"]
    valid = [r for r in rows if r["is_valid"] == "True"]
    texts, labels = (lambda split: [r["text"] for r in split]), (lambda split: [r["label"] for r in split])
    return texts(train), labels(train), texts(valid), labels(valid)


LOADERS = {
    "trec": load_trec,
    "imdb": lambda: load_split_csv(DATA_DIR / "imdb_sample" / "texts.csv"),
    "german": lambda: load_split_csv(DATA_DIR / "german_news" / "texts.csv"),
}


@dataclass
class Encoded:
    """Token ids and class ids of both splits, the tokenizer and the class count."""

    train_ids: list[list[int]]
    train_labels: list[int]
    eval_ids: list[list[int]]
    eval_labels: list[int]
    tokenizer: object
    num_labels: int

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)


def encode(setting: Setting) -> Encoded:
    """Tokenize with a vocabulary built from the training texts (the same ids go to both frameworks)."""
    from hf_bpt3c import AwdLstmTokenizer

    train_texts, train_labels, eval_texts, eval_labels = LOADERS[setting.dataset]()
    train_texts, train_labels = train_texts[: setting.max_train], train_labels[: setting.max_train]
    eval_texts, eval_labels = eval_texts[: setting.max_eval], eval_labels[: setting.max_eval]
    if setting.tokenizer == "sentencepiece":
        tokenizer = AwdLstmTokenizer.from_texts(
            train_texts, model="sentencepiece", lang=setting.lang, min_freq=setting.min_freq
        )
    else:
        tokenizer = AwdLstmTokenizer.from_texts(train_texts, min_freq=setting.min_freq)
    classes = sorted(set(train_labels))
    class_id = {c: i for i, c in enumerate(classes)}
    known = [k for k, c in enumerate(eval_labels) if c in class_id]  # all of them, except in --smoke subsets
    return Encoded(
        train_ids=tokenizer(train_texts)["input_ids"],
        train_labels=[class_id[c] for c in train_labels],
        eval_ids=tokenizer([eval_texts[k] for k in known])["input_ids"],
        eval_labels=[class_id[eval_labels[k]] for k in known],
        tokenizer=tokenizer,
        num_labels=len(classes),
    )


# ----------------------------------------------------------------------------------------------------------------
# The two trainings
# ----------------------------------------------------------------------------------------------------------------


def initial_fastai_model(setting: Setting, data: Encoded, seed: int) -> torch.nn.Module:
    """fastai's classifier with its own initialisation under `seed` (both frameworks start from these weights)."""
    from fastai.text.all import AWD_LSTM, awd_lstm_clas_config, get_text_classifier

    config = dict(awd_lstm_clas_config, emb_sz=setting.emb, n_hid=setting.hidden, n_layers=setting.layers)
    torch.manual_seed(seed)
    return get_text_classifier(
        AWD_LSTM,
        data.vocab_size,
        data.num_labels,
        seq_len=setting.bptt,
        config=config,
        drop_mult=0.5,
        max_len=setting.max_len,
    )


def train_fastai(setting: Setting, data: Encoded, model: torch.nn.Module, seed: int) -> float:
    """fastai's `TextLearner` with the shared recipe; returns the evaluation accuracy."""
    from fastai.text.all import (
        Callback,
        CrossEntropyLossFlat,
        DataLoaders,
        GradientClip,
        SortedDL,
        TensorCategory,
        TensorText,
        TextLearner,
        accuracy,
        awd_lstm_clas_split,
        pad_input_chunk,
    )

    class GradualUnfreezing(Callback):
        """Head first, one more layer group per epoch, inside one `fit_one_cycle` (Adam's state is kept)."""

        order = 0

        def before_epoch(self):
            self.learn.opt.freeze_to(-(self.epoch + 1))

    def loader(ids: list[list[int]], labels: list[int], shuffle: bool) -> SortedDL:
        items = [(TensorText(torch.tensor(x)), TensorCategory(y)) for x, y in zip(ids, labels)]
        before_batch = partial(pad_input_chunk, pad_idx=1, pad_first=True, seq_len=setting.bptt)
        return SortedDL(
            items,
            res=[len(x) for x in ids],
            bs=setting.batch_size,
            shuffle=shuffle,
            drop_last=False,
            before_batch=before_batch,
        )

    torch.manual_seed(seed)
    np.random.seed(seed)
    dls = DataLoaders(
        loader(data.train_ids, data.train_labels, shuffle=True),
        loader(data.eval_ids, data.eval_labels, shuffle=False),
        device="cpu",
    )
    learn = TextLearner(
        dls,
        model,
        loss_func=CrossEntropyLossFlat(),
        metrics=accuracy,
        splitter=awd_lstm_clas_split,
        alpha=2.0,
        beta=1.0,
        moms=(0.8, 0.7, 0.8),
        wd=0.01,
        wd_bn_bias=True,  # as torch's AdamW in ours: decay on every parameter
        cbs=[GradientClip(1.0), GradualUnfreezing()],
    )
    n_groups = len(awd_lstm_clas_split(model))
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(setting.epochs, slice(setting.lr / 2.6 ** (n_groups - 1), setting.lr))
        return float(learn.validate()[1])


def train_ours(
    setting: Setting, data: Encoded, fastai_model: torch.nn.Module, seed: int, batch_order: str, pooling: str
) -> float:
    """`AwdLstmForSequenceClassification` on `Trainer` with `hf_bpt3c.training`, batches in `batch_order`, pooling
    `pooling`; returns the accuracy."""
    from transformers import DataCollatorWithPadding, PrinterCallback, Trainer, TrainingArguments, set_seed

    from hf_bpt3c import AwdLstmConfig, AwdLstmForSequenceClassification
    from hf_bpt3c.convert import config_kwargs_from_fastai, fastai_to_hf_state_dict
    from hf_bpt3c.training import (
        ActivationRegularizationCallback,
        GradualUnfreezingCallback,
        num_training_steps,
        ulmfit_optimizers,
    )
    from hf_bpt3c.training.data import SortishDataset

    state_dict = fastai_model.state_dict()
    config = AwdLstmConfig.for_classification(
        drop_mult=0.5,
        **config_kwargs_from_fastai(state_dict),
        bptt=setting.bptt,
        max_len=setting.max_len,
        pad_token_id=1,
        classifier_pooling=pooling,
    )
    model = AwdLstmForSequenceClassification(config)
    model.load_state_dict(fastai_to_hf_state_dict(state_dict))

    set_seed(seed)
    train = [{"input_ids": x, "labels": y} for x, y in zip(data.train_ids, data.train_labels)]
    evaluation = [{"input_ids": x, "labels": y} for x, y in zip(data.eval_ids, data.eval_labels)]
    if batch_order == "sortish":
        train = SortishDataset(train, [len(x) for x in data.train_ids], setting.batch_size, seed=seed)
    with tempfile.TemporaryDirectory() as output_dir:
        args = TrainingArguments(
            output_dir=output_dir,
            num_train_epochs=setting.epochs,
            per_device_train_batch_size=setting.batch_size,
            per_device_eval_batch_size=setting.batch_size,
            train_sampling_strategy="sequential" if batch_order == "sortish" else "group_by_length",
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            logging_strategy="no",
            seed=seed,
            use_cpu=True,
        )
        steps = num_training_steps(len(train), args)
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train,
            data_collator=DataCollatorWithPadding(data.tokenizer),
            optimizers=ulmfit_optimizers(model, setting.lr, steps, schedule="one_cycle"),
            callbacks=[ActivationRegularizationCallback(2.0, 1.0), GradualUnfreezingCallback()],
        )
        trainer.remove_callback(PrinterCallback)  # no per-run metrics dict in the table
        trainer.train()
        output = trainer.predict(evaluation)  # group_by_length reorders evaluation too: use its label_ids
    return float(np.mean(output.predictions.argmax(-1) == output.label_ids))


# ----------------------------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Result:
    dataset: str
    seed: int
    fastai: float
    fastai_minutes: float
    ours: dict[str, float]  # variant ("batch order/pooling") -> accuracy
    ours_minutes: dict[str, float]


def variant_name(batch_order: str, pooling: str) -> str:
    return f"{batch_order}/{pooling}"


def run_one(setting: Setting, data: Encoded, seed: int, variants: list[tuple[str, str]]) -> Result:
    start = time.time()
    fastai_start = initial_fastai_model(setting, data, seed)
    initial_state = {k: v.clone() for k, v in fastai_start.state_dict().items()}
    fastai_accuracy = train_fastai(setting, data, fastai_start, seed)
    fastai_minutes = (time.time() - start) / 60
    ours, ours_minutes = {}, {}
    for batch_order, pooling in variants:
        began = time.time()
        fastai_start.load_state_dict(initial_state)  # every run of ours starts from the same weights
        name = variant_name(batch_order, pooling)
        ours[name] = train_ours(setting, data, fastai_start, seed, batch_order, pooling)
        ours_minutes[name] = (time.time() - began) / 60
    return Result(setting.dataset, seed, fastai_accuracy, fastai_minutes, ours, ours_minutes)


def summary(results: list[Result]) -> dict:
    """Means and standard deviations, and per variant of ours the mean paired difference (ours - fastai) with its
    standard error."""
    n = len(results)

    def std(values):
        return statistics.stdev(values) if n > 1 else float("nan")

    fastai = [r.fastai for r in results]
    report = {"n_seeds": n, "fastai_mean": statistics.mean(fastai), "fastai_std": std(fastai), "ours": {}}
    for name in results[0].ours:
        ours = [r.ours[name] for r in results]
        diffs = [o - f for o, f in zip(ours, fastai)]
        report["ours"][name] = {
            "mean": statistics.mean(ours),
            "std": std(ours),
            "diff_mean": statistics.mean(diffs),
            "diff_sem": std(diffs) / n**0.5 if n > 1 else float("nan"),
            "minutes_mean": statistics.mean(r.ours_minutes[name] for r in results),
        }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--batch_orders", nargs="+", choices=BATCH_ORDERS, default=["sortish"])
    parser.add_argument("--poolings", nargs="+", choices=CLASSIFIER_POOLINGS, default=["window"])
    parser.add_argument("--epochs", type=int, help="override the epochs of every dataset")
    parser.add_argument("--max_len", type=int, help="override max_len (BPT3C's kept window) of every dataset")
    parser.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and data, one seed (seconds)")
    parser.add_argument("--output", type=Path, help="write the per-seed results and the summary as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = args.seeds[:1] if args.smoke else args.seeds
    variants = [(order, pooling) for order in args.batch_orders for pooling in args.poolings]
    names = [variant_name(*v) for v in variants]

    report = {}
    for name in args.datasets:
        setting = SETTINGS[name]
        if args.smoke:
            n_train, n_eval = SMOKE_DOCS[name]
            setting = replace(setting, **SMOKE, max_train=n_train, max_eval=n_eval)
        if args.epochs:
            setting = replace(setting, epochs=args.epochs)
        if args.max_len:
            setting = replace(setting, max_len=args.max_len)
        data = encode(setting)
        print(
            f"\n## {name}: {len(data.train_ids)} training / {len(data.eval_ids)} evaluation documents, "
            f"vocabulary {data.vocab_size} ({setting.tokenizer}), {data.num_labels} classes; emb {setting.emb} / "
            f"hidden {setting.hidden} / {setting.layers} layers, bptt {setting.bptt}, max_len {setting.max_len}, "
            f"{setting.epochs} epochs, lr {setting.lr}, batch {setting.batch_size}",
            flush=True,
        )
        print("| seed | fastai | " + " | ".join(f"ours {n}" for n in names) + " | minutes (fastai, ours) |")
        print("|---|---|" + "---|" * len(names) + "---|", flush=True)
        results = []
        for seed in seeds:
            r = run_one(setting, data, seed, variants)
            results.append(r)
            cells = " | ".join(f"{r.ours[n]:.4f} ({r.ours[n] - r.fastai:+.4f})" for n in names)
            minutes = ", ".join(f"{m:.1f}" for m in (r.fastai_minutes, *r.ours_minutes.values()))
            print(f"| {seed} | {r.fastai:.4f} | {cells} | {minutes} |", flush=True)
        s = summary(results)
        cells = " | ".join(
            f"{s['ours'][n]['mean']:.4f} ± {s['ours'][n]['std']:.4f} ({s['ours'][n]['diff_mean']:+.4f} ± "
            f"{s['ours'][n]['diff_sem']:.4f} s.e.)"
            for n in names
        )
        print(f"| mean of {s['n_seeds']} | {s['fastai_mean']:.4f} ± {s['fastai_std']:.4f} | {cells} | |", flush=True)
        report[name] = {"setting": asdict(setting), "results": [asdict(r) for r in results], "summary": s}
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
