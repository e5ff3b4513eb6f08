#!/usr/bin/env python
"""ULMFiT end to end in one command: build the tokenizer from the training texts, train the AWD-LSTM language
model on all texts (training and validation texts; no labels are used), train the BPT3C classifier from it,
evaluate, and save a folder that `pipeline("text-classification")` loads.

Writes into `--output_dir`: the classifier with its tokenizer and model card, `eval_results.json`
(`eval_accuracy`, `eval_f1`, ...), and the language model in `language_model/`.

The main job (IMDb sample: 800 training and 200 validation reviews, from scratch, 2 CPU cores):
    python examples/run_ulmfit.py --train_file ../shared/data/imdb_sample/texts.csv --split_column is_valid \\
        --text_column text --label_column label --output_dir runs/imdb --save_strategy no
Add `--quick` for a small smoke-size run (CI).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from dataclasses import dataclass, field

import transformers
from run_classification import ClassifierArguments, train_classifier
from run_language_modeling import DataArguments, LanguageModelArguments, load_splits, train_language_model
from transformers import HfArgumentParser, TrainingArguments, set_seed

from hf_bpt3c import AwdLstmTokenizer

logger = logging.getLogger(__name__)


@dataclass
class UlmfitArguments:
    """Sizes and the two stages' recipe (defaults: the main job's, sized for 15 minutes on 2 CPU cores)."""

    label_column: str = field(default="label", metadata={"help": "Column holding the class."})
    quick: bool = field(default=False, metadata={"help": "Tiny sizes and data for a smoke run (about a minute)."})
    max_vocab: int = field(default=60000, metadata={"help": "Vocabulary size."})
    min_freq: int = field(default=3, metadata={"help": "Minimum count of a word kept in the vocabulary."})
    embedding_size: int = field(default=128, metadata={"help": "Embedding size."})
    hidden_size: int = field(default=384, metadata={"help": "LSTM hidden size."})
    num_hidden_layers: int = field(default=2, metadata={"help": "LSTM layers."})
    bptt: int = field(default=72, metadata={"help": "Window (LM) and chunk (classifier) length."})
    max_len: int = field(default=1440, metadata={"help": "Tokens at each document's end that get gradient."})
    lm_epochs: float = field(default=12, metadata={"help": "Language-model epochs."})
    lm_lr: float = field(default=1e-2, metadata={"help": "Language-model learning rate (top group)."})
    lm_batch_size: int = field(default=32, metadata={"help": "Language-model streams."})
    classifier_epochs: float = field(default=12, metadata={"help": "Classifier epochs."})
    classifier_lr: float = field(default=1e-2, metadata={"help": "Classifier learning rate (head)."})
    classifier_batch_size: int = field(default=32, metadata={"help": "Documents per classifier batch."})


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
    args, data_args, training_args = parser.parse_args_into_dataclasses()
    if args.quick:
        args = dataclasses.replace(args, **QUICK)
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
    tokenizer = AwdLstmTokenizer.from_texts(train_texts, max_vocab=args.max_vocab, min_freq=args.min_freq)
    print(f"vocabulary: {len(tokenizer)} tokens")

    lm_dir = os.path.join(training_args.output_dir, "language_model")
    lm_args = LanguageModelArguments(
        embedding_size=args.embedding_size,
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_hidden_layers,
        bptt=args.bptt,
        lr=args.lm_lr,
    )
    lm_training = stage_args(training_args, lm_dir, args.lm_epochs, args.lm_batch_size)
    _, _, lm_metrics = train_language_model(lm_args, lm_training, train_texts + eval_texts, eval_texts, tokenizer)
    print(f"language model: perplexity {lm_metrics['perplexity']:.1f} on the validation texts")

    classifier_args = ClassifierArguments(
        model_name_or_path=lm_dir,
        label_column=args.label_column,
        bptt=args.bptt,
        max_len=args.max_len,
        lr=args.classifier_lr,
    )
    classifier_training = stage_args(
        training_args, training_args.output_dir, args.classifier_epochs, args.classifier_batch_size
    )
    _, metrics = train_classifier(classifier_args, classifier_training, splits, data_args.text_column, tokenizer)
    minutes = (time.time() - start) / 60
    accuracy, f1 = metrics["eval_accuracy"], metrics["eval_f1"]
    print(f"validation accuracy: {accuracy:.4f} (macro F1 {f1:.4f}) in {minutes:.1f} min")
    print(f"classifier saved in {training_args.output_dir}: pipeline('text-classification', model=...) loads it")


if __name__ == "__main__":
    sys.exit(main())
