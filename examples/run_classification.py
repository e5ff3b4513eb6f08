#!/usr/bin/env python
"""Train a BPT3C document classifier from an AWD-LSTM language model (ULMFiT stage 3) with `Trainer`.

Whole documents are read (no truncation): the model reads them in `bptt` chunks and back-propagates into the
chunks of the last `max_len` tokens. The recipe is fastai's: classifier dropouts (`drop_mult` 0.5), AdamW with
betas (0.8, 0.99), discriminative learning rates (/2.6 per layer group), gradual unfreezing (head first, one more
layer group per epoch), one-cycle or slanted triangular schedule, AR/TAR regularisation. Batches hold documents of
similar length (fastai's `SortedDL` order by default; `--batch_order group_by_length` for Trainer's) and are padded
per batch. Metrics come from local `evaluate` modules (`examples/metrics/`). The output folder is ready for
`pipeline("text-classification")` and `push_to_hub`, with its model card, and `training_curves.png` (training and
validation loss, validation accuracy against the step).
`--lr_find` runs fastai's learning-rate finder first (`lr_find.png`, suggestions printed); `--lr auto` trains at
its `valley` suggestion. `--do_predict --test_file FILE` writes `predictions.csv`: the test file's rows in their
order, with the predicted `label` and one `prob_<class>` column per class. The training itself is
`hf_bpt3c.training.scripts.train_classifier`.

`--problem_type multi_label_classification` reads several labels per text, from one column with `--label_delimiter`
(`action;drama`) or from several 0/1 columns (`--label_column action,comedy,drama`): sigmoid outputs, metrics at a
0.5 threshold (accuracy per decision, exact match, micro and macro F1), `predictions.csv` with `labels` and one
`prob_<label>` column per label. `--problem_type regression` reads a number (`--label_column score`): MSE, MAE and
Pearson's correlation, `predictions.csv` with `prediction`. A label that is empty, not a number (regression), not
0/1 (indicator columns) or, in the validation data, not seen in training is an error naming the row.

Example:
    python examples/run_classification.py --model_name_or_path lm --train_file train.csv \\
        --validation_file valid.csv --text_column text --label_column label --output_dir clf --num_train_epochs 4 \\
        --do_predict --test_file test.csv
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from pathlib import Path

import datasets
import transformers
from transformers import DataCollatorWithPadding, HfArgumentParser, Trainer, TrainingArguments, set_seed

from hf_bpt3c import AwdLstmConfig, AwdLstmForSequenceClassification, AwdLstmTokenizer
from hf_bpt3c.serving.ensemble import problem_type_of
from hf_bpt3c.training.scripts import (
    ClassifierArguments,
    DataArguments,
    checked_start,
    encode_split,
    file_builder,
    label_columns,
    load_splits,
    metrics_for,
    model_targets,
    predicted_delimiter,
    read_test_texts,
    report,
    train_classifier,
    training_defaults,
    write_predictions,
)

logger = logging.getLogger(__name__)
METRICS_DIR = Path(__file__).resolve().parent / "metrics"  # local `evaluate` modules: accuracy, f1, multilabel, ...


def is_classifier(model_name_or_path: str) -> bool:
    """Whether the checkpoint is a trained sequence classifier (not a language model)."""
    checked_start(model_name_or_path, "language model or classifier")
    architectures = AwdLstmConfig.from_pretrained(model_name_or_path).architectures or []
    return AwdLstmForSequenceClassification.__name__ in architectures


def load_classifier(args: ClassifierArguments):
    """The trained classifier at `--model_name_or_path`, its tokenizer, and `args` with the model's problem type
    (which replaces `--problem_type`)."""
    model = AwdLstmForSequenceClassification.from_pretrained(args.model_name_or_path)
    tokenizer = AwdLstmTokenizer.from_pretrained(args.tokenizer_name or args.model_name_or_path)
    problem_type = problem_type_of(model.config)
    logger.info("%s: a %s model", args.model_name_or_path, problem_type)
    return model, tokenizer, dataclasses.replace(args, problem_type=problem_type)


def validation_split(data_args: DataArguments):
    """The validation rows: `--validation_file` alone, or those of `load_splits`."""
    path = data_args.validation_file
    if data_args.train_file or data_args.dataset_name or not path:
        return load_splits(data_args)["validation"]
    rows = datasets.load_dataset(file_builder(path), data_files=path, split="train")
    limit = data_args.max_eval_samples
    return rows if limit is None else rows.select(range(min(limit, len(rows))))


def evaluate_classifier(model, tokenizer, args, training_args, validation, text_column: str) -> dict:
    """Evaluate a trained classifier on `validation` (labels checked); `eval_results.json` and `all_results.json`
    in the output folder."""
    targets = model_targets(model.config, args)
    with training_args.main_process_first(desc="tokenizing"):
        eval_data = encode_split(validation, "validation", targets, tokenizer, text_column)
    trainer = Trainer(
        model=model,
        args=training_args,
        eval_dataset=eval_data,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=metrics_for(targets.problem_type, METRICS_DIR),
    )
    metrics = trainer.evaluate()
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics)
    return metrics


def use_trained_classifier(args, data_args, training_args):
    """Without `--do_train`, from a trained classifier: evaluate it (`--do_eval`). Returns the model, its tokenizer
    and `args` with its problem type, for `--do_predict`."""
    if not (training_args.do_eval or training_args.do_predict):
        raise ValueError(
            f"{args.model_name_or_path} is a trained classifier: give --do_train to train it further, or "
            "--do_eval (validation data) and/or --do_predict (--test_file)"
        )
    model, tokenizer, args = load_classifier(args)
    if training_args.do_eval:
        validation = validation_split(data_args)
        metrics = evaluate_classifier(model, tokenizer, args, training_args, validation, data_args.text_column)
        print(report(metrics, args.problem_type))
    return model, tokenizer, args


def predict_test_file(model, tokenizer, args: ClassifierArguments, training_args, text_column: str) -> None:
    """`predictions.csv` in the output folder for `--test_file` (main process only)."""
    if not training_args.should_save:
        return
    os.makedirs(training_args.output_dir, exist_ok=True)
    path = os.path.join(training_args.output_dir, "predictions.csv")
    batch_size, delimiter = training_args.per_device_eval_batch_size, predicted_delimiter(args)
    outputs = write_predictions(model, tokenizer, args.test_file, text_column, path, batch_size, delimiter)
    print(f"predictions for {len(outputs)} texts of {args.test_file} written to {path}")


def main() -> None:
    parser = HfArgumentParser((ClassifierArguments, DataArguments, TrainingArguments))
    parser.set_defaults(**training_defaults())
    args, data_args, training_args = parser.parse_args_into_dataclasses()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    transformers.utils.logging.set_verbosity_warning()
    if training_args.do_predict and not args.test_file:
        raise ValueError("--do_predict needs --test_file (the texts to classify)")
    if training_args.do_predict:
        read_test_texts(args.test_file, data_args.text_column)  # a bad test file is refused before any training
    set_seed(training_args.seed)
    if training_args.do_train or not is_classifier(args.model_name_or_path):
        label_columns(args)  # argument errors before any work
        splits = load_splits(data_args)
        trainer, metrics = train_classifier(args, training_args, splits, data_args.text_column, metrics_dir=METRICS_DIR)
        print(report(metrics, args.problem_type))
        model, tokenizer = trainer.model, trainer.processing_class
    else:
        model, tokenizer, args = use_trained_classifier(args, data_args, training_args)
    if training_args.do_predict:
        predict_test_file(model, tokenizer, args, training_args, data_args.text_column)


if __name__ == "__main__":
    sys.exit(main())
