#!/usr/bin/env python
"""Train or fine-tune an AWD-LSTM language model (ULMFiT stages 1 and 2) with `Trainer`, and report perplexity.

Documents are concatenated into `per_device_train_batch_size` contiguous streams read in `bptt`-token windows,
with the LSTM state carried from batch to batch (fastai's `LMDataLoader`). The recipe is fastai's: AdamW with
betas (0.8, 0.99), discriminative learning rates (/2.6 per layer group), one-cycle or slanted triangular
schedule, AR/TAR regularisation, and optionally training only the embedding/decoder group first. `--lr_find` runs
fastai's learning-rate finder first (`lr_find.png`, suggestions printed; `--lr auto` trains with its `valley`
suggestion). Writes `training_curves.png` (training and validation loss, validation perplexity) next to the model.
The training itself is `hf_bpt3c.training.scripts.train_language_model`. Batches default to 32 streams (Trainer's
default of 8 makes matrix products too small to keep a CPU's cores busy; fastai uses 64), as in run_ulmfit.py.
The work to do is printed when training begins, the measured speed and the minutes left after 21 steps.

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

import logging
import os
import sys

# PyTorch's 2 MB pages for its large CPU tensors, set before torch allocates any: the language model's logits
# and their gradient are allocated every step, and with 4 KB pages a third of the CPU time goes to page faults
# (benchmarks/lm_speed.py). Set THP_MEM_ALLOC_ENABLE=0 to keep 4 KB pages.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import transformers
from transformers import HfArgumentParser, TrainingArguments, set_seed

from hf_bpt3c.training.scripts import (
    DataArguments,
    LanguageModelArguments,
    load_splits,
    train_language_model,
    training_defaults,
)

LM_BATCH_SIZE = 32  # streams per process, unless --per_device_train_batch_size says otherwise


def main() -> None:
    parser = HfArgumentParser((LanguageModelArguments, DataArguments, TrainingArguments))
    parser.set_defaults(
        per_device_train_batch_size=LM_BATCH_SIZE, per_device_eval_batch_size=LM_BATCH_SIZE, **training_defaults()
    )
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
