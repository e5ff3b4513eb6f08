"""The ULMFiT recipe pieces, checked on numbers: groups, learning rates per group per step, unfreezing, AR/TAR,
and the language-model streams with a carried state."""

from __future__ import annotations

import ast
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import no_dropout, small_config
from transformers import Trainer, TrainerCallback, TrainingArguments

import hf_bpt3c
import hf_bpt3c.training
from hf_bpt3c import AwdLstmForCausalLM, AwdLstmForSequenceClassification
from hf_bpt3c.training import (
    ActivationRegularizationCallback,
    GradualUnfreezingCallback,
    activation_penalty,
    discriminative_param_groups,
    freeze_to,
    layer_groups,
    num_training_steps,
    rng_state,
    set_rng_state,
    ulmfit_optimizers,
)
from hf_bpt3c.training.callbacks import StreamStateCallback
from hf_bpt3c.training.data import LMStreamDataset


def classification_data(n: int = 16, length: int = 12) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(9, 60, (n, length), generator=gen)
    return [{"input_ids": ids[i], "labels": torch.tensor(i % 3)} for i in range(n)]


def args(tmp_path, **overrides) -> TrainingArguments:
    defaults = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        num_train_epochs=1,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    return TrainingArguments(**{**defaults, **overrides})


class RecordLearningRates(TrainerCallback):
    def __init__(self):
        self.lrs, self.betas = [], []

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        self.lrs.append([group["lr"] for group in optimizer.param_groups])
        self.betas.append(optimizer.param_groups[0]["betas"][0])


# ---------------------------------------------------------------------------------------------- groups and lrs


def test_layer_groups_follow_fastai():
    classifier = AwdLstmForSequenceClassification(small_config())
    groups = layer_groups(classifier)
    assert len(groups) == 5  # embedding, 3 LSTM layers, head
    assert groups[0] == [classifier.awd_lstm.embeddings.weight]
    assert groups[4] == list(classifier.classifier.parameters())
    lm = AwdLstmForCausalLM(small_config())
    lm_groups = layer_groups(lm)
    assert len(lm_groups) == 4 and lm_groups[3] == [lm.awd_lstm.embeddings.weight, lm.decoder.bias]
    assert sum(len(g) for g in lm_groups) == len(list(lm.parameters()))  # the tied weight is counted once


def test_discriminative_learning_rates():
    groups = discriminative_param_groups(AwdLstmForSequenceClassification(small_config()), lr=1e-2)
    assert [g["lr"] for g in groups] == pytest.approx([1e-2 / 2.6**k for k in (4, 3, 2, 1, 0)])


def stlr(step: int, total: int, lr: float, cut_frac: float = 0.1, ratio: float = 32) -> float:
    """ULMFiT eq. 3, written out independently."""
    cut = math.floor(total * cut_frac)
    p = step / cut if step < cut else 1 - (step - cut) / (cut * (1 / cut_frac - 1))
    return lr * (1 + p * (ratio - 1)) / ratio


def test_stlr_per_group_per_step_in_trainer(tmp_path):
    model = AwdLstmForSequenceClassification(small_config())
    data = classification_data(n=80)
    training_args = args(tmp_path, num_train_epochs=2)
    total = num_training_steps(len(data), training_args)
    assert total == 40
    optimizer, scheduler = ulmfit_optimizers(model, lr=1e-2, num_training_steps=total)
    recorder = RecordLearningRates()
    Trainer(model, training_args, train_dataset=data, optimizers=(optimizer, scheduler), callbacks=[recorder]).train()
    assert len(recorder.lrs) == total
    for step, lrs in enumerate(recorder.lrs):
        expected = [stlr(step, total, 1e-2 / 2.6**k) for k in (4, 3, 2, 1, 0)]
        assert lrs == pytest.approx(expected, rel=1e-9), step
    assert max(lr[-1] for lr in recorder.lrs) == pytest.approx(1e-2)
    assert optimizer.defaults["betas"] == (0.8, 0.99)


def test_one_cycle_schedule_values():
    model = AwdLstmForSequenceClassification(small_config())
    optimizer, scheduler = ulmfit_optimizers(model, lr=1e-2, num_training_steps=100, schedule="one_cycle")
    lrs, betas = [], []
    for _ in range(100):
        lrs.append(optimizer.param_groups[-1]["lr"])
        betas.append(optimizer.param_groups[-1]["betas"][0])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(1e-2 / 25)
    assert max(lrs) == pytest.approx(1e-2, rel=1e-3) and lrs.index(max(lrs)) in (24, 25)
    assert lrs[-1] == pytest.approx(1e-2 / 1e5)  # fastai's div_final
    assert betas[0] == pytest.approx(0.8) and min(betas) == pytest.approx(0.7, abs=1e-3)
    assert optimizer.param_groups[0]["lr"] / optimizer.param_groups[-1]["lr"] == pytest.approx(2.6**-4)


# ---------------------------------------------------------------------------------------------- unfreezing


class RecordTrainable(TrainerCallback):
    def __init__(self):
        self.per_epoch = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if len(self.per_epoch) <= int(state.epoch - 1e-9):
            groups = layer_groups(model)
            self.per_epoch.append([all(p.requires_grad for p in g) for g in groups])


def test_gradual_unfreezing_one_group_per_epoch(tmp_path):
    model = AwdLstmForSequenceClassification(small_config())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    recorder = RecordTrainable()
    trainer = Trainer(
        model,
        args(tmp_path, num_train_epochs=3),
        train_dataset=classification_data(),
        callbacks=[GradualUnfreezingCallback(), recorder],
    )
    trainer.train()
    assert recorder.per_epoch == [
        [False, False, False, False, True],
        [False, False, False, True, True],
        [False, False, True, True, True],
    ]
    assert torch.equal(before["awd_lstm.embeddings.weight"], model.awd_lstm.embeddings.weight)  # never unfrozen
    assert torch.equal(before["awd_lstm.layers.0.weight_ih"], model.awd_lstm.layers[0].weight_ih)
    assert not torch.equal(before["awd_lstm.layers.1.weight_ih"], model.awd_lstm.layers[1].weight_ih)
    assert all(p.requires_grad for p in model.parameters())  # trainable again after training


def test_unfreezing_follows_the_epoch_under_way_when_resuming_inside_an_epoch():
    """A run resumed from a checkpoint 5/6 into the first epoch starts with `state.epoch` 0.83: still epoch 0."""
    from transformers import TrainerControl, TrainerState

    model = AwdLstmForSequenceClassification(small_config())
    callback = GradualUnfreezingCallback()
    trainable = []
    for epoch in (0.0, 0.83, 1.0 - 1e-9, 1.5, 2.0):
        callback.on_epoch_begin(None, TrainerState(epoch=epoch), TrainerControl(), model=model)
        trainable.append(sum(all(p.requires_grad for p in group) for group in layer_groups(model)))
    assert trainable == [1, 1, 2, 2, 3]


def test_unfreezing_schedule_for_the_language_model():
    callback = GradualUnfreezingCallback(schedule=[1, 4])  # fastai's LM fine-tuning: top group, then all
    assert [callback.trainable_groups(e, 4) for e in range(4)] == [1, 4, 4, 4]


# ---------------------------------------------------------------------------------------------- AR / TAR


def test_activation_penalty_on_a_known_tensor():
    raw = torch.tensor([[[1.0], [3.0], [6.0]]])
    dropped = torch.tensor([[[1.0], [2.0], [2.0]]])
    # AR: mean(1, 4, 4) = 3 -> 2 * 3; TAR: mean(2^2, 3^2) = 6.5 -> 1 * 6.5
    assert activation_penalty(raw, dropped, alpha=2.0, beta=1.0).item() == pytest.approx(12.5)


def test_ar_tar_added_to_the_lm_loss():
    model = AwdLstmForCausalLM(no_dropout()).train()
    ids = torch.randint(9, 60, (3, 10))
    plain = model(ids, labels=ids)
    callback = ActivationRegularizationCallback(alpha=2.0, beta=1.0).attach(model)
    regularised = model(ids, labels=ids)
    expected = 2 * plain.last_hidden_state.pow(2).mean()
    expected += (plain.last_hidden_state[:, 1:] - plain.last_hidden_state[:, :-1]).pow(2).mean()
    assert (regularised.loss - plain.loss).item() == pytest.approx(expected.item(), rel=1e-5)
    callback.remove()
    assert model(ids, labels=ids).loss.item() == pytest.approx(plain.loss.item())


def test_ar_tar_on_the_classifier_uses_kept_chunks():
    config = no_dropout(bptt=5, max_len=10)
    model = AwdLstmForSequenceClassification(config).train()
    model.classifier.eval()
    ids = torch.randint(9, 60, (2, 25))  # 5 chunks, the last 2 kept
    labels = torch.tensor([0, 1])
    plain = model(ids, labels=labels).loss
    callback = ActivationRegularizationCallback(alpha=2.0, beta=1.0).attach(model)
    outputs = []
    handle = model.awd_lstm.layers[-1].register_forward_hook(lambda m, a, out: outputs.append(out[0].detach()))
    regularised = model(ids, labels=labels).loss
    handle.remove()
    kept = torch.cat(outputs[3:], dim=1)  # chunks 3 and 4 (0-2 are warm-up)
    ar = kept.pow(2).mean()
    tar = torch.cat([(o[:, 1:] - o[:, :-1]) for o in outputs[3:]], dim=1).pow(2).mean()
    assert (regularised - plain).item() == pytest.approx((2 * ar + tar).item(), rel=1e-5)
    model.eval()
    assert torch.equal(model(ids, labels=labels).loss, model(ids, labels=labels).loss)  # no penalty in eval
    callback.remove()


# ---------------------------------------------------------------------------------------------- LM streams


def test_stream_layout_for_one_and_two_processes():
    docs = [list(range(100 * d, 100 * d + 50)) for d in range(4)]  # 200 tokens
    data = LMStreamDataset(docs, batch_size=2, bptt=10, world_size=1)
    assert (len(data), data.n_windows) == (20, 10)
    flat = [t for d in docs for t in d]
    for i in range(len(data)):
        stream, window = i % 2, i // 2
        assert data[i]["input_ids"].tolist() == flat[stream * 100 + window * 10 : stream * 100 + window * 10 + 10]
    two = LMStreamDataset(docs, batch_size=2, bptt=10, world_size=2)  # 4 streams of 50 tokens
    batches = [[two[b * 2 + r]["input_ids"][0].item() for r in range(2)] for b in range(len(two) // 2)]
    rank0, rank1 = batches[0::2], batches[1::2]  # batches are dealt round-robin to the processes
    assert rank0[:2] == [[flat[0], flat[50]], [flat[10], flat[60]]]
    assert rank1[:2] == [[flat[100], flat[150]], [flat[110], flat[160]]]
    assert LMStreamDataset(docs, batch_size=2, bptt=10, backwards=True)[0]["input_ids"][0].item() == flat[-1]


def test_trainer_carries_the_stream_state(tmp_path):
    model = AwdLstmForCausalLM(no_dropout()).eval()
    gen = torch.Generator().manual_seed(0)
    docs = [torch.randint(9, 60, (37,), generator=gen).tolist() for _ in range(6)]
    data = LMStreamDataset(docs, batch_size=2, bptt=8)
    with torch.no_grad():  # reference: read both streams window by window, passing the state on
        state, losses = None, []
        for window in range(data.n_windows):
            batch = torch.stack([data[window * 2 + r]["input_ids"] for r in range(2)])
            out = model(batch, labels=batch, state=state)
            state, losses = out.state, losses + [out.loss.item()]
    callback = StreamStateCallback().attach(model)
    trainer = Trainer(model, args(tmp_path, per_device_eval_batch_size=2), eval_dataset=data, callbacks=[callback])
    carried = trainer.evaluate()["eval_loss"]
    assert carried == pytest.approx(sum(losses) / len(losses), rel=1e-5)
    callback.remove()
    fresh = trainer.evaluate()["eval_loss"]  # without the callback every window starts from zeros
    assert abs(fresh - carried) > 1e-4


def test_training_streams_reset_each_epoch(tmp_path):
    model = AwdLstmForCausalLM(small_config()).train()
    gen = torch.Generator().manual_seed(0)
    docs = [torch.randint(9, 60, (40,), generator=gen).tolist() for _ in range(4)]
    data = LMStreamDataset(docs, batch_size=2, bptt=10)  # 8 windows per stream
    received = []
    model.register_forward_hook(lambda m, a, kw, out: received.append("state" in kw), with_kwargs=True)
    training_args = args(
        tmp_path, per_device_train_batch_size=2, num_train_epochs=2, train_sampling_strategy="sequential"
    )
    Trainer(model, training_args, train_dataset=data, callbacks=[StreamStateCallback()]).train()
    assert received == ([False] + [True] * 7) * 2


def test_a_non_finite_stream_state_is_not_carried():
    model = AwdLstmForCausalLM(small_config()).eval()
    callback = StreamStateCallback().attach(model)
    ids = torch.randint(9, 60, (2, 6))
    with torch.no_grad():
        model(ids)
        assert callback.states[False] is not None
        model.awd_lstm.layers[0].bias_ih[0] = float("nan")
        with pytest.warns(UserWarning, match="not finite"):
            model(ids)
        assert callback.states[False] is None  # the next batch starts from zeros, not from NaN
    callback.remove()


def evaluated_run(tmp_path, kind: str, strategy: str) -> dict:
    """Final weights of a seeded 3-epoch run (dropout on) evaluating with `strategy`, with
    `EvaluationRandomStateCallback`: a classifier on shuffled batches, or an LM with its carried state."""
    from hf_bpt3c.training import EvaluationRandomStateCallback

    torch.manual_seed(0)
    callbacks = [EvaluationRandomStateCallback()]
    if kind == "classifier":
        model = AwdLstmForSequenceClassification(small_config())
        train_data, eval_data, extra = classification_data(32), classification_data(8), {}
    else:
        model = AwdLstmForCausalLM(small_config())
        ids = torch.randint(9, 60, (600,), generator=torch.Generator().manual_seed(1)).tolist()
        train_data = LMStreamDataset([ids[:400]], batch_size=4, bptt=5)
        eval_data = LMStreamDataset([ids[400:]], batch_size=4, bptt=5)
        extra = {"train_sampling_strategy": "sequential", "per_device_eval_batch_size": 4}
        callbacks += [StreamStateCallback(), ActivationRegularizationCallback(2.0, 1.0)]
    trainer = Trainer(
        model=model,
        args=args(tmp_path / strategy, num_train_epochs=3, eval_strategy=strategy, eval_steps=3, **extra),
        train_dataset=train_data,
        eval_dataset=eval_data,
        optimizers=ulmfit_optimizers(model, 1e-2, 3 * num_training_steps(len(train_data), args(tmp_path))),
        callbacks=callbacks,
    )
    trainer.train()
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("kind", ["classifier", "language_model"])
def test_evaluations_during_training_leave_the_weights_unchanged(tmp_path, kind):
    """Evaluating every epoch or every 3 steps trains the same weights, bit for bit, as not evaluating."""
    without = evaluated_run(tmp_path, kind, "no")
    for strategy in ("epoch", "steps"):
        weights = evaluated_run(tmp_path, kind, strategy)
        assert all(torch.equal(without[k], weights[k]) for k in without), strategy


# ---------------------------------------------------------------------------------------------- module layout


TRAINING = Path(hf_bpt3c.training.__file__).parent


def training_modules() -> dict[str, Path]:
    """`hf_bpt3c.training` and every module under it, by dotted name."""
    modules = {}
    for path in sorted(TRAINING.rglob("*.py")):
        parts = path.relative_to(TRAINING.parent).with_suffix("").parts
        modules[".".join(("hf_bpt3c", *(parts[:-1] if parts[-1] == "__init__" else parts)))] = path
    return modules


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules among `known` that `name` imports by a relative import (`from .x import y`, `from . import x`)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            target = f"{base}.{node.module}" if node.module else base
            candidates = [target] if node.module else []  # `from . import x` imports x, not the package
            candidates += [f"{target}.{alias.name}" for alias in node.names]
            found |= {module for module in candidates if module in known and module != name}
    return found


def test_the_training_modules_import_each_other_without_a_cycle():
    modules = training_modules()
    graph = {name: imported_modules(name, path, set(modules)) for name, path in modules.items()}
    done, visiting = set(), []

    def visit(name):
        assert name not in visiting, " -> ".join([*visiting[visiting.index(name) :], name])
        if name not in done:
            visiting.append(name)
            for imported in sorted(graph[name]):
                visit(imported)
            visiting.pop()
            done.add(name)

    for name in graph:
        visit(name)
    assert graph["hf_bpt3c.training.lr_finder"] >= {"hf_bpt3c.training.callbacks", "hf_bpt3c.training.params"}


def test_only_package_inits_define_a_module_getattr():
    for name, path in training_modules().items():
        tree = ast.parse(path.read_text())
        defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        assert path.name == "__init__.py" or "__getattr__" not in defined, name


def test_public_names_stay_where_they_were_and_the_callbacks_join_them():
    from hf_bpt3c.training import callbacks, data, lr_finder, params, random_state, recipe

    assert {
        "FASTAI_ADAM", "layer_groups", "discriminative_param_groups", "slanted_triangular_schedule",
        "one_cycle_schedule", "ulmfit_optimizers", "num_training_steps", "freeze_to", "GradualUnfreezingCallback",
        "activation_penalty", "ActivationRegularizationCallback", "EvaluationRandomStateCallback",
        "StreamStateCallback", "TimeEstimateCallback", "rng_state", "set_rng_state", "plot_training_curves",
        "SUGGESTION_METHODS", "LRFinderResult", "lr_find",
    } == set(hf_bpt3c.training.__all__)  # fmt: skip
    for module in (callbacks, params, random_state, recipe):
        for name in module.__all__:
            assert getattr(hf_bpt3c.training, name) is getattr(module, name), name
    assert all(getattr(hf_bpt3c.training, name) is getattr(lr_finder, name) for name in hf_bpt3c.training.__all__[-3:])
    assert data.StreamStateCallback is hf_bpt3c.data.StreamStateCallback is callbacks.StreamStateCallback
    assert set(data.__all__) >= {"LMStreamDataset", "SortishDataset", "document_lengths", "imdb_sample"}
    assert hf_bpt3c.lr_finder.lr_find is hf_bpt3c.training.lr_find


def test_random_state_round_trip():
    state = rng_state()
    first = (torch.rand(3), np.random.rand(2), random.random())
    set_rng_state(state)
    again = (torch.rand(3), np.random.rand(2), random.random())
    assert torch.equal(first[0], again[0]) and (first[1] == again[1]).all() and first[2] == again[2]


def test_freeze_to_trains_the_top_groups():
    model = AwdLstmForSequenceClassification(small_config())
    groups = layer_groups(model)
    freeze_to(groups, 2)
    assert [all(p.requires_grad for p in group) for group in groups] == [False, False, False, True, True]
    assert [any(p.requires_grad for p in group) for group in groups] == [False, False, False, True, True]
    freeze_to(groups, len(groups))
    assert all(p.requires_grad for p in model.parameters())
