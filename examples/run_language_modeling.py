#!/usr/bin/env python
"""Train or fine-tune an AWD-LSTM language model (ULMFiT stages 1 and 2) with `Trainer`, and report perplexity.

Documents are concatenated into `per_device_train_batch_size` contiguous streams read in `bptt`-token windows,
with the LSTM state carried from batch to batch (fastai's `LMDataLoader`). The recipe is fastai's: AdamW with
betas (0.8, 0.99), discriminative learning rates (/2.6 per layer group), one-cycle or slanted triangular
schedule, AR/TAR regularisation, and optionally training only the embedding/decoder group first. `--lr_find` runs
fastai's learning-rate finder first (`lr_find.png`, suggestions printed; `--lr auto` trains with its `valley`
suggestion). Writes `training_curves.png` (training and validation loss, validation perplexity) next to the model.

Examples:
    python examples/run_language_modeling.py --train_file texts.csv --text_column text --output_dir lm \\
        --num_train_epochs 5 --per_device_train_batch_size 32
    hf-bpt3c fetch-fastai wt103-fwd --out wt103-fwd          # fastai's pretrained WikiText-103 LM
    python examples/run_language_modeling.py --model_name_or_path wt103-fwd --train_file my.jsonl \\
        --num_train_epochs 10 --output_dir my-lm
        # fine-tune it: vocabulary built from my.jsonl, pretrained rows mapped onto it by token; 1 frozen epoch
        # (embedding/decoder only) at --frozen_lr 2e-2, then everything at --lr 2e-3
    python examples/run_language_modeling.py --train_file "corpus/*.txt" --preprocessing_num_workers 2 \\
        --save_steps 2000 --num_train_epochs 10 --output_dir my-pretrained-lm
        # pretrain your own (a new language or domain); rerun the same command to resume from the last checkpoint
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import datasets
import transformers
from huggingface_hub.utils import tqdm
from transformers import HfArgumentParser, Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.trainer_utils import IntervalStrategy, get_last_checkpoint

from hf_bpt3c import AwdLstmConfig, AwdLstmForCausalLM, AwdLstmTokenizer
from hf_bpt3c.convert.transfer import adapt_vocabulary
from hf_bpt3c.training import (
    ActivationRegularizationCallback,
    EvaluationRandomStateCallback,
    freeze_to,
    layer_groups,
    lr_find,
    num_training_steps,
    plot_training_curves,
    ulmfit_optimizers,
)
from hf_bpt3c.training.data import LMStreamDataset, StreamStateCallback

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
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes that tokenize the texts (datasets' num_proc)."}
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


NEW_MODEL_SIZES = {"embedding_size": 400, "hidden_size": 1152, "num_hidden_layers": 3}  # ULMFiT's
TRAINER_LOGGING_STEPS = 500  # TrainingArguments' default logging_steps
LOGS_PER_EPOCH = 5  # training-loss points per epoch in training_curves.png (unless --logging_steps is given)


# ----------------------------------------------------------------------------------------------------------------
# Shared by the example scripts: learning rates, the LR finder, the training curves
# ----------------------------------------------------------------------------------------------------------------


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


def steps_per_epoch(num_examples: int, training_args: TrainingArguments) -> int:
    """Optimizer steps in one epoch of `num_examples` items."""
    one_epoch = dataclasses.replace(training_args, num_train_epochs=1, max_steps=-1)
    return num_training_steps(num_examples, one_epoch)


def log_for_curves(training_args: TrainingArguments, epoch_steps: int, has_eval: bool) -> None:
    """Log enough for `training_curves.png` when the command line left Trainer's defaults (logging every 500 steps,
    no evaluation during training): the training loss about 5 times per epoch, and an evaluation after every epoch
    when there is validation data. The scripts' `EvaluationRandomStateCallback` keeps these evaluations from
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


def load_splits(data_args: DataArguments) -> datasets.DatasetDict:
    """A DatasetDict with `train` and `validation`, from files (a glob such as `corpus/*.txt` reads them all) or a
    dataset name."""
    if data_args.dataset_name:
        raw = datasets.load_dataset(data_args.dataset_name, data_args.dataset_config_name)
    else:
        if not data_args.train_file:
            raise ValueError("give --train_file (CSV, JSON lines or .txt) or --dataset_name")
        files = {"train": data_args.train_file}
        if data_args.validation_file:
            files["validation"] = data_args.validation_file
        raw = datasets.load_dataset(file_builder(data_args.train_file), data_files=files)
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


def file_builder(path: str) -> str:
    """The `datasets` builder for a file: "json" (.json/.jsonl), "text" (.txt: one text per line, column "text")
    or "csv"."""
    extension = os.path.splitext(path)[1].lstrip(".")
    return {"json": "json", "jsonl": "json", "txt": "text"}.get(extension, "csv")


def iterate_texts(data: datasets.Dataset, column: str, desc: str, batch_size: int = 1000) -> Iterator[str]:
    """The texts of `data[column]`, read in batches with a progress bar (the whole column is never a list)."""
    with tqdm(total=len(data), desc=desc, unit=" texts") as progress:
        for start in range(0, len(data), batch_size):
            texts = data[start : start + batch_size][column]
            yield from texts
            progress.update(len(texts))


def build_tokenizer(data: datasets.Dataset, column: str, max_vocab: int, min_freq: int) -> AwdLstmTokenizer:
    """A fastai-style word vocabulary built from `data[column]`."""
    logger.info("building a vocabulary from %d texts (max_vocab=%d, min_freq=%d)", len(data), max_vocab, min_freq)
    texts = iterate_texts(data, column, "building the vocabulary")
    return AwdLstmTokenizer.from_texts(texts, max_vocab=max_vocab, min_freq=min_freq)


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
            tokenizer = build_tokenizer(train_data, column, model_args.max_vocab, model_args.min_freq)
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
    source = model_args.model_name_or_path
    model = AwdLstmForCausalLM.from_pretrained(source, config=_pretrained_config(model_args))
    pretrained_tokenizer = AwdLstmTokenizer.from_pretrained(source)
    if model_args.keep_vocab:
        return model, pretrained_tokenizer, {"start": source, "vocabulary": "the pretrained one"}
    if tokenizer is None:
        tokenizer = build_tokenizer(train_data, column, model_args.max_vocab, model_args.min_freq)
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
) -> LMStreamDataset:
    """Token ids of every text (tokenized in batches, `num_proc` processes, with a progress bar) laid out as
    `batch_size` contiguous streams per process."""

    def encode(batch: dict) -> dict:
        return {"input_ids": tokenizer(batch[column])["input_ids"]}

    with training_args.main_process_first(desc="tokenizing"):
        ids = data.map(encode, batched=True, num_proc=num_proc, remove_columns=data.column_names, desc="tokenizing")
    ids = ids.with_format("numpy")["input_ids"]
    return LMStreamDataset(
        ids, batch_size, config.bptt, world_size=training_args.world_size, backwards=config.backwards
    )


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
    train_data = tokenize_streams(train_texts, text_column, tokenizer, batch, config, training_args, num_proc)
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

    def make_trainer(lr: float) -> Trainer:
        optimizers = ulmfit_optimizers(model, lr, steps, schedule=model_args.schedule, factor=model_args.lr_factor)
        callbacks = [StreamStateCallback(), ActivationRegularizationCallback(model_args.ar_alpha, model_args.tar_beta)]
        callbacks += [PerplexityCallback(), EvaluationRandomStateCallback()]
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
        }
    }
    trainer.save_model(training_args.output_dir)
    tokenizer.save_pretrained(training_args.output_dir)
    save_training_curves(trainer, "language model")
    if trainer.is_world_process_zero():
        with open(os.path.join(training_args.output_dir, "lm_results.json"), "w") as f:
            json.dump(metrics, f, indent=2)
    return model, tokenizer, metrics


def last_checkpoint(output_dir: str) -> str | None:
    """The latest `checkpoint-N` folder in `output_dir`, or None (as run_glue.py does)."""
    return get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None


def main() -> None:
    parser = HfArgumentParser((LanguageModelArguments, DataArguments, TrainingArguments))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    transformers.utils.logging.set_verbosity_warning()
    set_seed(training_args.seed)
    splits = load_splits(data_args)
    _, _, metrics = train_language_model(
        model_args,
        training_args,
        splits["train"],
        splits["validation"],
        text_column=data_args.text_column,
        num_proc=data_args.preprocessing_num_workers,
    )
    if "perplexity" in metrics:
        print(f"validation perplexity: {metrics['perplexity']:.2f}")


if __name__ == "__main__":
    sys.exit(main())
