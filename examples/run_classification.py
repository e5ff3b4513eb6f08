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
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import evaluate
import numpy as np
import torch
import transformers
from run_language_modeling import (
    DataArguments,
    file_builder,
    last_checkpoint,
    load_splits,
    log_for_curves,
    parse_lr,
    resolve_lr,
    save_training_curves,
    steps_per_epoch,
)
from transformers import DataCollatorWithPadding, HfArgumentParser, Trainer, TrainingArguments, set_seed

from hf_bpt3c import AwdLstmConfig, AwdLstmForSequenceClassification, AwdLstmTokenizer, ensemble_predict
from hf_bpt3c.serving.ensemble import MULTI_LABEL_THRESHOLD, problem_type_of
from hf_bpt3c.training import (
    ActivationRegularizationCallback,
    EvaluationRandomStateCallback,
    GradualUnfreezingCallback,
    num_training_steps,
    ulmfit_optimizers,
)

logger = logging.getLogger(__name__)
METRICS_DIR = Path(__file__).resolve().parent / "metrics"


@dataclass(kw_only=True)
class LabelArguments:
    """Where the labels are and what kind they are (shared with run_ulmfit.py)."""

    label_column: str = field(
        default="label",
        metadata={
            "help": "Column holding the class (the value, for regression); for multi-label, a column of names joined "
            "by --label_delimiter or several 0/1 columns, comma-separated (a,b,c)."
        },
    )
    problem_type: str = field(
        default="single_label_classification",
        metadata={"help": "single_label_classification, multi_label_classification or regression."},
    )
    label_delimiter: str | None = field(
        default=None, metadata={"help": "Multi-label: the separator of the names in one label cell (e.g. ';')."}
    )


@dataclass
class ClassifierArguments(LabelArguments):
    """The starting checkpoint, BPT3C settings and the ULMFiT classifier recipe."""

    model_name_or_path: str = field(metadata={"help": "LM checkpoint (or classifier) to start from."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer folder (default: the model's)."})
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


PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")
INDICATORS = {"0": 0.0, "1": 1.0, "0.0": 0.0, "1.0": 1.0, "false": 0.0, "true": 1.0}
CARD_METRICS = {
    "single_label_classification": ("accuracy", "f1"),
    "multi_label_classification": ("accuracy", "exact_match", "f1_micro", "f1_macro"),
    "regression": ("mse", "mae", "pearson"),
}


@dataclass(frozen=True)
class Targets:
    """What the classifier predicts: the problem type, the label column(s), the label names (the classes; the 0/1
    columns of multi-label indicators; the column, for regression) and the separator of multi-label names."""

    problem_type: str
    columns: tuple[str, ...]
    names: tuple[str, ...]
    delimiter: str | None = None

    def encode(self, data, split: str) -> list:
        """The `labels` of each row of `data`: class ids, 0/1 rows (multi-label) or floats (regression). A value
        that is empty, not a number (regression), not 0/1 (indicator columns) or not a training label raises
        `ValueError` naming the split and row (counted from 0)."""
        _check_columns(data, self.columns, split)
        rows = zip(*(data[column] for column in self.columns))
        return [self._encode_row(values, split, index) for index, values in enumerate(rows)]

    def _encode_row(self, values: tuple, split: str, index: int):
        if self.problem_type == "regression":
            return _number(values[0], split, index, self.columns[0])
        if self.delimiter is None and self.problem_type == "multi_label_classification":
            return [_indicator(v, split, index, c) for v, c in zip(values, self.columns)]
        names = self.names_in(values[0], split, index)
        unknown = [name for name in names if name not in self.names]
        if unknown:
            raise ValueError(
                f"{split} row {index}: label {unknown[0]!r} in column {self.columns[0]!r} is not one of the "
                f"training labels {list(self.names)}"
            )
        if self.problem_type == "single_label_classification":
            return self.names.index(names[0])
        return [float(name in names) for name in self.names]

    def names_in(self, value, split: str, index: int) -> list[str]:
        """The label name(s) in one cell (split at the delimiter); empty ones raise `ValueError` naming the row."""
        text = _cell(value, split, index, self.columns[0])
        if self.delimiter is None:
            return [text]
        names = [name.strip() for name in text.split(self.delimiter)]
        if not all(names):
            raise ValueError(
                f"{split} row {index}: empty label between the {self.delimiter!r} separators of column "
                f"{self.columns[0]!r}: {text!r}"
            )
        return names


def _check_columns(data, columns: tuple[str, ...], split: str) -> None:
    missing = [column for column in columns if column not in data.column_names]
    if missing:
        raise ValueError(f"the {split} data has no column {missing[0]!r} (--label_column): {data.column_names}")


def _cell(value, split: str, index: int, column: str) -> str:
    """The label `value` as a name; a missing or blank one raises `ValueError`."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or not str(value).strip():
        raise ValueError(f"{split} row {index}: empty label in column {column!r}")
    return str(value).strip()


def _indicator(value, split: str, index: int, column: str) -> float:
    """A 0/1 (or false/true) multi-label indicator as 0.0 / 1.0."""
    text = _cell(value, split, index, column).lower()
    if text not in INDICATORS:
        raise ValueError(f"{split} row {index}: column {column!r} must hold 0 or 1 (multi-label), got {value!r}")
    return INDICATORS[text]


def _number(value, split: str, index: int, column: str) -> float:
    """A finite regression target."""
    text = _cell(value, split, index, column)
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if not np.isfinite(number):
        raise ValueError(f"{split} row {index}: column {column!r} must hold a finite number (regression): {value!r}")
    return number


def label_columns(args: ClassifierArguments) -> tuple[str, ...]:
    """`--label_column` split at commas, checked against `--problem_type` and `--label_delimiter`."""
    if args.problem_type not in PROBLEM_TYPES:
        raise ValueError(f"--problem_type must be one of {PROBLEM_TYPES}, got {args.problem_type!r}")
    columns = tuple(column.strip() for column in args.label_column.split(","))
    if not all(columns) or len(set(columns)) != len(columns):
        raise ValueError(f"--label_column must name distinct columns, comma-separated, got {args.label_column!r}")
    multi_label = args.problem_type == "multi_label_classification"
    if len(columns) > 1 and not multi_label:
        raise ValueError(f"--label_column names {len(columns)} columns: only multi_label_classification takes several")
    if args.label_delimiter is not None and not multi_label:
        raise ValueError("--label_delimiter is for --problem_type multi_label_classification")
    if args.label_delimiter is not None and len(columns) > 1:
        raise ValueError("--label_delimiter splits one label column; several --label_column are 0/1 columns")
    if multi_label and args.label_delimiter is None and len(columns) == 1:
        raise ValueError("multi_label_classification needs --label_delimiter or several 0/1 --label_column columns")
    if args.label_delimiter is not None and not args.label_delimiter.strip():
        raise ValueError(f"--label_delimiter must be a visible separator such as ';', got {args.label_delimiter!r}")
    return columns


def fit_targets(args: ClassifierArguments, train) -> Targets:
    """The targets of `--problem_type` / `--label_column` / `--label_delimiter`, the class names (sorted) read from
    the training data, whose labels are checked."""
    columns = label_columns(args)
    _check_columns(train, columns, "train")
    if args.problem_type == "regression" or len(columns) > 1:
        names = columns
    else:
        probe = Targets(args.problem_type, columns, (), args.label_delimiter)
        values = train[columns[0]]
        names = tuple(sorted({n for i, v in enumerate(values) for n in probe.names_in(v, "train", i)}))
    targets = Targets(args.problem_type, columns, names, args.label_delimiter)
    if args.problem_type == "single_label_classification" and len(names) < 2:
        raise ValueError(f"the training data has {len(names)} class(es) in {columns[0]!r}: a classifier needs two")
    return targets


def model_targets(config, args) -> Targets:
    """The targets of a trained classifier (`config`: its problem type and label names, in its order), read from
    the data's `args.label_column` / `args.label_delimiter`."""
    names = tuple(config.id2label[i] for i in range(config.num_labels))
    return Targets(problem_type_of(config), label_columns(args), names, args.label_delimiter)


def build_classifier(args: ClassifierArguments, targets: Targets) -> AwdLstmForSequenceClassification:
    """The classifier with the LM's encoder weights, fastai's classifier dropouts and these targets."""
    config = AwdLstmConfig.from_pretrained(args.model_name_or_path)
    preset = AwdLstmConfig.for_classification(drop_mult=args.drop_mult)
    for name in ("embedding_dropout", "weight_dropout", "input_dropout", "hidden_dropout", "output_dropout"):
        setattr(config, name, getattr(preset, name))
    config.bptt, config.max_len = args.bptt, args.max_len
    config.id2label = dict(enumerate(targets.names))
    config.label2id = {label: i for i, label in enumerate(targets.names)}
    config.problem_type = targets.problem_type
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


def multilabel_metrics(probabilities: bool = False):
    """`compute_metrics` for multi-label: accuracy per (document, label) decision, exact match, micro and macro F1
    at a 0.5 threshold on the sigmoid probabilities. `probabilities`: the predictions are probabilities already
    (an ensemble's mean), not logits."""
    multilabel = evaluate.load(str(METRICS_DIR / "multilabel"))

    def compute(eval_pred) -> dict:
        scores = np.asarray(eval_pred.predictions, dtype=np.float64)
        chosen = scores >= 0.5 if probabilities else scores >= 0.0  # sigmoid(logit) >= 0.5
        references = np.asarray(eval_pred.label_ids).round().astype(np.int64)
        return multilabel.compute(predictions=chosen.astype(np.int64), references=references)

    return compute


def regression_metrics():
    """`compute_metrics` for regression: MSE, MAE and Pearson's correlation of the predicted values."""
    regression = evaluate.load(str(METRICS_DIR / "regression"))

    def compute(eval_pred) -> dict:
        predictions = np.asarray(eval_pred.predictions, dtype=np.float64).reshape(-1)
        references = np.asarray(eval_pred.label_ids, dtype=np.float64).reshape(-1)
        return regression.compute(predictions=predictions, references=references)

    return compute


def metrics_for(problem_type: str, probabilities: bool = False):
    """`compute_metrics` for `problem_type`; `probabilities`: the predictions are class probabilities (or, for
    regression, values), not logits."""
    if problem_type == "multi_label_classification":
        return multilabel_metrics(probabilities)
    if problem_type == "regression":
        return regression_metrics()
    return accuracy_and_f1()


def summary(metrics: dict, problem_type: str, prefix: str = "eval_") -> str:
    """The validation metrics of `problem_type` on one line, e.g. `accuracy 0.8125, f1 0.8000`."""
    return ", ".join(f"{name} {metrics[prefix + name]:.4f}" for name in CARD_METRICS[problem_type])


def encode_split(data, split: str, targets: Targets, tokenizer, text_column: str):
    """`data` tokenized, with its `labels` (checked: errors name the split and row)."""
    labels = targets.encode(data, split)
    encoded = data.map(lambda batch: tokenizer(batch[text_column]), batched=True, remove_columns=data.column_names)
    return encoded.add_column("labels", labels)


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
    targets = fit_targets(args, splits["train"])
    model = build_classifier(args, targets)
    with training_args.main_process_first(desc="tokenizing"):
        train_data = encode_split(splits["train"], "train", targets, tokenizer, text_column)
        eval_data = encode_split(splits["validation"], "validation", targets, tokenizer, text_column)
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
            compute_metrics=metrics_for(targets.problem_type),
            optimizers=ulmfit_optimizers(model, lr, steps, schedule=args.schedule),
            callbacks=callbacks,
        )

    checkpoint = training_args.resume_from_checkpoint or last_checkpoint(training_args.output_dir)
    lr, trainer, finder_notes = resolve_lr(
        parse_lr(args.lr), args.lr_find, make_trainer, checkpoint is not None, "classifier", placeholder=1e-2
    )
    if checkpoint is not None:
        print(f"classifier: resuming from {checkpoint}")
    train_metrics = trainer.train(resume_from_checkpoint=checkpoint).metrics
    eval_metrics = trainer.evaluate()
    metrics = {**train_metrics, **eval_metrics}
    model.model_card_info = {
        "eval_results": {
            **{name: metrics.get(f"eval_{name}") for name in CARD_METRICS[targets.problem_type]},
            "split": "validation",
            "task": "text-classification",
        },
        "training": {
            "stage": "classifier (BPT3C)",
            "problem type": targets.problem_type,
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
    for split, split_metrics in (("train", train_metrics), ("eval", eval_metrics)):
        trainer.log_metrics(split, split_metrics)
        trainer.save_metrics(split, split_metrics)  # {split}_results.json and all_results.json
    trainer.save_state()
    return trainer, metrics


def read_test_texts(test_file: str, text_column: str):
    """The rows of `test_file` (CSV or JSON lines) and their texts; a missing column, or a row whose text is missing
    or blank, raises `ValueError` naming it."""
    rows = datasets.load_dataset(file_builder(test_file), data_files=test_file, split="train")
    if text_column not in rows.column_names:
        raise ValueError(f"--test_file {test_file} has no column {text_column!r} (--text_column): {rows.column_names}")
    texts = rows[text_column]
    for index, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"--test_file {test_file}: row {index} has no text in column {text_column!r}")
    return rows, texts


@torch.inference_mode()
def predicted_values(models: list, tokenizer, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """Regression: the mean over `models` of each text's predicted value, `(len(texts),)`, in the texts' order
    (BPT3C gives a document the same output whatever its batch and padding)."""
    total = np.zeros(len(texts), dtype=np.float64)
    for model in models:
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start : start + batch_size], padding=True, return_tensors="pt").to(device)
            total[start : start + batch_size] += model(**batch).logits[:, 0].float().cpu().double().numpy()
        model.train(was_training)
    return total / len(models)


def mean_outputs(models: list, tokenizer, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """`(len(texts), num_labels)` in the texts' order: the mean of the models' class probabilities (softmax, or
    sigmoid for multi-label; `ensemble_predict`) or, for regression, of their predicted values."""
    if problem_type_of(models[0].config) == "regression":
        return predicted_values(models, tokenizer, texts, batch_size)[:, None]
    return ensemble_predict(models, tokenizer, texts, batch_size=batch_size).probabilities


def _free(table, name: str) -> str:
    """`name`, or `predicted_<name>` when the test file has a column `name` already."""
    return f"predicted_{name}" if name in table.columns else name


def write_predictions(
    models, tokenizer, test_file: str, text_column: str, path: str, batch_size: int = 32, delimiter: str = ";"
) -> np.ndarray:
    """Predict the texts of `test_file` (CSV or JSON lines) with a model or the mean of a list of models, and write
    `path` (CSV): the file's columns, then the prediction, one row per input row in the input's order.

    Single-label: the predicted `label` and `prob_<class>` for each class; multi-label: `prob_<label>` for each
    label and `labels`, the labels of probability >= 0.5 joined by `delimiter`; regression: `prediction`. A column
    of the file with that name is kept, the new one is then `predicted_<name>`. A row whose text is missing or blank
    raises `ValueError` naming it. Returns the `(rows, num_labels)` probabilities (regression: values)."""
    models = list(models) if isinstance(models, (list, tuple)) else [models]
    rows, texts = read_test_texts(test_file, text_column)
    outputs = mean_outputs(models, tokenizer, texts, batch_size)
    config = models[0].config
    table = rows.to_pandas()
    problem_type = problem_type_of(config)
    if problem_type == "regression":
        table[_free(table, "prediction")] = outputs[:, 0]
    elif problem_type == "multi_label_classification":
        chosen = outputs >= MULTI_LABEL_THRESHOLD
        names = [config.id2label[i] for i in range(config.num_labels)]
        table[_free(table, "labels")] = [delimiter.join(n for n, c in zip(names, row) if c) for row in chosen]
    else:
        table[_free(table, "label")] = [config.id2label[int(i)] for i in outputs.argmax(axis=-1)]
    if problem_type != "regression":
        for i in range(config.num_labels):
            table[f"prob_{config.id2label[i]}"] = outputs[:, i]
    table.to_csv(path, index=False)
    return outputs


def report(metrics: dict, problem_type: str) -> str:
    """The printed line of validation metrics: `validation accuracy: ...` (single-label) or `validation metrics:
    ...` with the problem type's metrics."""
    if problem_type == "single_label_classification":
        return f"validation accuracy: {metrics['eval_accuracy']:.4f} (macro F1 {metrics['eval_f1']:.4f})"
    return f"validation metrics: {summary(metrics, problem_type)}"


def predict_test_file(model, tokenizer, args: ClassifierArguments, training_args, text_column: str) -> None:
    """`predictions.csv` in the output folder for `--test_file` (main process only)."""
    if not training_args.should_save:
        return
    os.makedirs(training_args.output_dir, exist_ok=True)
    path = os.path.join(training_args.output_dir, "predictions.csv")
    batch_size, delimiter = training_args.per_device_eval_batch_size, predicted_delimiter(args)
    outputs = write_predictions(model, tokenizer, args.test_file, text_column, path, batch_size, delimiter)
    print(f"predictions for {len(outputs)} texts of {args.test_file} written to {path}")


def predicted_delimiter(args) -> str:
    """The separator of predicted multi-label names: `--label_delimiter`, or ';'."""
    return args.label_delimiter or ";"


def is_classifier(model_name_or_path: str) -> bool:
    """Whether the checkpoint is a trained sequence classifier (not a language model)."""
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
        compute_metrics=metrics_for(targets.problem_type),
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


def main() -> None:
    parser = HfArgumentParser((ClassifierArguments, DataArguments, TrainingArguments))
    args, data_args, training_args = parser.parse_args_into_dataclasses()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    transformers.utils.logging.set_verbosity_warning()
    if training_args.do_predict and not args.test_file:
        raise ValueError("--do_predict needs --test_file (the texts to classify)")
    set_seed(training_args.seed)
    if training_args.do_train or not is_classifier(args.model_name_or_path):
        label_columns(args)  # argument errors before any work
        trainer, metrics = train_classifier(args, training_args, load_splits(data_args), data_args.text_column)
        print(report(metrics, args.problem_type))
        model, tokenizer = trainer.model, trainer.processing_class
    else:
        model, tokenizer, args = use_trained_classifier(args, data_args, training_args)
    if training_args.do_predict:
        predict_test_file(model, tokenizer, args, training_args, data_args.text_column)


if __name__ == "__main__":
    sys.exit(main())
