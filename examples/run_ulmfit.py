#!/usr/bin/env python
"""ULMFiT end to end in one command: build the tokenizer from the training texts (`--vocab_from language_model`:
from every text the language model reads), train the AWD-LSTM language model on all texts (training and validation
texts, plus any unlabelled `--lm_extra_file` texts; no labels are used), train the BPT3C classifier from it,
evaluate, and save a folder that `pipeline("text-classification")` loads.

Writes into `--output_dir`: the classifier with its tokenizer and model card, `eval_results.json`
(`eval_accuracy`, `eval_f1`, ...), `training_curves.png`, and the language model in `language_model/` (with its
own `training_curves.png`). `--lr_find` runs fastai's learning-rate finder before each stage (`lr_find.png` in
each folder, suggestions printed); `--lm_lr auto` / `--classifier_lr auto` train at its `valley` suggestion.

The main job (fastai's IMDb sample: 800 training and 200 validation reviews; from scratch): with no data flags
the script downloads the sample once (`hf_bpt3c.training.data.imdb_sample`) and writes `runs/imdb`:
    python examples/run_ulmfit.py
or from a local copy of its texts.csv:
    python examples/run_ulmfit.py --train_file imdb_sample/texts.csv --split_column is_valid \\
        --text_column text --label_column label --output_dir runs/imdb --save_strategy no
From a pretrained language model (`hf-bpt3c fetch-fastai wt103-fwd --out wt103-fwd`, or one you pretrained with
run_language_modeling.py), the three ULMFiT stages: the target vocabulary built from the training texts and the
pretrained rows mapped onto it, the LM fine-tuned on all texts (one frozen epoch at --lm_frozen_lr, then --lm_epochs
at --lm_lr), the classifier:
    python examples/run_ulmfit.py --model_name_or_path wt103-fwd --train_file ... (as above)
ULMFiT's forward + backward ensemble: `--bidirectional` trains both directions (into `forward/` and `backward/`,
sharing one tokenizer), evaluates each and the mean of their probabilities, and writes the three to
`eval_results.json` (`forward_accuracy`, `backward_accuracy`, `ensemble_accuracy`, ...); `--backwards` trains only
the backward one. Add `--quick` for a small smoke-size run (CI).
The best accuracy on a CPU (docs/accuracy.md: 0.828 on the IMDb sample in under 25 minutes on two AVX-512 cores):
the language model also reads unlabelled texts of the same domain, here 25,000 IMDb reviews for one epoch, both ways:
    python examples/run_ulmfit.py --train_file ... (as above) --lm_extra_file unsup.jsonl \
        --lm_extra_max_texts 25000 --lm_epochs 1 --bidirectional
`--do_predict --test_file FILE` writes `predictions.csv` into `--output_dir` as run_classification.py does (with
`--bidirectional`: the mean of the two classifiers' probabilities). `--problem_type multi_label_classification`
(`--label_delimiter ';'` or several 0/1 `--label_column a,b,c`) and `--problem_type regression` as in
run_classification.py; with `--bidirectional` the ensemble averages the sigmoid probabilities, or the values.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# PyTorch's 2 MB pages for its large CPU tensors, set before torch allocates any: the language model's logits
# and their gradient are allocated every step, and with 4 KB pages a third of the CPU time goes to page faults
# (benchmarks/lm_speed.py). Set THP_MEM_ALLOC_ENABLE=0 to keep 4 KB pages.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import datasets
import numpy as np
import transformers
from transformers import EvalPrediction, HfArgumentParser, TrainingArguments, set_seed

from hf_bpt3c import AwdLstmEnsembleForSequenceClassification, AwdLstmForSequenceClassification, AwdLstmTokenizer
from hf_bpt3c.training.data import imdb_sample
from hf_bpt3c.training.scripts import (
    CARD_METRICS,
    TOKENIZER_TYPES,
    ClassifierArguments,
    DataArguments,
    LabelArguments,
    LanguageModelArguments,
    batch_order_field,
    build_tokenizer,
    checked_start,
    classifier_pooling_field,
    early_stopping_holdout_field,
    early_stopping_patience_field,
    label_columns,
    load_splits,
    mean_outputs,
    metrics_for,
    model_targets,
    predicted_delimiter,
    read_data_file,
    read_test_texts,
    report,
    train_classifier,
    train_language_model,
    training_defaults,
    write_predictions,
)

logger = logging.getLogger(__name__)
DIRECTIONS = ("forward", "backward")
VOCAB_SOURCES = ("training", "language_model")
METRICS_DIR = Path(__file__).resolve().parent / "metrics"  # local `evaluate` modules: accuracy, f1, multilabel, ...


@dataclass
class UlmfitArguments(LabelArguments):
    """Sizes and the two stages' recipe (defaults: the main job's)."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Pretrained LM to start from (`hf-bpt3c fetch-fastai wt103-fwd --out DIR`); default: scratch."
        },
    )
    keep_vocab: bool = field(default=False, metadata={"help": "Keep the pretrained vocabulary (no adaptation)."})
    test_file: str | None = field(
        default=None,
        metadata={
            "help": "CSV or JSON lines file to predict with --do_predict (--text_column): predictions.csv in "
            "output_dir (with --bidirectional: the ensemble's)."
        },
    )
    quick: bool = field(default=False, metadata={"help": "Tiny sizes and data for a smoke run (about a minute)."})
    max_vocab: int = field(default=60000, metadata={"help": "Vocabulary size."})
    vocab_from: str = field(
        default="training",
        metadata={
            "help": "Texts the vocabulary is built from: 'training' (the labelled training texts) or 'language_model' "
            "(every text the language model reads: training, validation and --lm_extra_file texts, as fastai's "
            "ULMFiT builds its LM's vocabulary).",
            "choices": VOCAB_SOURCES,
        },
    )
    min_freq: int = field(default=3, metadata={"help": "Minimum count of a token kept in the vocabulary."})
    tokenizer_type: str | None = field(
        default=None,
        metadata={
            "help": "'word' (fastai's spaCy English) or 'sentencepiece' (fastai's SentencePieceTokenizer, any "
            "language); default: the pretrained model's, else 'word'.",
            "choices": TOKENIZER_TYPES,
        },
    )
    lang: str | None = field(
        default=None, metadata={"help": "Language of the texts (e.g. de); default: the pretrained model's, else en."}
    )
    sp_vocab_size: int | None = field(
        default=None, metadata={"help": "SentencePiece pieces to train (default: fastai's heuristic)."}
    )
    embedding_size: int | None = field(default=None, metadata={"help": "Embedding size from scratch (128)."})
    hidden_size: int | None = field(default=None, metadata={"help": "LSTM hidden size from scratch (384)."})
    num_hidden_layers: int | None = field(default=None, metadata={"help": "LSTM layers from scratch (2)."})
    bptt: int | None = field(
        default=None, metadata={"help": "Window (LM) and chunk (classifier) length (72, or the checkpoint's)."}
    )
    max_len: int = field(default=1440, metadata={"help": "Tokens at each document's end that get gradient."})
    classifier_pooling: str = classifier_pooling_field()
    batch_order: str = batch_order_field()
    lm_epochs: float | None = field(
        default=None, metadata={"help": "Language-model epochs (12 from scratch, 8 fine-tuning after the frozen one)."}
    )
    lm_lr: str | None = field(
        default=None,
        metadata={
            "help": "Language-model learning rate, top group (1e-2 from scratch, 5e-3 fine-tuning), or 'auto': the "
            "LR finder's valley suggestion."
        },
    )
    lm_frozen_lr: float = field(default=2e-2, metadata={"help": "LM fine-tuning: lr of the frozen epochs."})
    lm_freeze_epochs: int = field(
        default=1, metadata={"help": "LM fine-tuning: epochs training only the embedding/decoder first."}
    )
    lm_batch_size: int = field(default=32, metadata={"help": "Language-model streams."})
    no_lm_shuffle: bool = field(
        default=False,
        metadata={"help": "Read the LM's texts in the same order every epoch (default: a new order each epoch)."},
    )
    lm_extra_file: str | None = field(
        default=None,
        metadata={
            "help": "Unlabelled texts of the target domain (CSV, JSON lines or .txt; --text_column) added to the "
            "language model's training texts, as ULMFiT fine-tunes its IMDb LM on 50,000 unlabelled reviews."
        },
    )
    lm_extra_max_texts: int | None = field(default=None, metadata={"help": "Use the first N texts of it."})
    classifier_epochs: float = field(default=12, metadata={"help": "Classifier epochs."})
    classifier_lr: str = field(
        default="1e-2", metadata={"help": "Classifier learning rate (head), or 'auto': the LR finder's valley."}
    )
    lr_find: bool = field(
        default=False,
        metadata={"help": "Run fastai's LR finder before each stage: lr_find.png in its folder, suggestions printed."},
    )
    classifier_batch_size: int = field(default=32, metadata={"help": "Documents per classifier batch."})
    early_stopping_holdout: int = early_stopping_holdout_field()
    early_stopping_patience: int | None = early_stopping_patience_field()
    backwards: bool = field(
        default=False, metadata={"help": "Train a backward model (reads each text right to left); from scratch."}
    )
    bidirectional: bool = field(
        default=False,
        metadata={
            "help": "Train a forward and a backward model (into forward/ and backward/, one tokenizer) and evaluate "
            "each and the average of their probabilities (ULMFiT's best numbers); all three in eval_results.json."
        },
    )


FROM_SCRATCH = dict(embedding_size=128, hidden_size=384, num_hidden_layers=2, bptt=72, lm_epochs=12, lm_lr=1e-2)
FINE_TUNING = dict(lm_epochs=8, lm_lr=5e-3)  # tuned on the IMDb sample (docs/transfer.md)
QUICK = dict(
    embedding_size=32,
    hidden_size=64,
    num_hidden_layers=2,
    bptt=24,
    max_len=96,
    lm_epochs=1,
    classifier_epochs=2,
    lm_batch_size=16,
    classifier_batch_size=16,
)
QUICK_RECIPE = ("lm_epochs", "classifier_epochs", "lm_batch_size", "classifier_batch_size")  # sizes: the checkpoint's


def with_defaults(args: UlmfitArguments) -> UlmfitArguments:
    """Fill what the user left unset: the main job's sizes and LM recipe from scratch, the fine-tuning recipe from a
    pretrained LM (whose sizes and bptt are its own); `--quick` imposes its tiny sizes and epochs."""
    if args.model_name_or_path is None:
        defaults = {**FROM_SCRATCH, **(QUICK if args.quick else {})}
    else:
        if args.keep_vocab and args.quick:
            raise ValueError("--quick builds a small vocabulary; it cannot be combined with --keep_vocab")
        defaults = {**FINE_TUNING, **({k: QUICK[k] for k in QUICK_RECIPE} if args.quick else {})}
    quick = QUICK if args.quick else {}
    unset = {name: value for name, value in defaults.items() if getattr(args, name) is None or name in quick}
    return dataclasses.replace(args, **unset)


def main_job_defaults(data_args: DataArguments, training_args: TrainingArguments):
    """With no data flags, the main job: fastai's IMDb sample (downloaded once into the cache,
    `hf_bpt3c.training.data.imdb_sample`; its `is_valid` rows are the validation set) into `runs/imdb` unless
    `--output_dir` is given."""
    if data_args.train_file is not None or data_args.dataset_name is not None:
        return data_args, training_args
    texts = imdb_sample()
    print(f"no data given: the main job on fastai's IMDb sample ({texts})")
    data_args = dataclasses.replace(data_args, train_file=str(texts), split_column=data_args.split_column or "is_valid")
    if not any(arg == "--output_dir" or arg.startswith("--output_dir=") for arg in sys.argv[1:]):
        training_args = dataclasses.replace(training_args, output_dir=os.path.join("runs", "imdb"))
    return data_args, training_args


def extra_texts(args: UlmfitArguments, column: str) -> list[str]:
    """The first `--lm_extra_max_texts` texts of `--lm_extra_file` (none without it)."""
    if args.lm_extra_file is None:
        return []
    extra = read_data_file(args.lm_extra_file, "--lm_extra_file", column)
    if column not in extra.column_names:
        raise ValueError(f"--lm_extra_file {args.lm_extra_file} has no column {column!r} (--text_column)")
    if args.lm_extra_max_texts is not None:
        extra = extra.select(range(min(args.lm_extra_max_texts, len(extra))))
    texts = [text for text in extra[column] if isinstance(text, str) and text.strip()]
    if len(texts) < len(extra):
        print(f"--lm_extra_file: {len(extra) - len(texts)} rows without text skipped")
    print(f"language model: {len(texts)} more texts from {args.lm_extra_file}")
    return texts


def vocabulary_texts(args: UlmfitArguments, splits, lm_texts: list[str], data_args) -> datasets.Dataset:
    """The texts the vocabulary is built from (`--vocab_from`), as a dataset with the text column."""
    if args.vocab_from == "training":
        return splits["train"].select_columns([data_args.text_column])
    return datasets.Dataset.from_dict({data_args.text_column: lm_texts})


def target_tokenizer(args: UlmfitArguments, data: datasets.Dataset) -> AwdLstmTokenizer:
    """The vocabulary of `data`'s texts (`--vocab_from`): a new `--tokenizer_type` tokenizer for `--lang`, or the
    pretrained model's splitting (its SentencePiece model kept) with the pieces of these texts."""
    pretrained = AwdLstmTokenizer.from_pretrained(args.model_name_or_path) if args.model_name_or_path else None
    settings = LanguageModelArguments(
        max_vocab=args.max_vocab,
        min_freq=args.min_freq,
        tokenizer_type=args.tokenizer_type,
        lang=args.lang,
        sp_vocab_size=args.sp_vocab_size,
    )
    tokenizer = build_tokenizer(data, data.column_names[0], settings, pretrained=pretrained)
    print(f"vocabulary: {len(tokenizer)} tokens ({tokenizer.tokenizer_type}, {tokenizer.init_kwargs.get('lang')})")
    return tokenizer


def stage_args(base: TrainingArguments, output_dir: str, epochs: float, batch_size: int) -> TrainingArguments:
    """The user's TrainingArguments for one stage, with its own folder, epochs and batch size."""
    return dataclasses.replace(
        base,
        output_dir=output_dir,
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
    )


def main() -> None:
    parser = HfArgumentParser((UlmfitArguments, DataArguments, TrainingArguments))
    parser.set_defaults(**training_defaults())
    args, data_args, training_args = parser.parse_args_into_dataclasses()
    args = with_defaults(args)
    data_args, training_args = main_job_defaults(data_args, training_args)
    if (args.backwards or args.bidirectional) and args.model_name_or_path is not None:
        raise ValueError(
            "--backwards/--bidirectional train from scratch: a pretrained LM reads in its own direction "
            "(fine-tune a backward one, e.g. wt103-bwd, with --model_name_or_path alone)"
        )
    if args.keep_vocab and args.vocab_from != "training":
        raise ValueError("--keep_vocab keeps the pretrained vocabulary: it cannot be combined with --vocab_from")
    if training_args.do_predict and not args.test_file:
        raise ValueError("--do_predict needs --test_file (the texts to predict)")
    if training_args.do_predict:
        read_test_texts(args.test_file, data_args.text_column)  # a bad test file is refused before any training
    label_columns(args)  # argument errors before any work
    if args.model_name_or_path:
        checked_start(args.model_name_or_path, "language model")
    if args.quick:
        data_args.max_train_samples = data_args.max_train_samples or 160
        data_args.max_eval_samples = data_args.max_eval_samples or 80
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    transformers.utils.logging.set_verbosity_warning()
    set_seed(training_args.seed)
    start = time.time()

    splits = load_splits(data_args)
    train_texts = list(splits["train"][data_args.text_column])
    eval_texts = list(splits["validation"][data_args.text_column])
    print(f"{len(train_texts)} training and {len(eval_texts)} validation documents")
    lm_texts = train_texts + eval_texts + extra_texts(args, data_args.text_column)
    tokenizer = None if args.keep_vocab else target_tokenizer(args, vocabulary_texts(args, splits, lm_texts, data_args))
    if not args.bidirectional:
        metrics = train_direction(args, data_args, training_args, splits, lm_texts, tokenizer, training_args.output_dir)
        print(f"{report(metrics, args.problem_type)} in {(time.time() - start) / 60:.1f} min")
        print(f"classifier saved in {training_args.output_dir}: pipeline('text-classification', model=...) loads it")
        write_test_predictions(args, data_args, training_args)
        return
    results = {}
    for direction in DIRECTIONS:
        set_seed(training_args.seed)  # each direction as a run of its own with this seed
        began = time.time()
        out = os.path.join(training_args.output_dir, direction)
        direction_args = dataclasses.replace(args, backwards=direction == "backward")
        metrics = train_direction(direction_args, data_args, training_args, splits, lm_texts, tokenizer, out)
        results.update({f"{direction}_{k.removeprefix('eval_')}": v for k, v in metrics.items()})
        results[f"{direction}_minutes"] = round((time.time() - began) / 60, 2)
    results.update(evaluate_ensemble(training_args.output_dir, splits, data_args.text_column, args))
    if training_args.should_save:
        with open(os.path.join(training_args.output_dir, "eval_results.json"), "w") as f:
            json.dump(results, f, indent=2)
        save_ensemble(training_args.output_dir, results, args)
    name = CARD_METRICS[args.problem_type][0]
    shown = ", ".join(f"{d} {results[f'{d}_{name}']:.4f}" for d in (*DIRECTIONS, "ensemble"))
    print(f"validation {name}: {shown} in {(time.time() - start) / 60:.1f} min")
    write_test_predictions(args, data_args, training_args)


def train_direction(args, data_args, training_args, splits, lm_texts: list[str], tokenizer, output_dir: str) -> dict:
    """The language model on `lm_texts` (in `output_dir/language_model`) then the classifier (in `output_dir`),
    reading forwards or, with `args.backwards`, backwards. Returns the classifier's validation metrics."""
    direction = "backward " if args.backwards else ""
    print(f"{direction}language model: from {args.model_name_or_path or 'scratch'}")
    lm_dir = os.path.join(output_dir, "language_model")
    lm_args = LanguageModelArguments(
        model_name_or_path=args.model_name_or_path,
        keep_vocab=args.keep_vocab,
        embedding_size=args.embedding_size,
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_hidden_layers,
        bptt=args.bptt,
        backwards=True if args.backwards else None,
        lr=args.lm_lr,
        lr_find=args.lr_find,
        frozen_lr=args.lm_frozen_lr,
        freeze_epochs=args.lm_freeze_epochs if args.model_name_or_path else 0,
        no_lm_shuffle=args.no_lm_shuffle,
    )
    lm_training = stage_args(training_args, lm_dir, args.lm_epochs, args.lm_batch_size)
    eval_texts = list(splits["validation"][data_args.text_column])
    lm, tokenizer, lm_metrics = train_language_model(lm_args, lm_training, lm_texts, eval_texts, tokenizer)
    print(f"{direction}language model: perplexity {lm_metrics['perplexity']:.1f} on the validation texts")

    classifier_args = ClassifierArguments(
        model_name_or_path=lm_dir,
        label_column=args.label_column,
        problem_type=args.problem_type,
        label_delimiter=args.label_delimiter,
        bptt=lm.config.bptt,
        max_len=args.max_len,
        classifier_pooling=args.classifier_pooling,
        batch_order=args.batch_order,
        lr=args.classifier_lr,
        lr_find=args.lr_find,
        early_stopping_holdout=args.early_stopping_holdout,
        early_stopping_patience=args.early_stopping_patience,
    )
    classifier_training = stage_args(training_args, output_dir, args.classifier_epochs, args.classifier_batch_size)
    _, metrics = train_classifier(
        classifier_args, classifier_training, splits, data_args.text_column, tokenizer, metrics_dir=METRICS_DIR
    )
    return metrics


def evaluate_ensemble(output_dir: str, splits, text_column: str, args: UlmfitArguments) -> dict:
    """The validation metrics of the mean of the forward and backward classifiers' probabilities (regression: of
    their predicted values), e.g. `ensemble_accuracy`, `ensemble_f1`."""
    models = [AwdLstmForSequenceClassification.from_pretrained(os.path.join(output_dir, d)) for d in DIRECTIONS]
    tokenizer = AwdLstmTokenizer.from_pretrained(os.path.join(output_dir, "forward"))
    texts = list(splits["validation"][text_column])
    started = time.time()
    outputs = mean_outputs(models, tokenizer, texts)
    targets = model_targets(models[0].config, args)
    references = np.asarray(targets.encode(splits["validation"], "validation"))
    compute = metrics_for(targets.problem_type, METRICS_DIR, probabilities=True)
    metrics = compute(EvalPrediction(predictions=outputs, label_ids=references))
    return {**{f"ensemble_{k}": v for k, v in metrics.items()}, "ensemble_seconds": round(time.time() - started, 2)}


def save_ensemble(output_dir: str, results: dict, args: UlmfitArguments) -> None:
    """The forward + backward ensemble as one model at the top of `output_dir` (with the tokenizer and a model
    card giving both directions' metrics and the ensemble's): `AutoModelForSequenceClassification`, `pipeline`,
    `push_to_hub`, `export-onnx` and `quantize_for_cpu` take the folder itself."""
    members = [AwdLstmForSequenceClassification.from_pretrained(os.path.join(output_dir, d)) for d in DIRECTIONS]
    ensemble = AwdLstmEnsembleForSequenceClassification.from_members(members)
    names = CARD_METRICS[args.problem_type]
    ensemble.model_card_info = {
        "eval_results": {
            **{name: results[f"ensemble_{name}"] for name in names},
            **{f"{d}_{name}": results[f"{d}_{name}"] for d in DIRECTIONS for name in names},
            "split": "validation",
            "task": "text-classification",
        },
        "training": "ULMFiT's forward + backward ensemble (`run_ulmfit.py --bidirectional`): a language model and a "
        "BPT3C classifier trained in each direction (in `forward/` and `backward/`); the ensemble averages their "
        "probabilities.",
    }
    ensemble.save_pretrained(output_dir)
    AwdLstmTokenizer.from_pretrained(os.path.join(output_dir, "forward")).save_pretrained(output_dir)
    print(f"ensemble saved in {output_dir}: pipeline('text-classification', model=...) loads it")


def write_test_predictions(args: UlmfitArguments, data_args, training_args: TrainingArguments) -> None:
    """With `--do_predict`: `predictions.csv` in the output folder for `--test_file`, from the classifier, or with
    `--bidirectional` from the mean of the forward and backward classifiers."""
    if not (training_args.do_predict and training_args.should_save):
        return
    out = training_args.output_dir
    folders = [os.path.join(out, d) for d in DIRECTIONS] if args.bidirectional else [out]
    models = [AwdLstmForSequenceClassification.from_pretrained(folder) for folder in folders]
    tokenizer = AwdLstmTokenizer.from_pretrained(folders[0])
    path = os.path.join(out, "predictions.csv")
    batch_size, delimiter = args.classifier_batch_size, predicted_delimiter(args)
    outputs = write_predictions(models, tokenizer, args.test_file, data_args.text_column, path, batch_size, delimiter)
    source = "the forward + backward ensemble" if args.bidirectional else "the classifier"
    print(f"predictions of {source} for {len(outputs)} texts of {args.test_file} written to {path}")


if __name__ == "__main__":
    sys.exit(main())
