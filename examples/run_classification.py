#!/usr/bin/env python
"""Train a BPT3C document classifier from an AWD-LSTM language model (ULMFiT stage 3) with `Trainer`.

Whole documents are read (no truncation): the model reads them in `bptt` chunks and back-propagates into the
chunks of the last `max_len` tokens. The recipe is fastai's: classifier dropouts (`drop_mult` 0.5), AdamW with
betas (0.8, 0.99), discriminative learning rates (/2.6 per layer group), gradual unfreezing (head first, one more
layer group per epoch), one-cycle or slanted triangular schedule, AR/TAR regularisation. Batches hold documents of
similar length (`group_by_length`) and are padded per batch. Metrics come from local `evaluate` modules
(`examples/metrics/`). The output folder is ready for `pipeline("text-classification")` and `push_to_hub`, with
its model card, and `training_curves.png` (training and validation loss, validation accuracy against the step).
`--lr_find` runs fastai's learning-rate finder first (`lr_find.png`, suggestions printed); `--lr auto` trains at
its `valley` suggestion. `--do_predict --test_file FILE` writes `predictions.csv`: the test file's rows in their
order, with the predicted `label` and one `prob_<class>` column per class.

Example:
    python examples/run_classification.py --model_name_or_path lm --train_file train.csv \\
        --validation_file valid.csv --text_column text --label_column label --output_dir clf --num_train_epochs 4 \\
        --do_predict --test_file test.csv
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import evaluate
import numpy as np
import transformers
from run_language_modeling import (
    DataArguments,
    file_builder,
    load_splits,
    log_for_curves,
    parse_lr,
    resolve_lr,
    save_training_curves,
    steps_per_epoch,
)
from transformers import DataCollatorWithPadding, HfArgumentParser, Trainer, TrainingArguments, set_seed

from hf_bpt3c import AwdLstmConfig, AwdLstmForSequenceClassification, AwdLstmTokenizer, ensemble_predict
from hf_bpt3c.training import (
    ActivationRegularizationCallback,
    EvaluationRandomStateCallback,
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
    lr: str = field(
        default="1e-2",
        metadata={"help": "Learning rate of the head (top layer group), or 'auto': the LR finder's valley suggestion."},
    )
    lr_find: bool = field(
        default=False,
        metadata={"help": "Run fastai's LR finder before training: lr_find.png in output_dir, suggestions printed."},
    )
    schedule: str = field(default="one_cycle", metadata={"help": "'one_cycle' (fastai) or 'stlr' (ULMFiT paper)."})
    gradual_unfreezing: bool = field(default=True, metadata={"help": "Head first, one more layer group per epoch."})
    ar_alpha: float = field(default=2.0, metadata={"help": "Activation regularisation (0 switches it off)."})
    tar_beta: float = field(default=1.0, metadata={"help": "Temporal activation regularisation (0: off)."})
    test_file: str | None = field(
        default=None,
        metadata={"help": "CSV or JSON lines file to classify with --do_predict (--text_column): predictions.csv."},
    )


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
    """Train on `splits["train"]`, evaluate on `splits["validation"]`, save a Hub-ready folder with
    `training_curves.png`. `args.lr` is a number or 'auto' (the LR finder's valley suggestion); `args.lr_find` runs
    the finder (`lr_find.png`) before training. Returns the trainer and the metrics."""
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
    log_for_curves(training_args, steps_per_epoch(len(train_data), training_args), len(eval_data) > 0)
    steps = num_training_steps(len(train_data), training_args)

    def make_trainer(lr: float) -> Trainer:
        callbacks = [ActivationRegularizationCallback(args.ar_alpha, args.tar_beta), EvaluationRandomStateCallback()]
        if args.gradual_unfreezing:
            callbacks.append(GradualUnfreezingCallback())
        return Trainer(
            model=model,
            args=training_args,
            train_dataset=train_data,
            eval_dataset=eval_data,
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=accuracy_and_f1(),
            optimizers=ulmfit_optimizers(model, lr, steps, schedule=args.schedule),
            callbacks=callbacks,
        )

    lr, trainer, finder_notes = resolve_lr(
        parse_lr(args.lr), args.lr_find, make_trainer, False, "classifier", placeholder=1e-2
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
            "learning rate (head)": lr,
            **finder_notes,
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
    save_training_curves(trainer, "classifier")
    if trainer.is_world_process_zero():
        with open(os.path.join(training_args.output_dir, "eval_results.json"), "w") as f:
            json.dump({k: v for k, v in metrics.items() if k.startswith("eval_")}, f, indent=2)
    return trainer, metrics


def write_predictions(model, tokenizer, test_file: str, text_column: str, path: str, batch_size: int = 32):
    """Classify the texts of `test_file` (CSV or JSON lines) and write `path` (CSV): the file's columns, then the
    predicted `label` (`predicted_label` if the file has a `label` column) and `prob_<class>` for each class, one
    row per input row in the input's order. A row whose text is missing or blank raises `ValueError` naming it.
    Returns the `(rows, num_labels)` probabilities."""
    rows = datasets.load_dataset(file_builder(test_file), data_files=test_file, split="train")
    if text_column not in rows.column_names:
        raise ValueError(f"--test_file {test_file} has no column {text_column!r} (--text_column): {rows.column_names}")
    texts = rows[text_column]
    for index, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"--test_file {test_file}: row {index} has no text in column {text_column!r}")
    result = ensemble_predict([model], tokenizer, texts, batch_size=batch_size)
    table = rows.to_pandas()
    label_column = "predicted_label" if "label" in table.columns else "label"
    table[label_column] = result.labels
    for i in range(model.config.num_labels):
        table[f"prob_{model.config.id2label[i]}"] = result.probabilities[:, i]
    table.to_csv(path, index=False)
    return result.probabilities


def main() -> None:
    parser = HfArgumentParser((ClassifierArguments, DataArguments, TrainingArguments))
    args, data_args, training_args = parser.parse_args_into_dataclasses()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    transformers.utils.logging.set_verbosity_warning()
    if training_args.do_predict and not args.test_file:
        raise ValueError("--do_predict needs --test_file (the texts to classify)")
    set_seed(training_args.seed)
    trainer, metrics = train_classifier(args, training_args, load_splits(data_args), data_args.text_column)
    print(f"validation accuracy: {metrics['eval_accuracy']:.4f}")
    if training_args.do_predict and trainer.is_world_process_zero():
        path = os.path.join(training_args.output_dir, "predictions.csv")
        batch_size = training_args.per_device_eval_batch_size
        probs = write_predictions(
            trainer.model, trainer.processing_class, args.test_file, data_args.text_column, path, batch_size
        )
        print(f"predictions for {len(probs)} texts of {args.test_file} written to {path}")


if __name__ == "__main__":
    sys.exit(main())
