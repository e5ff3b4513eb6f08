#!/usr/bin/env python
"""Train or fine-tune an AWD-LSTM language model (ULMFiT stages 1 and 2) with `Trainer`, and report perplexity.

Documents are concatenated into `per_device_train_batch_size` contiguous streams read in `bptt`-token windows,
with the LSTM state carried from batch to batch (fastai's `LMDataLoader`). The recipe is fastai's: AdamW with
betas (0.8, 0.99), discriminative learning rates (/2.6 per layer group), one-cycle or slanted triangular
schedule, AR/TAR regularisation, and optionally training only the embedding/decoder group first.

Examples:
    python examples/run_language_modeling.py --train_file texts.csv --text_column text --output_dir lm \\
        --num_train_epochs 5 --per_device_train_batch_size 32
    python examples/run_language_modeling.py --model_name_or_path ulmfit-wt103-fwd --train_file my.jsonl \\
        --freeze_epochs 1 --lr 2e-3 --output_dir my-lm     # fine-tune a converted pretrained LM
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from dataclasses import dataclass, field

import datasets
import transformers
from transformers import HfArgumentParser, Trainer, TrainingArguments, set_seed

from hf_bpt3c import AwdLstmConfig, AwdLstmForCausalLM, AwdLstmTokenizer
from hf_bpt3c.data import LMStreamDataset, StreamStateCallback
from hf_bpt3c.training import (
    ActivationRegularizationCallback,
    GradualUnfreezingCallback,
    layer_groups,
    num_training_steps,
    ulmfit_optimizers,
)

logger = logging.getLogger(__name__)


@dataclass
class DataArguments:
    """Where the texts come from: local CSV/JSON(L) files or a `datasets` name."""

    train_file: str | None = field(default=None, metadata={"help": "CSV, JSON lines or .txt file of training texts."})
    validation_file: str | None = field(default=None, metadata={"help": "CSV or JSON lines file for evaluation."})
    dataset_name: str | None = field(default=None, metadata={"help": "A `datasets` name instead of files."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "The dataset's configuration."})
    text_column: str = field(default="text", metadata={"help": "Column holding the text."})
    split_column: str | None = field(
        default=None, metadata={"help": "Boolean column marking validation rows of the training file (is_valid)."}
    )
    validation_split_percentage: int = field(
        default=10, metadata={"help": "Share of the training rows held out when no validation data is given."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most this many training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use at most this many validation rows."})


@dataclass
class LanguageModelArguments:
    """The model, its tokenizer and the ULMFiT recipe."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "LM checkpoint to fine-tune."})
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer folder (default: the checkpoint's, or built from the texts)."}
    )
    max_vocab: int = field(default=60000, metadata={"help": "Vocabulary size when the tokenizer is built."})
    min_freq: int = field(default=3, metadata={"help": "Minimum count of a word kept in a built vocabulary."})
    embedding_size: int = field(default=400, metadata={"help": "Embedding size of a new model."})
    hidden_size: int = field(default=1152, metadata={"help": "LSTM hidden size of a new model."})
    num_hidden_layers: int = field(default=3, metadata={"help": "LSTM layers of a new model."})
    bptt: int = field(default=72, metadata={"help": "Tokens per window (back-propagation through time)."})
    drop_mult: float = field(default=1.0, metadata={"help": "Multiplier of fastai's LM dropouts."})
    lr: float = field(default=2e-3, metadata={"help": "Learning rate of the top layer group."})
    schedule: str = field(default="one_cycle", metadata={"help": "'one_cycle' (fastai) or 'stlr' (ULMFiT paper)."})
    freeze_epochs: int = field(default=0, metadata={"help": "Epochs training only the embedding/decoder first."})
    ar_alpha: float = field(default=2.0, metadata={"help": "Activation regularisation (0 switches it off)."})
    tar_beta: float = field(default=1.0, metadata={"help": "Temporal activation regularisation (0: off)."})
    backwards: bool = field(default=False, metadata={"help": "Train a backward LM (text read right to left)."})


def load_splits(data_args: DataArguments) -> datasets.DatasetDict:
    """A DatasetDict with `train` and `validation`, from files or a dataset name."""
    if data_args.dataset_name:
        raw = datasets.load_dataset(data_args.dataset_name, data_args.dataset_config_name)
    else:
        if not data_args.train_file:
            raise ValueError("give --train_file (CSV or JSON lines) or --dataset_name")
        files = {"train": data_args.train_file}
        if data_args.validation_file:
            files["validation"] = data_args.validation_file
        extension = os.path.splitext(data_args.train_file)[1].lstrip(".")
        builder = {"json": "json", "jsonl": "json", "txt": "text"}.get(extension, "csv")
        raw = datasets.load_dataset(builder, data_files=files)  # a .txt file: one text per line, column "text"
    if data_args.split_column:
        column = data_args.split_column
        is_valid = lambda row: str(row[column]).strip().lower() in ("true", "1", "yes")  # noqa: E731
        train = raw["train"]
        raw = datasets.DatasetDict(train=train.filter(lambda row: not is_valid(row)), validation=train.filter(is_valid))
    elif "validation" not in raw:
        held_out = raw["train"].train_test_split(test_size=data_args.validation_split_percentage / 100, seed=0)
        raw = datasets.DatasetDict(train=held_out["train"], validation=held_out["test"])
    for split, limit in (("train", data_args.max_train_samples), ("validation", data_args.max_eval_samples)):
        if limit is not None:
            raw[split] = raw[split].select(range(min(limit, len(raw[split]))))
    return raw


def load_or_build_tokenizer(name: str | None, texts: list[str], max_vocab: int, min_freq: int) -> AwdLstmTokenizer:
    """The tokenizer saved in `name`, or a fastai-style word vocabulary built from `texts`."""
    if name:
        return AwdLstmTokenizer.from_pretrained(name)
    logger.info("building a vocabulary from %d texts (max_vocab=%d, min_freq=%d)", len(texts), max_vocab, min_freq)
    return AwdLstmTokenizer.from_texts(texts, max_vocab=max_vocab, min_freq=min_freq)


def train_language_model(
    model_args: LanguageModelArguments,
    training_args: TrainingArguments,
    train_texts: list[str],
    eval_texts: list[str],
    tokenizer: AwdLstmTokenizer | None = None,
) -> tuple[AwdLstmForCausalLM, AwdLstmTokenizer, dict]:
    """Train the LM on `train_texts`, evaluate on `eval_texts`, save model and tokenizer to `output_dir`."""
    if tokenizer is None:
        tokenizer_name = model_args.tokenizer_name or model_args.model_name_or_path
        tokenizer = load_or_build_tokenizer(tokenizer_name, train_texts, model_args.max_vocab, model_args.min_freq)
    if model_args.model_name_or_path:
        model = AwdLstmForCausalLM.from_pretrained(model_args.model_name_or_path)
    else:
        config = AwdLstmConfig.for_language_model(
            drop_mult=model_args.drop_mult,
            vocab_size=len(tokenizer),
            embedding_size=model_args.embedding_size,
            hidden_size=model_args.hidden_size,
            num_hidden_layers=model_args.num_hidden_layers,
            bptt=model_args.bptt,
            backwards=model_args.backwards,
        )
        model = AwdLstmForCausalLM(config)

    def streams(texts: list[str], batch_size: int) -> LMStreamDataset:
        ids = tokenizer(texts)["input_ids"]
        return LMStreamDataset(
            ids, batch_size, model_args.bptt, world_size=training_args.world_size, backwards=model_args.backwards
        )

    train_data = streams(train_texts, training_args.per_device_train_batch_size)
    eval_data = streams(eval_texts, training_args.per_device_eval_batch_size) if eval_texts else None
    training_args.train_sampling_strategy = "sequential"  # windows must follow each other in every stream
    steps = num_training_steps(len(train_data), training_args)
    optimizers = ulmfit_optimizers(model, model_args.lr, steps, schedule=model_args.schedule)
    callbacks = [StreamStateCallback(), ActivationRegularizationCallback(model_args.ar_alpha, model_args.tar_beta)]
    if model_args.freeze_epochs > 0:
        n_groups = len(layer_groups(model))
        callbacks.append(GradualUnfreezingCallback([1] * model_args.freeze_epochs + [n_groups]))
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_data,
        eval_dataset=eval_data,
        processing_class=tokenizer,
        optimizers=optimizers,
        callbacks=callbacks,
    )
    train_result = trainer.train()
    metrics = dict(train_result.metrics)
    if eval_data is not None:
        eval_metrics = trainer.evaluate()
        eval_metrics["perplexity"] = math.exp(min(eval_metrics["eval_loss"], 50.0))
        metrics.update(eval_metrics)
    model.model_card_info = {
        "training": {
            "stage": "language model",
            "epochs": training_args.num_train_epochs,
            "learning rate (top group)": model_args.lr,
            "discriminative lr factor": 2.6,
            "schedule": model_args.schedule,
            "bptt": model_args.bptt,
            "AR/TAR": f"{model_args.ar_alpha}/{model_args.tar_beta}",
            "tokens per epoch": len(train_data) * model_args.bptt,
        }
    }
    trainer.save_model(training_args.output_dir)
    tokenizer.save_pretrained(training_args.output_dir)
    if trainer.is_world_process_zero():
        with open(os.path.join(training_args.output_dir, "lm_results.json"), "w") as f:
            json.dump(metrics, f, indent=2)
    return model, tokenizer, metrics


def main() -> None:
    parser = HfArgumentParser((LanguageModelArguments, DataArguments, TrainingArguments))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    transformers.utils.logging.set_verbosity_warning()
    set_seed(training_args.seed)
    splits = load_splits(data_args)
    column = data_args.text_column
    train_texts, eval_texts = list(splits["train"][column]), list(splits["validation"][column])
    _, _, metrics = train_language_model(model_args, training_args, train_texts, eval_texts)
    if "perplexity" in metrics:
        print(f"validation perplexity: {metrics['perplexity']:.2f}")


if __name__ == "__main__":
    sys.exit(main())
