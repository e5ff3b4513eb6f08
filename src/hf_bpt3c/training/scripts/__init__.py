"""What the example scripts (`examples/run_language_modeling.py`, `run_classification.py`, `run_ulmfit.py`) are
built from, for scripts of your own:

- `arguments`: the command-line arguments as dataclasses for `HfArgumentParser`, `training_defaults` for
  `TrainingArguments`;
- `texts`: training/validation splits from files or a `datasets` name, the texts of a file to predict;
- `runs`: learning rates (a number or the LR finder's `valley`), logging for the training curves, checkpoints;
- `language_model`: `train_language_model`, ULMFiT's stages 1 and 2;
- `labels` and `metrics`: the classifier's targets read from the data, `compute_metrics` by problem type;
- `classifier`: `train_classifier`, ULMFiT's stage 3 (`held_out_split`: its optional early-stopping documents);
- `predictions`: `write_predictions`, a predictions file from one classifier or an ensemble.
"""

from .arguments import (
    BATCH_ORDERS,
    CLASSIFIER_POOLINGS,
    TOKENIZER_TYPES,
    ClassifierArguments,
    DataArguments,
    LabelArguments,
    LanguageModelArguments,
    batch_order_field,
    classifier_pooling_field,
    early_stopping_holdout_field,
    early_stopping_patience_field,
    training_defaults,
)
from .classifier import build_classifier, held_out_split, train_classifier
from .labels import PROBLEM_TYPES, Targets, encode_split, fit_targets, label_columns, model_targets
from .language_model import (
    NEW_MODEL_SIZES,
    PerplexityCallback,
    build_tokenizer,
    prepare_model,
    tokenize_streams,
    tokenizer_settings,
    train_frozen_epochs,
    train_language_model,
)
from .metrics import CARD_METRICS, accuracy_and_f1, metrics_for, multilabel_metrics, regression_metrics, report, summary
from .predictions import mean_outputs, predicted_delimiter, predicted_values, write_predictions
from .runs import (
    LOGS_PER_EPOCH,
    TRAINER_LOGGING_STEPS,
    checked_start,
    find_learning_rate,
    last_checkpoint,
    log_for_curves,
    parse_lr,
    resolve_lr,
    save_training_curves,
    steps_per_epoch,
)
from .texts import (
    csv_options,
    file_builder,
    iterate_texts,
    load_splits,
    read_data_file,
    read_documents,
    read_records,
    read_test_texts,
    text_of,
)

__all__ = [
    "DataArguments",
    "LabelArguments",
    "ClassifierArguments",
    "LanguageModelArguments",
    "load_splits",
    "file_builder",
    "iterate_texts",
    "read_test_texts",
    "read_data_file",
    "read_documents",
    "read_records",
    "text_of",
    "csv_options",
    "TRAINER_LOGGING_STEPS",
    "LOGS_PER_EPOCH",
    "parse_lr",
    "checked_start",
    "steps_per_epoch",
    "log_for_curves",
    "find_learning_rate",
    "resolve_lr",
    "save_training_curves",
    "last_checkpoint",
    "NEW_MODEL_SIZES",
    "BATCH_ORDERS",
    "CLASSIFIER_POOLINGS",
    "batch_order_field",
    "classifier_pooling_field",
    "early_stopping_holdout_field",
    "early_stopping_patience_field",
    "training_defaults",
    "TOKENIZER_TYPES",
    "build_tokenizer",
    "tokenizer_settings",
    "prepare_model",
    "tokenize_streams",
    "PerplexityCallback",
    "train_frozen_epochs",
    "train_language_model",
    "PROBLEM_TYPES",
    "Targets",
    "label_columns",
    "fit_targets",
    "model_targets",
    "encode_split",
    "CARD_METRICS",
    "accuracy_and_f1",
    "multilabel_metrics",
    "regression_metrics",
    "metrics_for",
    "summary",
    "report",
    "build_classifier",
    "held_out_split",
    "train_classifier",
    "predicted_values",
    "mean_outputs",
    "write_predictions",
    "predicted_delimiter",
]
