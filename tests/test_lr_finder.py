"""The learning-rate finder: fastai's sweep and suggestions, and everything put back exactly afterwards."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from conftest import small_config
from test_training import args, classification_data
from torch.optim.optimizer import register_optimizer_step_pre_hook
from transformers import Trainer

from hf_bpt3c import AwdLstmForCausalLM, AwdLstmForSequenceClassification
from hf_bpt3c.training import (
    ActivationRegularizationCallback,
    GradualUnfreezingCallback,
    lr_find,
    ulmfit_optimizers,
)
from hf_bpt3c.training.callbacks import StreamStateCallback
from hf_bpt3c.training.data import LMStreamDataset
from hf_bpt3c.training.lr_finder import suggest


def classifier_trainer(tmp_path, gradual_unfreezing: bool = True, ar_tar=(2.0, 1.0), **overrides) -> Trainer:
    """A tiny BPT3C classifier with the ULMFiT optimiser (5 discriminative groups, one-cycle) and callbacks."""
    model = AwdLstmForSequenceClassification(small_config())
    training_args = args(tmp_path, **overrides)
    callbacks = [ActivationRegularizationCallback(*ar_tar)]
    if gradual_unfreezing:
        callbacks.append(GradualUnfreezingCallback())
    return Trainer(
        model=model,
        args=training_args,
        train_dataset=classification_data(32),
        optimizers=ulmfit_optimizers(model, 1e-2, 8),
        callbacks=callbacks,
    )


def cloned(obj):
    """A deep copy of a (nested) state dict with every tensor cloned."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: cloned(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(cloned(v) for v in obj)
    return obj


def assert_bitwise_equal(a, b, where: str = "") -> None:
    """Nested dicts/lists of tensors and numbers: same structure, tensors equal bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_bitwise_equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_bitwise_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def rng_states() -> tuple:
    return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()


# ------------------------------------------------------------------------------------------- nothing changes


def test_lr_find_restores_weights_optimizer_scheduler_and_rng(tmp_path):
    """After some training (the optimizer has Adam moments, the scheduler has stepped), a sweep leaves the weights,
    the gradients' absence, requires_grad, the optimizer's and scheduler's states and the RNGs bitwise the same."""
    trainer = classifier_trainer(tmp_path, max_steps=3)
    trainer.train()
    model = trainer.model
    weights = cloned(model.state_dict())
    requires_grad = [p.requires_grad for p in model.parameters()]
    optimizer_state = cloned(trainer.optimizer.state_dict())
    scheduler_state = cloned(trainer.lr_scheduler.state_dict())
    lrs_before = [group["lr"] for group in trainer.optimizer.param_groups]
    torch_rng, numpy_rng, python_rng = rng_states()
    assert optimizer_state["state"], "the optimizer should hold Adam moments before the sweep"

    result = lr_find(trainer, num_steps=20)

    assert len(result.lrs) == len(result.losses) == len(result.raw_losses) > 0
    assert_bitwise_equal(weights, model.state_dict(), "weights")
    assert_bitwise_equal(optimizer_state, trainer.optimizer.state_dict(), "optimizer")
    assert_bitwise_equal(scheduler_state, trainer.lr_scheduler.state_dict(), "scheduler")
    assert [group["lr"] for group in trainer.optimizer.param_groups] == lrs_before
    assert [p.requires_grad for p in model.parameters()] == requires_grad
    assert all(p.grad is None for p in model.parameters())
    torch_after, numpy_after, python_after = rng_states()
    assert torch.equal(torch_rng, torch_after) and np.array_equal(numpy_rng, numpy_after)
    assert python_rng == python_after


def test_training_after_lr_find_is_training_without_it(tmp_path):
    """The same seeded run, with and without a sweep first (gradual unfreezing, AR/TAR, dropout), ends with the
    same weights, bit for bit."""
    finals = []
    for sweep in (False, True):
        torch.manual_seed(0)
        trainer = classifier_trainer(tmp_path / str(sweep), num_train_epochs=2)
        if sweep:
            result = lr_find(trainer, num_steps=12)
            assert len(result.lrs) > 0
        trainer.train()
        finals.append(cloned(trainer.model.state_dict()))
    assert_bitwise_equal(finals[0], finals[1], "weights")


def test_sweep_follows_fastai_schedule_and_smoothing(tmp_path):
    """Step i runs the top group at start_lr * (end_lr/start_lr)**(i/num_steps); the recorded loss is fastai's
    debiased moving average (beta 0.98) of the raw losses; discriminative groups keep their ratios."""
    trainer = classifier_trainer(tmp_path, gradual_unfreezing=False)
    seen = []
    handle = register_optimizer_step_pre_hook(lambda opt, *_: seen.append([group["lr"] for group in opt.param_groups]))
    try:
        result = lr_find(trainer, start_lr=1e-6, end_lr=1e-1, num_steps=10, stop_div=False)
    finally:
        handle.remove()
    expected = [1e-6 * (1e-1 / 1e-6) ** (i / 10) for i in range(10)]
    assert result.lrs == pytest.approx(expected, rel=1e-12) and not result.diverged
    assert [lrs[-1] for lrs in seen] == pytest.approx(expected, rel=1e-12)
    assert all(lrs[k] == pytest.approx(lrs[-1] / 2.6 ** (4 - k)) for lrs in seen for k in range(5))
    average, smoothed = 0.0, []
    for i, loss in enumerate(result.raw_losses):
        average = 0.98 * average + 0.02 * loss
        smoothed.append(average / (1 - 0.98 ** (i + 1)))
    assert result.losses == pytest.approx(smoothed, rel=1e-12)


def test_recorded_loss_leaves_ar_tar_out_as_fastai(tmp_path):
    """AR/TAR are in the gradients but not in the recorded loss (fastai's recorder reads `loss`, its
    `RNNRegularizer` adds to `loss_grad`): the first step's loss is the same with and without them (same weights,
    same batch, same dropout), the later ones differ (the gradients did)."""
    results = []
    for ar_tar in ((2.0, 1.0), (0.0, 0.0)):
        torch.manual_seed(0)
        trainer = classifier_trainer(tmp_path / str(ar_tar), gradual_unfreezing=False, ar_tar=ar_tar)
        results.append(lr_find(trainer, start_lr=1e-3, end_lr=1.0, num_steps=8, stop_div=False).raw_losses)
    with_ar, without = results
    assert with_ar[0] == without[0]
    assert with_ar[1:] != without[1:]


def test_sweep_stops_when_the_loss_diverges(tmp_path):
    """fastai's stop: the smoothed loss above 4x the best so far ends the sweep early."""
    trainer = classifier_trainer(tmp_path, gradual_unfreezing=False)
    result = lr_find(trainer, start_lr=1e-3, end_lr=1e8, num_steps=100)
    assert result.diverged and len(result.lrs) < 100
    last = result.losses[-1]
    assert not math.isfinite(last) or last > 4 * min(result.losses[:-1])
    assert all(loss <= 4 * min(result.losses[: i + 1]) for i, loss in enumerate(result.losses[:-1]))


def test_lm_trainer_with_carried_state(tmp_path):
    """An LM trainer (carried state, AR/TAR) sweeps and is left as it was."""
    model = AwdLstmForCausalLM(small_config())
    ids = torch.randint(9, 60, (400,), generator=torch.Generator().manual_seed(1)).tolist()
    data = LMStreamDataset([ids], batch_size=4, bptt=5)
    training_args = args(tmp_path, train_sampling_strategy="sequential")
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=data,
        optimizers=ulmfit_optimizers(model, 1e-2, 20),
        callbacks=[StreamStateCallback(), ActivationRegularizationCallback(2.0, 1.0)],
    )
    weights = cloned(model.state_dict())
    result = lr_find(trainer, num_steps=30)
    assert len(result.lrs) > 0 and math.isfinite(result.losses[0])
    assert_bitwise_equal(weights, model.state_dict(), "weights")


def test_trainer_without_optimizer_uses_trainers_default(tmp_path):
    model = AwdLstmForSequenceClassification(small_config())
    trainer = Trainer(model=model, args=args(tmp_path), train_dataset=classification_data(16))
    result = lr_find(trainer, num_steps=8)
    assert len(result.lrs) > 0 and trainer.optimizer is None and trainer.lr_scheduler is None


@pytest.mark.parametrize(
    "kwargs, name",
    [({"start_lr": 0.0}, "start_lr"), ({"end_lr": 1e-8}, "end_lr"), ({"num_steps": 5}, "num_steps")],
)
def test_bad_arguments_are_named(tmp_path, kwargs, name):
    trainer = classifier_trainer(tmp_path)
    with pytest.raises(ValueError, match=name):
        lr_find(trainer, **kwargs)


def test_trainer_without_training_data_is_an_error(tmp_path):
    trainer = Trainer(model=AwdLstmForSequenceClassification(small_config()), args=args(tmp_path))
    with pytest.raises(ValueError, match="train_dataset"):
        lr_find(trainer)


# ------------------------------------------------------------------------------------ fastai's suggestions


def fastai_suggestions(lrs: list[float], losses: list[float], num_it: int) -> dict:
    """fastai 2.8's own functions on the slice of the recording its `Learner.lr_find` passes them."""
    schedule = pytest.importorskip("fastai.callback.schedule")
    lr_t, loss_t = torch.tensor(lrs[num_it // 10 : -5]), torch.tensor(losses[num_it // 10 : -5])
    nan_idxs = torch.nonzero(torch.isnan(loss_t.view(-1)))
    if len(nan_idxs) > 0:
        lr_t, loss_t = lr_t[: min(nan_idxs)], loss_t[: min(nan_idxs)]
    functions = {"valley": schedule.valley, "slide": schedule.slide, "steep": schedule.steep}
    functions["minimum"] = schedule.minimum
    return {name: function(lr_t, loss_t, num_it) for name, function in functions.items()}


def assert_same_suggestions(lrs: list[float], losses: list[float], num_it: int) -> None:
    suggestions, points = suggest(lrs, losses, num_it)
    expected = fastai_suggestions(lrs, losses, num_it)
    assert suggestions.keys() == expected.keys()
    for name, (lr, (point_lr, point_loss)) in expected.items():
        assert suggestions[name] == lr, name
        assert points[name][0] == point_lr, name
        assert points[name][1] == pytest.approx(float(point_loss), rel=1e-6), name


def random_curve(seed: int, num_it: int = 100) -> tuple[list[float], list[float]]:
    """A loss that falls, flattens and blows up, with noise: the shape of a real sweep."""
    gen = np.random.default_rng(seed)
    lrs = [1e-7 * (10 / 1e-7) ** (i / num_it) for i in range(num_it)]
    x = np.linspace(0, 1, num_it)
    bottom = gen.uniform(0.4, 0.8)
    loss = 2.5 - 1.5 / (1 + np.exp(-(x - bottom / 1.5) * 12)) + np.exp((x - bottom - 0.15) * gen.uniform(8, 20))
    loss += gen.normal(0, gen.uniform(0.005, 0.1), num_it)
    return lrs, loss.tolist()


@pytest.mark.parametrize("seed", range(6))
def test_suggestions_equal_fastai_on_random_curves(seed):
    assert_same_suggestions(*random_curve(seed), 100)


def test_suggestions_equal_fastai_with_nan_and_short_recordings():
    lrs, losses = random_curve(7)
    losses[70] = float("nan")
    assert_same_suggestions(lrs, losses, 100)
    assert_same_suggestions(lrs[:40], losses[:40], 100)  # stopped early (diverged)
    assert_same_suggestions(*random_curve(8, num_it=30), 30)


def test_suggestions_equal_fastai_on_a_real_sweep(tmp_path):
    trainer = classifier_trainer(tmp_path, gradual_unfreezing=False)
    result = lr_find(trainer, num_steps=60)
    assert result.suggestions and len(result.lrs) >= 30
    assert_same_suggestions(result.lrs, result.losses, 60)
    assert result.valley == result.suggestions["valley"]


def test_too_short_a_sweep_names_the_missing_suggestion():
    from hf_bpt3c.training.lr_finder import LRFinderResult

    lrs, losses = random_curve(3)
    result = LRFinderResult(lrs[:12], losses[:12], losses[:12], num_steps=100, diverged=True)
    result.suggestions, result.points = suggest(result.lrs, result.losses, 100)
    assert "slide" not in result.suggestions and "valley" not in result.suggestions
    with pytest.raises(ValueError, match="valley"):
        _ = result.valley
    with pytest.raises(ValueError, match="method"):
        result.suggestion("fastest")


# --------------------------------------------------------------------------------------------------- plot


def test_plot_writes_a_png_with_the_suggestions(tmp_path):
    pytest.importorskip("matplotlib")
    trainer = classifier_trainer(tmp_path, gradual_unfreezing=False)
    result = lr_find(trainer, num_steps=40)
    path = tmp_path / "lr_find.png"
    figure = result.plot(path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert [label.split(":")[0] for label in labels] == list(result.suggestions)
