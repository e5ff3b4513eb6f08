"""Worker for tests/test_ddp.py: a few Trainer steps of the classifier (with gradual unfreezing) and of the
stream LM, dropout off, run either as one process with the combined batch or as ranks under torchrun (gloo).

Usage: python tests/ddp_worker.py OUT_DIR       (one process, batch 8)
       torchrun --nproc_per_node 2 tests/ddp_worker.py OUT_DIR   (2 ranks, batch 4 each)
Writes OUT_DIR/{classifier,lm}.pt (final parameters, rank 0) and OUT_DIR/trainable_rank{r}.json.
"""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from hf_bpt3c import AwdLstmConfig, AwdLstmForCausalLM, AwdLstmForSequenceClassification
from hf_bpt3c.training import GradualUnfreezingCallback, StreamStateCallback, layer_groups, ulmfit_optimizers
from hf_bpt3c.training.data import LMStreamDataset

GLOBAL_BATCH = 8
ZERO_DROPOUT = dict(embedding_dropout=0, weight_dropout=0, input_dropout=0, hidden_dropout=0, output_dropout=0)
SIZES = dict(vocab_size=50, embedding_size=8, hidden_size=12, num_hidden_layers=2, bptt=6, max_len=12)


def freeze_batch_norm(model: torch.nn.Module) -> None:
    """Keep every BatchNorm on its running statistics, even when Trainer calls `model.train()` (the equality that
    holds without SyncBatchNorm, which gloo on CPU does not support: with batch statistics each rank normalises
    with its own half of the batch)."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.eval()
            module.train = types.MethodType(lambda self, mode=True: torch.nn.Module.train(self, False), module)


class RecordTrainable(TrainerCallback):
    def __init__(self):
        self.per_epoch: list[list[bool]] = []

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if len(self.per_epoch) <= int(state.epoch or 0):
            self.per_epoch.append([all(p.requires_grad for p in group) for group in layer_groups(model)])


def training_args(out: Path, world_size: int, epochs: int) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(out / "trainer"),
        per_device_train_batch_size=GLOBAL_BATCH // world_size,
        num_train_epochs=epochs,
        train_sampling_strategy="sequential",
        use_cpu=True,
        ddp_backend="gloo" if world_size > 1 else None,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        seed=0,
        max_grad_norm=1e9,
    )


def train_classifier(out: Path, world_size: int) -> tuple[AwdLstmForSequenceClassification, list]:
    torch.manual_seed(0)
    model = AwdLstmForSequenceClassification(AwdLstmConfig(**SIZES, **ZERO_DROPOUT, classifier_dropouts=[0.0]))
    freeze_batch_norm(model)
    gen = torch.Generator().manual_seed(1)
    items = [
        {"input_ids": torch.randint(9, 50, (30,), generator=gen), "labels": torch.tensor(i % 2)} for i in range(32)
    ]
    args = training_args(out, world_size, epochs=3)
    recorder = RecordTrainable()
    trainer = Trainer(
        model,
        args,
        train_dataset=items,
        optimizers=ulmfit_optimizers(model, 1e-2, num_training_steps=12),
        callbacks=[GradualUnfreezingCallback(), recorder],
    )
    trainer.train()
    return model, recorder.per_epoch


def train_lm(out: Path, world_size: int) -> AwdLstmForCausalLM:
    torch.manual_seed(0)
    model = AwdLstmForCausalLM(AwdLstmConfig(**SIZES, **ZERO_DROPOUT))
    gen = torch.Generator().manual_seed(2)
    docs = [torch.randint(9, 50, (40,), generator=gen).tolist() for _ in range(12)]
    data = LMStreamDataset(docs, GLOBAL_BATCH // world_size, bptt=6, world_size=world_size)
    trainer = Trainer(
        model,
        training_args(out, world_size, epochs=1),
        train_dataset=data,
        optimizers=ulmfit_optimizers(model, 1e-2, num_training_steps=data.n_windows),
        callbacks=[StreamStateCallback()],
    )
    trainer.train()
    return model


def main() -> None:
    out = Path(sys.argv[1])
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    torch.set_num_threads(1)
    classifier, trainable = train_classifier(out, world_size)
    lm = train_lm(out, world_size)
    (out / f"trainable_rank{rank}.json").write_text(json.dumps(trainable))
    if rank == 0:
        torch.save(classifier.state_dict(), out / "classifier.pt")
        torch.save(lm.state_dict(), out / "lm.pt")
    sys.stdout.flush()
    os._exit(0)  # gloo teardown can hang or abort after the work is done (see the environment notes)


if __name__ == "__main__":
    main()
