#!/usr/bin/env python
"""Train a BPT3C document classifier from an AWD-LSTM language model (ULMFiT stage 3) with `Trainer`.

Whole documents are read (no truncation): the model reads them in `bptt` chunks and back-propagates into the
chunks of the last `max_len` tokens. The recipe is fastai's: classifier dropouts (`drop_mult` 0.5), AdamW with
betas (0.8, 0.99), discriminative learning rates (/2.6 per layer group), gradual unfreezing (head first, one more
layer group per epoch), one-cycle or slanted triangular schedule, AR/TAR regularisation. Batches hold documents of
similar length (`group_by_length`) and are padded per batch. Metrics come from local `evaluate` modules
(`examples/metrics/`). The output folder is ready for `pipeline("text-classification")` and `push_to_hub`, with
its model card.

Example:
    python examples/run_classification.py --model_name_or_path lm --train_file train.csv \\
        --validation_file valid.csv --text_column text --label_column label --output_dir clf --num_train_epochs 4
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import evaluate
import numpy as np
import transformers
from run_language_modeling import DataArguments, load_splits
from transformers import DataCollatorWithPadding, HfArgumentParser, Trainer, TrainingArguments, set_seed

from hf_bpt3c import AwdLstmConfig, AwdLstmForSequenceClassification, AwdLstmTokenizer
from hf_bpt3c.training import (
    ActivationRegularizationCallback,
    GradualUnfreezingCallback,
    num_training_steps,
    ulmfit_optimizers,
)

logger = logging.getLogger(__name__)
METRICS_DIR = Path(__file__).resolve().parent / "metrics"


@dataclass
class ClassifierArguments:
    """The starting checkpoint, BPT3C settings and the ULMFiT classifier recipe."""

    model_name_or_path: str = field(metadata={"help": "LM checkpoint (or classifier) to start from."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer folder (default: the model's)."})
    label_column: str = field(default="label", metadata={"help": "Column holding the class."})
    bptt: int = field(default=72, metadata={"help": "BPT3C chunk length."})
    max_len: int = field(default=1440, metadata={"help": "Tokens at the end of each document that get gradient."})
    drop_mult: float = field(default=0.5, metadata={"help": "Multiplier of fastai's classifier dropouts."})
    lr: float = field(default=1e-2, metadata={"help": "Learning rate of the head (top layer group)."})
    schedule: str = field(default="one_cycle", metadata={"help": "'one_cycle' (fastai) or 'stlr' (ULMFiT paper)."})
    gradual_unfreezing: bool = field(default=True, metadata={"help": "Head first, one more layer group per epoch."})
    ar_alpha: float = field(default=2.0, metadata={"help": "Activation regularisation (0 switches it off)."})
    tar_beta: float = field(default=1.0, metadata={"help": "Temporal activation regularisation (0: off)."})


def label_names(values: list) -> list[str]:
    """Class names in a stable order (sorted)."""
    return sorted({str(v) for v in values})


def build_classifier(args: ClassifierArguments, labels: list[str]) -> AwdLstmForSequenceClassification:
    """The classifier with the LM's encoder weights, fastai's classifier dropouts and these labels."""
    config = AwdLstmConfig.from_pretrained(args.model_name_or_path)
    preset = AwdLstmConfig.for_classification(drop_mult=args.drop_mult)
    for name in ("embedding_dropout", "weight_dropout", "input_dropout", "hidden_dropout", "output_dropout"):
        setattr(config, name, getattr(preset, name))
    config.bptt, config.max_len = args.bptt, args.max_len
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    config.problem_type = "single_label_classification"
    config.validate_awd_lstm()
    return AwdLstmForSequenceClassification.from_pretrained(args.model_name_or_path, config=config)


def accuracy_and_f1():
    """`compute_metrics` for Trainer: accuracy and macro F1 from the local evaluate modules."""
    accuracy = evaluate.load(str(METRICS_DIR / "accuracy"))
    f1 = evaluate.load(str(METRICS_DIR / "f1"))

    def compute(eval_pred) -> dict:
        predictions = np.argmax(eval_pred.predictions, axis=-1)
        references = eval_pred.label_ids
        return {
            **accuracy.compute(predictions=predictions, references=references),
            **f1.compute(predictions=predictions, references=references),
        }

    return compute


def train_classifier(
    args: ClassifierArguments,
    training_args: TrainingArguments,
    splits,
    text_column: str,
    tokenizer: AwdLstmTokenizer | None = None,
) -> tuple[Trainer, dict]:
    """Train on `splits["train"]`, evaluate on `splits["validation"]`, save a Hub-ready folder."""
    tokenizer = tokenizer or AwdLstmTokenizer.from_pretrained(args.tokenizer_name or args.model_name_or_path)
    labels = label_names(splits["train"][args.label_column])
    label_ids = {label: i for i, label in enumerate(labels)}
    model = build_classifier(args, labels)

    def encode(batch: dict) -> dict:
        encoded = tokenizer(batch[text_column])
        encoded["labels"] = [label_ids[str(v)] for v in batch[args.label_column]]
        return encoded

    columns = splits["train"].column_names
    train_data = splits["train"].map(encode, batched=True, remove_columns=columns)
    eval_data = splits["validation"].map(encode, batched=True, remove_columns=splits["validation"].column_names)
    if training_args.train_sampling_strategy == "random":
        training_args.train_sampling_strategy = "group_by_length"  # fastai's SortedDL: similar lengths per batch
    steps = num_training_steps(len(train_data), training_args)
    callbacks = [ActivationRegularizationCallback(args.ar_alpha, args.tar_beta)]
    if args.gradual_unfreezing:
        callbacks.append(GradualUnfreezingCallback())
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_data,
        eval_dataset=eval_data,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=accuracy_and_f1(),
        optimizers=ulmfit_optimizers(model, args.lr, steps, schedule=args.schedule),
        callbacks=callbacks,
    )
    metrics = dict(trainer.train().metrics)
    metrics.update(trainer.evaluate())
    model.model_card_info = {
        "eval_results": {
            "accuracy": metrics.get("eval_accuracy"),
            "f1": metrics.get("eval_f1"),
            "split": "validation",
            "task": "text-classification",
        },
        "training": {
            "stage": "classifier (BPT3C)",
            "epochs": training_args.num_train_epochs,
            "learning rate (head)": args.lr,
            "discriminative lr factor": 2.6,
            "schedule": args.schedule,
            "gradual unfreezing": args.gradual_unfreezing,
            "drop_mult": args.drop_mult,
            "AR/TAR": f"{args.ar_alpha}/{args.tar_beta}",
            "batch size": training_args.per_device_train_batch_size,
            "training documents": len(train_data),
        },
    }
    trainer.save_model(training_args.output_dir)
    tokenizer.save_pretrained(training_args.output_dir)
    if trainer.is_world_process_zero():
        with open(os.path.join(training_args.output_dir, "eval_results.json"), "w") as f:
            json.dump({k: v for k, v in metrics.items() if k.startswith("eval_")}, f, indent=2)
    return trainer, metrics


def main() -> None:
    parser = HfArgumentParser((ClassifierArguments, DataArguments, TrainingArguments))
    args, data_args, training_args = parser.parse_args_into_dataclasses()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    transformers.utils.logging.set_verbosity_warning()
    set_seed(training_args.seed)
    _, metrics = train_classifier(args, training_args, load_splits(data_args), data_args.text_column)
    print(f"validation accuracy: {metrics['eval_accuracy']:.4f}")


if __name__ == "__main__":
    sys.exit(main())
