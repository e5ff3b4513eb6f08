"""What each stage's `Trainer` run needs around it: the learning rate (a number, or the learning-rate finder's
suggestion), enough logging for the training curves and their figure, and the checkpoint to resume from."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os

from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import IntervalStrategy, get_last_checkpoint

from ...plots import plot_training_curves
from ..lr_finder import lr_find
from ..recipe import num_training_steps

logger = logging.getLogger(__name__)

TRAINER_LOGGING_STEPS = 500  # TrainingArguments' default logging_steps
LOGS_PER_EPOCH = 5  # training-loss points per epoch in training_curves.png (unless --logging_steps is given)


def parse_lr(value: str | float, name: str = "--lr") -> float | None:
    """A learning rate given on the command line: a positive number, or None for 'auto' (the LR finder's valley
    suggestion)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    try:
        lr = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number or 'auto', got {value!r}") from None
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"{name} must be a positive number or 'auto', got {value!r}")
    return lr


def card_language(tokenizer) -> dict:
    """`{"language": ...}` for the model card from the tokenizer's recorded `lang` (none when unknown)."""
    lang = (getattr(tokenizer, "init_kwargs", None) or {}).get("lang")
    return {"language": lang} if isinstance(lang, str) and lang else {}


def checked_start(path: str, expected: str, flag: str = "--model_name_or_path") -> str:
    """`path` as a starting checkpoint of the `expected` kind ("language model" or "classifier"): a local path that
    does not exist, a folder without `config.json`, or a classifier given where a language model is expected is a
    `ValueError` naming `flag` (instead of a Hub lookup for a local path, a misleading message, or a language model
    silently started from a classifier's encoder with a random decoder). A Hub id (`user/name`) is left to
    `from_pretrained`."""
    local = os.path.isabs(path) or path.startswith(("./", "../", "~")) or os.path.exists(path)
    if not local:
        return path
    folder = os.path.expanduser(path)
    if not os.path.exists(folder):
        raise ValueError(f"{flag} {path} does not exist (a local folder saved with save_pretrained, or a Hub id)")
    config = os.path.join(folder, "config.json")
    if not os.path.isfile(config):
        raise ValueError(f"{flag} {path} is not a saved model: it has no config.json")
    if expected == "language model":
        try:
            with open(config, encoding="utf-8") as file:
                architectures = json.loads(file.read(1 << 20)).get("architectures") or []
        except (ValueError, AttributeError):
            architectures = []  # from_pretrained names what is wrong with it
        if any(str(name).endswith("ForSequenceClassification") for name in architectures):
            raise ValueError(
                f"{flag} {path} is a classifier: start a language model from a language model (run_ulmfit.py "
                "keeps it in language_model/ next to the classifier)"
            )
    return path


def steps_per_epoch(num_examples: int, training_args: TrainingArguments) -> int:
    """Optimizer steps in one epoch of `num_examples` items."""
    one_epoch = dataclasses.replace(training_args, num_train_epochs=1, max_steps=-1)
    return num_training_steps(num_examples, one_epoch)


def log_for_curves(training_args: TrainingArguments, epoch_steps: int, has_eval: bool) -> None:
    """Log enough for `training_curves.png` when the command line left Trainer's defaults (logging every 500 steps,
    no evaluation during training): the training loss about 5 times per epoch, and an evaluation after every epoch
    when there is validation data. The stages' `EvaluationRandomStateCallback` keeps these evaluations from
    changing the trained weights."""
    if (
        training_args.logging_strategy == IntervalStrategy.STEPS
        and training_args.logging_steps == TRAINER_LOGGING_STEPS
    ):
        training_args.logging_steps = max(1, epoch_steps // LOGS_PER_EPOCH)
    if has_eval and training_args.eval_strategy == IntervalStrategy.NO:
        training_args.eval_strategy = IntervalStrategy.EPOCH


def find_learning_rate(trainer: Trainer, what: str):
    """fastai's LR finder on `trainer` (its model and optimizer are left as they were): `lr_find.png` in the
    trainer's `output_dir`, the suggestions printed. Returns the `LRFinderResult`."""
    result = lr_find(trainer)
    path = os.path.join(trainer.args.output_dir, "lr_find.png")
    if trainer.is_world_process_zero():
        os.makedirs(trainer.args.output_dir, exist_ok=True)
        try:
            result.plot(path, title=f"LR finder: {what}")
        except ImportError as err:
            logger.warning("lr_find.png not written: %s", err)
    shown = ", ".join(f"{method} {lr:.2e}" for method, lr in result.suggestions.items()) or "nothing"
    print(f"{what}: the LR finder suggests {shown} ({len(result.lrs)} steps; plot {path})")
    return result


def resolve_lr(lr: float | None, want_finder: bool, make_trainer, resuming: bool, what: str, placeholder: float):
    """The learning rate and the trainer to train with: `lr`, or (`lr` None: 'auto') the LR finder's valley
    suggestion. The finder runs when asked for or needed, but not when resuming (the checkpoint holds the learning
    rates; `placeholder` builds the optimizer whose state the checkpoint's then replaces). `make_trainer(lr)` builds
    the trainer. Returns (lr, trainer, notes for the model card)."""
    trainer = make_trainer(lr if lr is not None else placeholder)
    if not (want_finder or lr is None):
        return lr, trainer, {}
    if resuming:
        logger.warning("%s: resuming from a checkpoint, whose learning rates hold; the LR finder is skipped", what)
        return (lr if lr is not None else placeholder), trainer, {}
    result = find_learning_rate(trainer, what)
    notes = {"LR finder suggestions": ", ".join(f"{k} {v:.2e}" for k, v in result.suggestions.items())}
    if lr is not None:
        return lr, trainer, notes
    lr = result.valley
    print(f"{what}: training at the valley suggestion, learning rate {lr:.2e}")
    return lr, make_trainer(lr), notes


def save_training_curves(trainer: Trainer, title: str) -> None:
    """`training_curves.png` in the trainer's `output_dir`: training and validation loss and the validation metric
    against the step (needs matplotlib; skipped with a warning without it)."""
    if not trainer.is_world_process_zero():
        return
    path = os.path.join(trainer.args.output_dir, "training_curves.png")
    try:
        plot_training_curves(trainer.state.log_history, path, title=title)
    except ImportError as err:
        logger.warning("training_curves.png not written: %s", err)


def last_checkpoint(output_dir: str) -> str | None:
    """The latest `checkpoint-N` folder in `output_dir`, or None (as run_glue.py does)."""
    return get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None


__all__ = [
    "card_language",
    "checked_start",
    "TRAINER_LOGGING_STEPS",
    "LOGS_PER_EPOCH",
    "parse_lr",
    "steps_per_epoch",
    "log_for_curves",
    "find_learning_rate",
    "resolve_lr",
    "save_training_curves",
    "last_checkpoint",
]
