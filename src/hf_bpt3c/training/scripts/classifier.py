"""ULMFiT's stage 3 as one function: a BPT3C classifier trained from an AWD-LSTM language model with `Trainer` and
fastai's recipe (classifier dropouts, discriminative learning rates, gradual unfreezing, one-cycle or slanted
triangular schedule, AR/TAR; optionally the best epoch on held-out training documents), saved as a Hub-ready folder
with its model card and training curves."""

from __future__ import annotations

import dataclasses
import glob
import os
import shutil

from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainingArguments

from ...models.awd_lstm import AwdLstmConfig, AwdLstmForSequenceClassification, AwdLstmTokenizer
from ..callbacks import ActivationRegularizationCallback, EvaluationRandomStateCallback, GradualUnfreezingCallback
from ..data import SortishDataset, document_lengths
from ..recipe import num_training_steps, ulmfit_optimizers
from .arguments import ClassifierArguments
from .labels import Targets, encode_split, fit_targets
from .metrics import CARD_METRICS, metrics_for
from .runs import (
    card_language,
    checked_start,
    last_checkpoint,
    log_for_curves,
    parse_lr,
    resolve_lr,
    save_training_curves,
    steps_per_epoch,
)


def build_classifier(args: ClassifierArguments, targets: Targets) -> AwdLstmForSequenceClassification:
    """The classifier with the LM's encoder weights, fastai's classifier dropouts and these targets."""
    config = AwdLstmConfig.from_pretrained(checked_start(args.model_name_or_path, "language model or classifier"))
    preset = AwdLstmConfig.for_classification(drop_mult=args.drop_mult)
    for name in ("embedding_dropout", "weight_dropout", "input_dropout", "hidden_dropout", "output_dropout"):
        setattr(config, name, getattr(preset, name))
    config.bptt, config.max_len, config.classifier_pooling = args.bptt, args.max_len, args.classifier_pooling
    config.id2label = dict(enumerate(targets.names))
    config.label2id = {label: i for i, label in enumerate(targets.names)}
    config.problem_type = targets.problem_type
    config.validate_awd_lstm()
    return AwdLstmForSequenceClassification.from_pretrained(args.model_name_or_path, config=config)


def ordered_for_training(args: ClassifierArguments, training_args: TrainingArguments, train_data):
    """Batches of similar lengths: with `args.batch_order == "sortish"` (the default) fastai's `SortedDL` order
    (`SortishDataset`, read sequentially), else Trainer's `group_by_length` (a plain `random` becomes it)."""
    strategy = training_args.train_sampling_strategy
    if args.batch_order == "sortish":
        if strategy != "random":
            raise ValueError(
                f"--batch_order sortish (the default) orders the batches itself: leave --train_sampling_strategy at "
                f"its default (got {strategy!r}), or pass --batch_order group_by_length for Trainer's order"
            )
        seed = training_args.seed if training_args.data_seed is None else training_args.data_seed
        lengths = document_lengths(train_data["input_ids"])
        train_data = SortishDataset(train_data, lengths, training_args.per_device_train_batch_size, seed=seed)
        training_args.train_sampling_strategy = "sequential"
    elif strategy == "random":
        training_args.train_sampling_strategy = "group_by_length"
    return train_data


def held_out_split(args: ClassifierArguments, training_args: TrainingArguments, train_split):
    """`(training rows, held-out rows)`: `args.early_stopping_holdout` percent of `train_split` held out with the
    run's seed (`data_seed` if set), or `(train_split, None)` at 0."""
    percent, patience = args.early_stopping_holdout, args.early_stopping_patience
    if not isinstance(percent, int) or not 0 <= percent < 100:
        raise ValueError(f"--early_stopping_holdout is a percent of the training documents, 0-99 (got {percent!r})")
    if patience is not None and (percent == 0 or patience < 1):
        raise ValueError(
            f"--early_stopping_patience needs --early_stopping_holdout > 0 and is a number of epochs >= 1 "
            f"(got patience {patience!r}, holdout {percent!r})"
        )
    if percent == 0:
        return train_split, None
    seed = training_args.seed if training_args.data_seed is None else training_args.data_seed
    parts = train_split.train_test_split(test_size=percent / 100, seed=seed)
    return parts["train"], parts["test"]


def early_stopping_args(training_args: TrainingArguments) -> TrainingArguments:
    """`training_args` that evaluate the held-out documents and save a checkpoint after every epoch and reload the
    best epoch at the end: that of the lowest held-out loss, or of the best `metric_for_best_model` when the user set
    one (e.g. `accuracy`); one checkpoint is kept besides the best unless `save_total_limit` says otherwise."""
    for name in ("eval_strategy", "save_strategy"):
        if getattr(training_args, name) not in ("no", "epoch"):
            raise ValueError(
                f"--early_stopping_holdout evaluates and saves after every epoch: leave --{name} at 'no' or set it "
                f"to 'epoch' (got {getattr(training_args, name)!r})"
            )
    return dataclasses.replace(
        training_args,
        eval_strategy="epoch",
        save_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model=training_args.metric_for_best_model or "loss",
        greater_is_better=training_args.greater_is_better,  # None: Trainer's rule (lower is better for a loss)
        save_total_limit=training_args.save_total_limit or 1,
    )


def kept_epoch(trainer: Trainer) -> float | None:
    """The epoch of the best held-out metric (the weights `load_best_model_at_end` reloaded)."""
    name = trainer.args.metric_for_best_model
    key = name if name.startswith("eval_") else f"eval_{name}"
    epochs = [log["epoch"] for log in trainer.state.log_history if log.get(key) == trainer.state.best_metric]
    return epochs[0] if epochs else None


def checkpoints_in(output_dir: str) -> set[str]:
    return set(glob.glob(os.path.join(output_dir, "checkpoint-*")))


def remove_checkpoints(output_dir: str, keep: set[str]) -> None:
    """Delete the `checkpoint-N` folders that only served to pick the epoch (the user asked for no checkpoints),
    all but those in `keep` (there before this run)."""
    for path in checkpoints_in(output_dir) - keep:
        shutil.rmtree(path, ignore_errors=True)


def train_classifier(
    args: ClassifierArguments,
    training_args: TrainingArguments,
    splits,
    text_column: str,
    tokenizer: AwdLstmTokenizer | None = None,
    *,
    metrics_dir: str | os.PathLike,
) -> tuple[Trainer, dict]:
    """Train on `splits["train"]`, evaluate on `splits["validation"]`, save a Hub-ready folder with
    `training_curves.png`. `args.lr` is a number or 'auto' (the LR finder's valley suggestion); `args.lr_find` runs
    the finder (`lr_find.png`) before training. `metrics_dir` holds the `evaluate` modules (`metrics_for`). Returns
    the trainer and the metrics."""
    tokenizer = tokenizer or AwdLstmTokenizer.from_pretrained(args.tokenizer_name or args.model_name_or_path)
    targets = fit_targets(args, splits["train"])
    train_split, held_out = held_out_split(args, training_args, splits["train"])
    checkpoints_to_keep = None  # with early stopping and no checkpoints asked for: those there before this run
    if held_out is not None:
        if training_args.save_strategy == "no":
            checkpoints_to_keep = checkpoints_in(training_args.output_dir)
        training_args = early_stopping_args(training_args)
    model = build_classifier(args, targets)
    with training_args.main_process_first(desc="tokenizing"):
        train_data = encode_split(train_split, "train", targets, tokenizer, text_column)
        eval_data = encode_split(splits["validation"], "validation", targets, tokenizer, text_column)
        held_out_data = None if held_out is None else encode_split(held_out, "train", targets, tokenizer, text_column)
    train_data = ordered_for_training(args, training_args, train_data)
    log_for_curves(training_args, steps_per_epoch(len(train_data), training_args), len(eval_data) > 0)
    steps = num_training_steps(len(train_data), training_args)

    def make_trainer(lr: float) -> Trainer:
        callbacks = [ActivationRegularizationCallback(args.ar_alpha, args.tar_beta), EvaluationRandomStateCallback()]
        if args.gradual_unfreezing:
            callbacks.append(GradualUnfreezingCallback())
        if args.early_stopping_patience:
            callbacks.append(EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience))
        return Trainer(
            model=model,
            args=training_args,
            train_dataset=train_data,
            eval_dataset=eval_data if held_out_data is None else held_out_data,
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=metrics_for(targets.problem_type, metrics_dir),
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
    eval_metrics = trainer.evaluate(eval_data)
    metrics = {**train_metrics, **eval_metrics}
    early_stopping = {}
    if held_out_data is not None:
        epoch = kept_epoch(trainer)
        early_stopping = {
            "held out for early stopping": len(held_out_data),
            "early stopping metric": training_args.metric_for_best_model,
            "kept epoch": epoch,
        }
        metric = training_args.metric_for_best_model
        print(f"classifier: kept epoch {epoch} (best {metric} on {len(held_out_data)} held-out training documents)")
        if checkpoints_to_keep is not None and trainer.is_world_process_zero():
            remove_checkpoints(training_args.output_dir, keep=checkpoints_to_keep)
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
            **early_stopping,
        },
        **card_language(trainer.processing_class),
    }
    trainer.save_model(training_args.output_dir)
    tokenizer.save_pretrained(training_args.output_dir)
    save_training_curves(trainer, "classifier")
    for split, split_metrics in (("train", train_metrics), ("eval", eval_metrics)):
        trainer.log_metrics(split, split_metrics)
        trainer.save_metrics(split, split_metrics)  # {split}_results.json and all_results.json
    trainer.save_state()
    return trainer, metrics


__all__ = ["build_classifier", "held_out_split", "train_classifier"]
