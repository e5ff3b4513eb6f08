"""Worker for tests/test_resume.py: Trainer runs of the BPT3C classifier and of the stream LM (dropout on) that
either run to the end, kill themselves with SIGKILL right after a checkpoint, or resume from the latest one.

Usage: python tests/resume_worker.py {classifier,lm} {full,kill,resume} OUT_DIR
Writes OUT_DIR/final.pt (the trained parameters) unless killed.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from hf_bpt3c import AwdLstmConfig, AwdLstmForCausalLM, AwdLstmForSequenceClassification
from hf_bpt3c.training import (
    ActivationRegularizationCallback,
    GradualUnfreezingCallback,
    StreamStateCallback,
    ulmfit_optimizers,
)
from hf_bpt3c.training.data import LMStreamDataset

KILL_AT_STEP = {"classifier": 6, "lm": 15}  # the LM's inside its second (reshuffled) epoch
SIZES = dict(vocab_size=60, embedding_size=8, hidden_size=12, num_hidden_layers=2, bptt=5, max_len=15)


class KillAfterCheckpoint(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def pad_batch(features: list[dict]) -> dict[str, torch.Tensor]:
    """Right-pad a classifier batch with pad id 1 and build its attention mask."""
    width = max(len(f["input_ids"]) for f in features)
    ids = torch.ones(len(features), width, dtype=torch.long)
    mask = torch.zeros(len(features), width, dtype=torch.long)
    for row, f in enumerate(features):
        ids[row, : len(f["input_ids"])], mask[row, : len(f["input_ids"])] = torch.tensor(f["input_ids"]), 1
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([f["labels"] for f in features])}


def classifier_run(out: Path, callbacks: list) -> tuple[Trainer, torch.nn.Module]:
    model = AwdLstmForSequenceClassification(AwdLstmConfig.for_classification(**SIZES, num_labels=2))
    gen = torch.Generator().manual_seed(1)
    lengths = torch.randint(3, 40, (48,), generator=gen).tolist()
    items = [
        {"input_ids": torch.randint(9, 60, (n,), generator=gen).tolist(), "labels": i % 2}
        for i, n in enumerate(lengths)
    ]
    args = arguments(out, epochs=3, train_sampling_strategy="group_by_length")
    trainer = Trainer(
        model,
        args,
        train_dataset=items,
        data_collator=pad_batch,
        optimizers=ulmfit_optimizers(model, 1e-2, num_training_steps=18),
        callbacks=[GradualUnfreezingCallback(), ActivationRegularizationCallback(), *callbacks],
    )
    return trainer, model


def lm_run(out: Path, callbacks: list) -> tuple[Trainer, torch.nn.Module]:
    model = AwdLstmForCausalLM(AwdLstmConfig.for_language_model(**SIZES))
    gen = torch.Generator().manual_seed(2)
    docs = [torch.randint(9, 60, (30,), generator=gen).tolist() for _ in range(16)]
    data = LMStreamDataset(docs, batch_size=4, bptt=10, shuffle=True, seed=3)  # 12 windows per stream
    args = arguments(out, epochs=2, train_sampling_strategy="sequential")
    trainer = Trainer(
        model,
        args,
        train_dataset=data,
        optimizers=ulmfit_optimizers(model, 1e-2, num_training_steps=2 * data.n_windows),
        callbacks=[StreamStateCallback(), ActivationRegularizationCallback(), *callbacks],
    )
    return trainer, model


def arguments(out: Path, epochs: int, **overrides) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=4 if overrides["train_sampling_strategy"] == "sequential" else 8,
        num_train_epochs=epochs,
        save_strategy="steps",
        save_steps=3,
        use_cpu=True,
        report_to=[],
        logging_strategy="no",
        disable_tqdm=True,
        seed=0,
        **overrides,
    )


def main() -> None:
    task, mode, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    torch.manual_seed(0)
    torch.set_num_threads(1)
    callbacks = [KillAfterCheckpoint(KILL_AT_STEP[task])] if mode == "kill" else []
    trainer, model = (classifier_run if task == "classifier" else lm_run)(out, callbacks)
    trainer.train(resume_from_checkpoint=mode == "resume")
    torch.save(model.state_dict(), out / "final.pt")


if __name__ == "__main__":
    main()
