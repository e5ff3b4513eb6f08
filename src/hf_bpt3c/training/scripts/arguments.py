"""The command-line arguments of the example scripts, as dataclasses for `transformers.HfArgumentParser`: where
the texts come from (`DataArguments`), where the labels are (`LabelArguments`), and each stage's model and recipe
(`LanguageModelArguments`, `ClassifierArguments`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...models.awd_lstm.configuration_awd_lstm import CLASSIFIER_POOLINGS

TOKENIZER_TYPES = ("word", "sentencepiece")
BATCH_ORDERS = ("group_by_length", "sortish")  # the classifier's training batches


def training_defaults() -> dict:
    """Defaults the scripts give `TrainingArguments` (for `parser.set_defaults`): pinned memory only where an
    accelerator exists, so a CPU run does not warn on every data loader."""
    return {"dataloader_pin_memory": torch.accelerator.is_available()}


def classifier_pooling_field():
    """`--classifier_pooling`, as every script that trains a classifier takes it."""
    return field(
        default="window",
        metadata={
            "help": "What the head pools: 'window' (the last max_len tokens, fastai) or 'document' (every token).",
            "choices": CLASSIFIER_POOLINGS,
        },
    )


def batch_order_field():
    """`--batch_order`, as every script that trains a classifier takes it."""
    return field(
        default="sortish",
        metadata={
            "help": "Training batches of similar lengths: 'sortish' (fastai's SortedDL: the batches in random order) "
            "or 'group_by_length' (Trainer's, longest first per run).",
            "choices": BATCH_ORDERS,
        },
    )


def early_stopping_holdout_field():
    """`--early_stopping_holdout`, as every script that trains a classifier takes it."""
    return field(
        default=0,
        metadata={
            "help": "Percent of the training documents held out (seeded) to pick the classifier's epoch: the one of "
            "the lowest loss on them (or the best --metric_for_best_model, e.g. accuracy) is kept (Trainer's "
            "load_best_model_at_end). 0: train on all, keep the last."
        },
    )


def early_stopping_patience_field():
    """`--early_stopping_patience`, as every script that trains a classifier takes it."""
    return field(
        default=None,
        metadata={"help": "With --early_stopping_holdout: stop after this many epochs with no better held-out metric."},
    )


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
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes that tokenize the texts (datasets' num_proc)."}
    )


@dataclass(kw_only=True)
class LabelArguments:
    """Where the labels are and what kind they are (in `ClassifierArguments`, and in the arguments of scripts that
    train a classifier, as run_ulmfit.py's)."""

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
    classifier_pooling: str = classifier_pooling_field()
    batch_order: str = batch_order_field()
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
    early_stopping_holdout: int = early_stopping_holdout_field()
    early_stopping_patience: int | None = early_stopping_patience_field()
    test_file: str | None = field(
        default=None,
        metadata={"help": "CSV or JSON lines file to classify with --do_predict (--text_column): predictions.csv."},
    )


@dataclass
class LanguageModelArguments:
    """The model, its tokenizer and the ULMFiT recipe."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Pretrained LM to fine-tune (e.g. from `hf-bpt3c fetch-fastai`)."}
    )
    tokenizer_name: str | None = field(
        default=None,
        metadata={"help": "Tokenizer folder to train with (a pretrained model is mapped onto it); default: built."},
    )
    keep_vocab: bool = field(
        default=False,
        metadata={"help": "Fine-tune with the pretrained vocabulary instead of one built from the target texts."},
    )
    max_vocab: int = field(default=60000, metadata={"help": "Vocabulary size when the tokenizer is built."})
    min_freq: int = field(default=3, metadata={"help": "Minimum count of a word kept in a built vocabulary."})
    tokenizer_type: str | None = field(
        default=None,
        metadata={
            "help": "Tokenizer built from the texts: 'word' (fastai's spaCy English) or 'sentencepiece' (fastai's "
            "SentencePieceTokenizer, any language); default: the pretrained model's, else 'word'.",
            "choices": TOKENIZER_TYPES,
        },
    )
    lang: str | None = field(
        default=None, metadata={"help": "Language of the texts (e.g. de); default: the pretrained model's, else en."}
    )
    sp_vocab_size: int | None = field(
        default=None,
        metadata={"help": "SentencePiece pieces to train (default: fastai's heuristic, a quarter of the words)."},
    )
    embedding_size: int | None = field(default=None, metadata={"help": "Embedding size of a new model (400)."})
    hidden_size: int | None = field(default=None, metadata={"help": "LSTM hidden size of a new model (1152)."})
    num_hidden_layers: int | None = field(default=None, metadata={"help": "LSTM layers of a new model (3)."})
    bptt: int | None = field(
        default=None, metadata={"help": "Tokens per window (default: the checkpoint's, 72 for a new model)."}
    )
    backwards: bool | None = field(
        default=None, metadata={"help": "Backward LM, text read right to left (default: the checkpoint's, False)."}
    )
    drop_mult: float = field(default=1.0, metadata={"help": "Multiplier of fastai's LM dropouts."})
    no_lm_shuffle: bool = field(
        default=False,
        metadata={"help": "Read the training texts in the same order every epoch (default: a new order each epoch)."},
    )
    lr: str = field(
        default="2e-3",
        metadata={
            "help": "Learning rate of the top layer group (after the frozen epochs), or 'auto': the LR finder's "
            "valley suggestion."
        },
    )
    lr_find: bool = field(
        default=False,
        metadata={"help": "Run fastai's LR finder before training: lr_find.png in output_dir, suggestions printed."},
    )
    frozen_lr: float = field(default=2e-2, metadata={"help": "Learning rate of the frozen epochs (fastai: 2e-2)."})
    freeze_epochs: int | None = field(
        default=None,
        metadata={"help": "Epochs training only the embedding/decoder first (default: 1 pretrained, 0 from scratch)."},
    )
    lr_factor: float = field(default=2.6, metadata={"help": "Discriminative lr: each group below gets lr/factor."})
    schedule: str = field(default="one_cycle", metadata={"help": "'one_cycle' (fastai) or 'stlr' (ULMFiT paper)."})
    ar_alpha: float = field(default=2.0, metadata={"help": "Activation regularisation (0 switches it off)."})
    tar_beta: float = field(default=1.0, metadata={"help": "Temporal activation regularisation (0: off)."})


__all__ = ["DataArguments", "LabelArguments", "ClassifierArguments", "LanguageModelArguments"]
