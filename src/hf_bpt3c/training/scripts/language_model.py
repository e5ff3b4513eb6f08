"""ULMFiT's stages 1 and 2 as one function: an AWD-LSTM language model trained from scratch or fine-tuned from a
pretrained one (its rows mapped onto the target vocabulary) with `Trainer` and fastai's recipe: contiguous streams
with the state carried from batch to batch, discriminative learning rates, one-cycle or slanted triangular
schedule, AR/TAR, and optionally the embedding/decoder group trained alone first."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os

import datasets
from transformers import Trainer, TrainerCallback, TrainingArguments

from ...convert.transfer import adapt_vocabulary
from ...models.awd_lstm import AwdLstmConfig, AwdLstmForCausalLM, AwdLstmTokenizer
from ...models.awd_lstm.tokenization_awd_lstm import is_english
from ..callbacks import (
    ActivationRegularizationCallback,
    EvaluationRandomStateCallback,
    StreamStateCallback,
    TimeEstimateCallback,
)
from ..data import LMStreamDataset
from ..params import freeze_to, layer_groups
from ..recipe import num_training_steps, ulmfit_optimizers
from .arguments import LanguageModelArguments
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
from .texts import iterate_texts

logger = logging.getLogger(__name__)

NEW_MODEL_SIZES = {"embedding_size": 400, "hidden_size": 1152, "num_hidden_layers": 3}  # ULMFiT's


def build_tokenizer(
    data: datasets.Dataset, column: str, model_args: LanguageModelArguments, pretrained: AwdLstmTokenizer | None = None
) -> AwdLstmTokenizer:
    """The vocabulary of `data[column]` (fastai's `make_vocab`, `--max_vocab`, `--min_freq`): with a `pretrained`
    tokenizer, its splitting (a SentencePiece model is kept) over the new texts; else a new `--tokenizer_type`
    tokenizer for `--lang` (SentencePiece: trained on the texts, `--sp_vocab_size` pieces)."""
    kind, lang = tokenizer_settings(model_args, pretrained)
    texts = iterate_texts(data, column, "building the vocabulary")
    logger.info("building a %s vocabulary (%s) from %d texts", kind, lang, len(data))
    if pretrained is not None:
        return pretrained.with_vocabulary(texts, max_vocab=model_args.max_vocab, min_freq=model_args.min_freq)
    if kind == "word" and model_args.sp_vocab_size is not None:
        raise ValueError("--sp_vocab_size is the size of a SentencePiece model: add --tokenizer_type sentencepiece")
    return AwdLstmTokenizer.from_texts(
        texts,
        max_vocab=model_args.max_vocab,
        min_freq=model_args.min_freq,
        model=kind,
        lang=lang,
        **({"vocab_size": model_args.sp_vocab_size} if kind == "sentencepiece" else {}),
    )


def tokenizer_settings(model_args: LanguageModelArguments, pretrained: AwdLstmTokenizer | None) -> tuple[str, str]:
    """The tokenizer type and language to build with: the given ones, or the pretrained tokenizer's (which the
    given ones must match), else `word` and `en`. A word tokenizer for another language is refused (its rules are
    spaCy's English)."""
    kind, lang = model_args.tokenizer_type, model_args.lang
    if pretrained is None:
        kind, lang = kind or "word", lang or "en"
        if kind == "word" and not is_english(lang):
            raise ValueError(
                f"--lang {lang}: the word tokenizer splits like spaCy's English; for another language add "
                "--tokenizer_type sentencepiece (fastai's SentencePieceTokenizer)"
            )
        return kind, lang
    own_kind, own_lang = pretrained.tokenizer_type, pretrained.init_kwargs.get("lang") or lang or "en"
    if kind is not None and kind != own_kind:
        raise ValueError(
            f"--tokenizer_type {kind}: the pretrained model's tokenizer is {own_kind}; its vocabulary is mapped onto "
            f"the new texts with its own splitting (leave --tokenizer_type out)"
        )
    if lang is not None and lang != own_lang:
        raise ValueError(f"--lang {lang}: the pretrained model's tokenizer is for {own_lang!r}")
    if model_args.sp_vocab_size is not None:
        raise ValueError("--sp_vocab_size trains a new SentencePiece model: a pretrained model keeps its own")
    return own_kind, own_lang


def _pretrained_config(model_args: LanguageModelArguments) -> AwdLstmConfig:
    """The checkpoint's config with fastai's LM dropouts times `drop_mult` and the given `bptt`/`backwards`;
    sizes given on the command line must equal the checkpoint's."""
    config = AwdLstmConfig.from_pretrained(model_args.model_name_or_path)
    for name in NEW_MODEL_SIZES:
        given = getattr(model_args, name)
        if given is not None and given != getattr(config, name):
            raise ValueError(
                f"--{name} {given} differs from the pretrained model's {getattr(config, name)} "
                f"({model_args.model_name_or_path}): sizes come from the checkpoint, leave --{name} out"
            )
    preset = AwdLstmConfig.for_language_model(drop_mult=model_args.drop_mult)
    for name in ("embedding_dropout", "weight_dropout", "input_dropout", "hidden_dropout", "output_dropout"):
        setattr(config, name, getattr(preset, name))
    if model_args.bptt is not None:
        config.bptt = model_args.bptt
        config.max_len = max(config.max_len, config.bptt)
    if model_args.backwards is not None:
        config.backwards = model_args.backwards
    config.validate_awd_lstm()
    return config


def prepare_model(
    model_args: LanguageModelArguments, tokenizer: AwdLstmTokenizer | None, train_data: datasets.Dataset, column: str
) -> tuple[AwdLstmForCausalLM, AwdLstmTokenizer, dict]:
    """The model to train and its tokenizer, and notes for the model card.

    - From a pretrained LM: its config (sizes, `bptt`, `backwards` unless given) and weights; the vocabulary is the
      target one (`tokenizer`, `--tokenizer_name`, or built from the training texts) and the pretrained rows are
      mapped onto it by token (fastai's `match_embeds`), unless `--keep_vocab`.
    - From scratch: a new model with the given sizes (ULMFiT's by default) and `tokenizer` (or `--tokenizer_name`,
      or one built from the training texts).
    """
    if tokenizer is None and model_args.tokenizer_name:
        tokenizer = AwdLstmTokenizer.from_pretrained(model_args.tokenizer_name)
    if model_args.model_name_or_path is None:
        if tokenizer is None:
            tokenizer = build_tokenizer(train_data, column, model_args)
        sizes = {
            k: getattr(model_args, k) if getattr(model_args, k) is not None else v for k, v in NEW_MODEL_SIZES.items()
        }
        config = AwdLstmConfig.for_language_model(
            drop_mult=model_args.drop_mult,
            vocab_size=len(tokenizer),
            bptt=model_args.bptt or 72,
            backwards=bool(model_args.backwards),
            pad_token_id=tokenizer.pad_token_id,
            **sizes,
        )
        return AwdLstmForCausalLM(config), tokenizer, {"start": "from scratch"}
    source = checked_start(model_args.model_name_or_path, "language model")
    model = AwdLstmForCausalLM.from_pretrained(source, config=_pretrained_config(model_args))
    pretrained_tokenizer = AwdLstmTokenizer.from_pretrained(source)
    if model_args.keep_vocab:
        return model, pretrained_tokenizer, {"start": source, "vocabulary": "the pretrained one"}
    if tokenizer is None:
        tokenizer = build_tokenizer(train_data, column, model_args, pretrained=pretrained_tokenizer)
    transfer = adapt_vocabulary(model, pretrained_tokenizer, tokenizer)
    logger.info(
        "target vocabulary: %d tokens, %d (%.1f%%) with pretrained rows, the others start from the mean row",
        transfer.total, transfer.found, 100 * transfer.coverage,
    )  # fmt: skip
    vocabulary = f"{transfer.total} target tokens, {transfer.found} with pretrained rows (match_embeds)"
    return transfer.model, tokenizer, {"start": source, "vocabulary": vocabulary}


def tokenize_streams(
    data: datasets.Dataset,
    column: str,
    tokenizer: AwdLstmTokenizer,
    batch_size: int,
    config: AwdLstmConfig,
    training_args: TrainingArguments,
    num_proc: int | None,
    shuffle: bool = False,
) -> LMStreamDataset:
    """Token ids of every text (tokenized in batches, `num_proc` processes, with a progress bar) laid out as
    `batch_size` contiguous streams per process; with `shuffle`, the texts in a new order every epoch (seeded by
    `training_args.seed`)."""

    def encode(batch: dict) -> dict:
        return {"input_ids": tokenizer(batch[column])["input_ids"]}

    with training_args.main_process_first(desc="tokenizing"):
        ids = data.map(encode, batched=True, num_proc=num_proc, remove_columns=data.column_names, desc="tokenizing")
    ids = ids.with_format("numpy")["input_ids"]
    return LMStreamDataset(
        ids, batch_size, config.bptt, world_size=training_args.world_size, backwards=config.backwards,
        shuffle=shuffle, seed=training_args.seed,
    )  # fmt: skip


class PerplexityCallback(TrainerCallback):
    """Add `perplexity` (from `loss`) and `eval_perplexity` (from `eval_loss`) to every log, so that the progress
    bar (or printed logs) and `trainer.state.log_history` show them."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs:
            return
        for loss, name in (("loss", "perplexity"), ("eval_loss", "eval_perplexity")):
            if loss in logs:
                logs[name] = math.exp(min(logs[loss], 50.0))
                if state.log_history and state.log_history[-1].get(loss) == logs[loss]:
                    state.log_history[-1][name] = logs[name]


def _trainer(model, args, train_data, eval_data, tokenizer, optimizers, callbacks) -> Trainer:
    return Trainer(
        model=model,
        args=args,
        train_dataset=train_data,
        eval_dataset=eval_data,
        processing_class=tokenizer,
        optimizers=optimizers,
        callbacks=callbacks,
    )


def train_frozen_epochs(
    model: AwdLstmForCausalLM,
    model_args: LanguageModelArguments,
    training_args: TrainingArguments,
    train_data: LMStreamDataset,
    tokenizer: AwdLstmTokenizer,
    epochs: int,
) -> dict:
    """fastai's first step with a pretrained LM: train only the embedding/decoder group (the new vocabulary's
    rows) for `epochs` one-cycle epochs at `frozen_lr`, then unfreeze everything."""
    groups = layer_groups(model)
    freeze_to(groups, 1)
    frozen_args = dataclasses.replace(training_args, num_train_epochs=epochs, save_strategy="no", eval_strategy="no")
    steps = num_training_steps(len(train_data), frozen_args)
    optimizers = ulmfit_optimizers(
        model, model_args.frozen_lr, steps, schedule=model_args.schedule, factor=model_args.lr_factor
    )
    streams = StreamStateCallback()
    callbacks = [streams, ActivationRegularizationCallback(model_args.ar_alpha, model_args.tar_beta)]
    trainer = _trainer(model, frozen_args, train_data, None, tokenizer, optimizers, [*callbacks, PerplexityCallback()])
    try:
        metrics = trainer.train().metrics
    finally:
        freeze_to(groups, len(groups))
        streams.remove()  # the next phase carries its own streams
    return {f"frozen_{k}": v for k, v in metrics.items()}


def train_language_model(
    model_args: LanguageModelArguments,
    training_args: TrainingArguments,
    train_texts: list[str] | datasets.Dataset,
    eval_texts: list[str] | datasets.Dataset | None,
    tokenizer: AwdLstmTokenizer | None = None,
    text_column: str = "text",
    num_proc: int | None = None,
) -> tuple[AwdLstmForCausalLM, AwdLstmTokenizer, dict]:
    """Train (or fine-tune) the LM on the training texts, evaluate perplexity on the others, save model and tokenizer
    into `output_dir`. Texts are lists or `datasets.Dataset`s with a `text_column`; `tokenizer` is the target
    vocabulary (built from the training texts when None). Training resumes from the last checkpoint in
    `output_dir` when there is one (`--save_steps N` writes them; `--resume_from_checkpoint PATH` picks one).
    `--lr_find` (or `--lr auto`) runs the LR finder before the main phase; `training_curves.png` is written with
    the model."""
    train_texts, eval_texts = (
        datasets.Dataset.from_dict({text_column: list(texts)}) if isinstance(texts, list) else texts
        for texts in (train_texts, eval_texts)
    )
    model, tokenizer, card_notes = prepare_model(model_args, tokenizer, train_texts, text_column)
    config = model.config
    batch, eval_batch = training_args.per_device_train_batch_size, training_args.per_device_eval_batch_size
    shuffle = not model_args.no_lm_shuffle
    train_data = tokenize_streams(train_texts, text_column, tokenizer, batch, config, training_args, num_proc, shuffle)
    eval_data = None
    if eval_texts is not None and len(eval_texts):
        eval_data = tokenize_streams(eval_texts, text_column, tokenizer, eval_batch, config, training_args, num_proc)
    training_args.train_sampling_strategy = "sequential"  # windows must follow each other in every stream
    log_for_curves(training_args, steps_per_epoch(len(train_data), training_args), eval_data is not None)
    lr = parse_lr(model_args.lr)
    checkpoint = training_args.resume_from_checkpoint or last_checkpoint(training_args.output_dir)
    freeze_epochs = model_args.freeze_epochs
    if freeze_epochs is None:
        freeze_epochs = 1 if model_args.model_name_or_path else 0
    metrics = {}
    if freeze_epochs > 0 and checkpoint is None:
        metrics.update(train_frozen_epochs(model, model_args, training_args, train_data, tokenizer, freeze_epochs))
    steps = num_training_steps(len(train_data), training_args)
    tokens = config.bptt * batch * training_args.world_size * training_args.gradient_accumulation_steps  # per step

    def make_trainer(lr: float) -> Trainer:
        optimizers = ulmfit_optimizers(model, lr, steps, schedule=model_args.schedule, factor=model_args.lr_factor)
        callbacks = [StreamStateCallback(), ActivationRegularizationCallback(model_args.ar_alpha, model_args.tar_beta)]
        callbacks += [PerplexityCallback(), EvaluationRandomStateCallback()]
        callbacks.append(TimeEstimateCallback(tokens, "language model"))
        return _trainer(model, training_args, train_data, eval_data, tokenizer, optimizers, callbacks)

    lr, trainer, finder_notes = resolve_lr(
        lr, model_args.lr_find, make_trainer, checkpoint is not None, "language model", placeholder=2e-3
    )
    if checkpoint is not None:
        logger.info("resuming from %s", checkpoint)
    metrics.update(trainer.train(resume_from_checkpoint=checkpoint).metrics)
    if eval_data is not None:
        eval_metrics = trainer.evaluate()
        eval_metrics["perplexity"] = math.exp(min(eval_metrics["eval_loss"], 50.0))
        metrics.update(eval_metrics)
    model.model_card_info = {
        "training": {
            "stage": "language model",
            **card_notes,
            **(
                {"frozen epochs (embedding/decoder only)": f"{freeze_epochs} at lr {model_args.frozen_lr}"}
                if freeze_epochs > 0
                else {}
            ),
            "epochs": training_args.num_train_epochs,
            "learning rate (top group)": lr,
            **finder_notes,
            "discriminative lr factor": model_args.lr_factor,
            "schedule": model_args.schedule,
            "bptt": config.bptt,
            "backwards": config.backwards,
            "AR/TAR": f"{model_args.ar_alpha}/{model_args.tar_beta}",
            "tokens per epoch": len(train_data) * config.bptt,
        },
        **card_language(tokenizer),
    }
    trainer.save_model(training_args.output_dir)
    tokenizer.save_pretrained(training_args.output_dir)
    save_training_curves(trainer, "language model")
    if trainer.is_world_process_zero():
        with open(os.path.join(training_args.output_dir, "lm_results.json"), "w") as f:
            json.dump(metrics, f, indent=2)
    return model, tokenizer, metrics


__all__ = [
    "NEW_MODEL_SIZES",
    "build_tokenizer",
    "tokenizer_settings",
    "prepare_model",
    "tokenize_streams",
    "PerplexityCallback",
    "train_frozen_epochs",
    "train_language_model",
]
