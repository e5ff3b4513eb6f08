"""fastai's learning-rate finder (`Learner.lr_find`) for a `transformers.Trainer`.

`lr_find(trainer)` trains the trainer's model on its training data for up to `num_steps` optimizer steps while the
learning rate grows exponentially from `start_lr` to `end_lr` (fastai's `LRFinder`), records the training loss
smoothed as fastai's `Recorder` does (exponential moving average, beta 0.98, bias-corrected), stops when the smoothed
loss exceeds 4 times its minimum (or is not finite), then puts everything back: weights and buffers, gradients,
`requires_grad` flags, train/eval mode and the random number generators. The trainer's own optimizer and scheduler
are never stepped (the sweep runs a copy of the optimizer), so they are exactly as before.

The suggestions (`valley`, `slide`, `steep`, `minimum`) are computed with fastai 2.8's algorithms
(`fastai/callback/schedule.py`) on the same slice of the recording fastai uses.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .callbacks import ActivationRegularizationCallback, GradualUnfreezingCallback, StreamStateCallback
from .params import freeze_to, layer_groups
from .random_state import rng_state, set_rng_state

SUGGESTION_METHODS = ("valley", "slide", "steep", "minimum")
SMOOTHING_BETA = 0.98  # fastai's Recorder(beta=0.98)
DIVERGENCE_FACTOR = 4.0  # fastai's LRFinder: stop when the smoothed loss exceeds 4x its minimum


# ----------------------------------------------------------------------------------------------------------------
# fastai 2.8's suggestion functions (fastai/callback/schedule.py), on float32 tensors as fastai computes them
# ----------------------------------------------------------------------------------------------------------------


def valley(lrs: torch.Tensor, losses: torch.Tensor) -> tuple[float, tuple[float, float]]:
    """The learning rate in the middle-to-low part of the longest descending run of the loss ("longest valley");
    returns it and the point `(lr, loss)` to mark."""
    n = len(losses)
    values = losses.tolist()
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if values[i] < values[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    return float(lrs[idx]), (float(lrs[idx]), float(losses[idx]))


def slide(
    lrs: torch.Tensor, losses: torch.Tensor, lr_diff: int = 15, thresh: float = 0.005, adjust_value: float = 1.0
) -> tuple[float, tuple[float, float]]:
    """The interval slide rule: walking down from the largest learning rate, the first point where the loss
    gradient `lr_diff` steps apart differs by less than `thresh`."""
    loss_array = losses.numpy()
    loss_grad = np.gradient(loss_array)
    r_idx = -1
    l_idx = r_idx - lr_diff
    local_min_lr = lrs[l_idx]
    while (l_idx >= -len(loss_array)) and (abs(loss_grad[r_idx] - loss_grad[l_idx]) > thresh):
        local_min_lr = lrs[l_idx]
        r_idx -= 1
        l_idx -= 1
    suggestion = float(local_min_lr) * adjust_value
    loss_at = np.interp(np.log10(suggestion), np.log10(lrs.numpy()), loss_array)
    return suggestion, (suggestion, float(loss_at))


def minimum(lrs: torch.Tensor, losses: torch.Tensor) -> tuple[float, tuple[float, float]]:
    """A tenth of the learning rate at the loss minimum; the point marked is the minimum itself."""
    lr_min = lrs[losses.argmin()].item()
    loss_at = losses[min(range(len(lrs)), key=lambda i: abs(lrs[i] - lr_min))]
    return lr_min / 10, (lr_min, float(loss_at))


def steep(lrs: torch.Tensor, losses: torch.Tensor) -> tuple[float, tuple[float, float]]:
    """The learning rate where the loss falls fastest against log(lr)."""
    grads = (losses[1:] - losses[:-1]) / (lrs[1:].log() - lrs[:-1].log())
    lr_steep = lrs[grads.argmin()].item()
    loss_at = losses[min(range(len(lrs)), key=lambda i: abs(lrs[i] - lr_steep))]
    return lr_steep, (lr_steep, float(loss_at))


_SUGGESTION_FUNCTIONS = {"valley": valley, "slide": slide, "steep": steep, "minimum": minimum}
_MIN_POINTS = {"valley": 1, "slide": 16, "steep": 2, "minimum": 1}  # what each function can work with


def suggestion_window(lrs: list[float], losses: list[float], num_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The part of a recording fastai's `lr_find` passes to the suggestion functions: without the first
    `num_steps // 10` and the last 5 steps, cut at the first NaN loss; as float32 tensors (fastai's `tensor()`)."""
    lr_tensor = torch.tensor(lrs[num_steps // 10 : -5])
    loss_tensor = torch.tensor(losses[num_steps // 10 : -5])
    nan_idxs = torch.nonzero(torch.isnan(loss_tensor.view(-1)))
    if len(nan_idxs) > 0:
        drop_idx = int(nan_idxs.min())
        lr_tensor, loss_tensor = lr_tensor[:drop_idx], loss_tensor[:drop_idx]
    return lr_tensor, loss_tensor


def suggest(
    lrs: list[float], losses: list[float], num_steps: int, methods=SUGGESTION_METHODS
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """fastai's suggestions for a recording (`lrs`, smoothed `losses`) of a sweep of `num_steps` steps: returns
    `{method: lr}` and `{method: (lr, loss) point to mark}`. A method without enough usable points is left out."""
    lr_tensor, loss_tensor = suggestion_window(lrs, losses, num_steps)
    suggestions, points = {}, {}
    for method in methods:
        if method not in _SUGGESTION_FUNCTIONS:
            raise ValueError(f"methods must be among {SUGGESTION_METHODS}, got {method!r}")
        if len(loss_tensor) >= _MIN_POINTS[method]:
            suggestions[method], points[method] = _SUGGESTION_FUNCTIONS[method](lr_tensor, loss_tensor)
    return suggestions, points


# ----------------------------------------------------------------------------------------------------------------
# The result
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class LRFinderResult:
    """What `lr_find` recorded and suggests.

    Attributes:
        lrs: the learning rate of the top layer group (the optimizer's last group, fastai's `hypers[-1]['lr']`)
            at each step; lower groups ran at their usual fraction of it.
        losses: the smoothed training loss after each step (fastai's `Recorder.losses`).
        raw_losses: the training loss of each step as `Trainer` computes it, without AR/TAR: they are in the
            gradients but not in the loss recorded, as in fastai (its `RNNRegularizer` adds them to `loss_grad`).
        num_steps: the steps asked for (fastai's `num_it`); the recording is shorter when the sweep stopped early.
        diverged: the sweep stopped because the loss diverged (more than 4x its minimum, or not finite).
        suggestions: `{"valley": lr, "slide": lr, "steep": lr, "minimum": lr}` (fastai 2.8's algorithms); a method
            is missing when too few steps were usable (fastai skips the first `num_steps // 10` and the last 5).
        points: `{method: (lr, loss)}`, the points fastai marks on the plot.
    """

    lrs: list[float]
    losses: list[float]
    raw_losses: list[float]
    num_steps: int
    diverged: bool
    suggestions: dict[str, float] = field(default_factory=dict)
    points: dict[str, tuple[float, float]] = field(default_factory=dict)

    def suggestion(self, method: str = "valley") -> float:
        """The suggested learning rate of `method` (one of `SUGGESTION_METHODS`); `ValueError` when the sweep gave
        too few usable steps for it."""
        if method not in SUGGESTION_METHODS:
            raise ValueError(f"method must be one of {SUGGESTION_METHODS}, got {method!r}")
        if method not in self.suggestions:
            raise ValueError(
                f"no {method!r} suggestion: the sweep stopped after {len(self.lrs)} of {self.num_steps} steps "
                f"(diverged: {self.diverged}) and fastai's rule drops the first {self.num_steps // 10} and the last "
                "5; start from a lower start_lr or use more num_steps"
            )
        return self.suggestions[method]

    @property
    def valley(self) -> float:
        """fastai's default suggestion (`SuggestionMethod.Valley`)."""
        return self.suggestion("valley")

    def plot(self, path: str | Path | None = None, skip_end: int = 5, title: str | None = None):
        """fastai's `plot_lr_find`: smoothed loss against the learning rate (log scale) without the last `skip_end`
        steps, each suggestion marked and named with its value. Saves a PNG to `path` when given; returns the
        matplotlib `Figure` (matplotlib is needed: `pip install matplotlib`)."""
        from ..plots import new_figure

        fig, ax = new_figure()
        end = len(self.lrs) - skip_end if skip_end else len(self.lrs)
        ax.plot(self.lrs[:end], self.losses[:end], color="C0")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (top layer group)")
        ax.set_ylabel("smoothed training loss")
        for k, (method, (lr, loss)) in enumerate(self.points.items()):
            label = f"{method}: {self.suggestions[method]:.2e}"
            ax.plot(lr, loss, "o", color=f"C{k + 1}", label=label)
        if self.points:
            ax.legend(loc="best")
        stopped = f", stopped at step {len(self.lrs)} (diverged)" if self.diverged else ""
        ax.set_title(title or f"LR finder: {self.num_steps} steps{stopped}")
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110)
        return fig


# ----------------------------------------------------------------------------------------------------------------
# The sweep
# ----------------------------------------------------------------------------------------------------------------


def _check_arguments(start_lr, end_lr, num_steps) -> None:
    for name, value in (("start_lr", start_lr), ("end_lr", end_lr)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    if not end_lr > start_lr:
        raise ValueError(f"end_lr must be larger than start_lr, got start_lr={start_lr} and end_lr={end_lr}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 6:
        raise ValueError(f"num_steps must be an int >= 6 (fastai's minimum), got {num_steps!r}")


def _unwrapped_optimizer(optimizer):
    """accelerate wraps the optimizer once training has started; the torch optimizer is inside."""
    return getattr(optimizer, "optimizer", optimizer)


def _sweep_optimizer(trainer, model: nn.Module) -> torch.optim.Optimizer:
    """A copy of the trainer's optimizer (same class, groups, hyperparameters and state) over the same parameters,
    or Trainer's default optimizer when it has none yet; the trainer's own is left untouched."""
    original = trainer.optimizer
    if original is None:
        try:
            return trainer.create_optimizer(model)
        finally:
            trainer.optimizer = None
    original = _unwrapped_optimizer(original)
    duplicate = copy.copy(original)  # torch optimizers copy through __getstate__: defaults, state, param_groups
    duplicate.load_state_dict(_cloned(original.state_dict()))  # own groups and state, tensors cloned
    return duplicate


def _cloned(obj):
    """A deep copy of a state dict (tensors cloned), so that nothing is shared with the original."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _cloned(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cloned(v) for v in obj)
    return obj


def _group_ratios(optimizer: torch.optim.Optimizer) -> list[float]:
    """Each group's learning rate relative to the last (top) group's, from the groups' base learning rates
    (`initial_lr`, set by schedulers, else `lr`): discriminative learning rates keep their ratios in the sweep."""
    bases = [group.get("initial_lr", group["lr"]) for group in optimizer.param_groups]
    top = bases[-1]
    if not top or any(not math.isfinite(b) for b in bases):
        return [1.0] * len(bases)
    return [base / top for base in bases]


@dataclass
class _Snapshot:
    """Everything a sweep changes in the model and the process, to be put back exactly."""

    state_dict: dict[str, torch.Tensor]
    grads: list[torch.Tensor | None]
    requires_grad: list[bool]
    training: bool
    rng: dict

    @classmethod
    def take(cls, model: nn.Module) -> _Snapshot:
        params = list(model.parameters())
        return cls(
            state_dict={k: v.detach().clone() for k, v in model.state_dict().items()},
            grads=[None if p.grad is None else p.grad.detach().clone() for p in params],
            requires_grad=[p.requires_grad for p in params],
            training=model.training,
            rng=rng_state(),
        )

    def restore(self, model: nn.Module) -> None:
        model.load_state_dict(self.state_dict)
        for param, grad, flag in zip(model.parameters(), self.grads, self.requires_grad):
            param.grad = grad
            param.requires_grad_(flag)
        model.train(self.training)
        set_rng_state(self.rng)


@contextlib.contextmanager
def _training_hooks(trainer, model: nn.Module) -> Iterator[ActivationRegularizationCallback | None]:
    """What the trainer's hf_bpt3c callbacks do in the first epoch, for the sweep: AR/TAR added to the loss, the
    LM state carried from batch to batch, the layer groups of the first epoch trainable (gradual unfreezing). Fresh
    callback objects are used, so the trainer's own keep their state. Yields the AR/TAR callback (None without)."""
    temporary = []
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, ActivationRegularizationCallback):
            temporary.append(ActivationRegularizationCallback(callback.alpha, callback.beta).attach(model))
        elif isinstance(callback, StreamStateCallback):
            temporary.append(StreamStateCallback().attach(model))
        elif isinstance(callback, GradualUnfreezingCallback):
            groups = layer_groups(model)
            freeze_to(groups, callback.trainable_groups(0, len(groups)))
    regularizers = [callback for callback in temporary if isinstance(callback, ActivationRegularizationCallback)]
    try:
        yield regularizers[0] if regularizers else None
    finally:
        for callback in temporary:
            callback.remove()


def _batches(trainer) -> Iterator[dict]:
    """The trainer's training batches, epoch after epoch (a new pass when one ends, as fastai's `fit(n_epoch)`)."""
    while True:
        empty = True
        for batch in trainer.get_train_dataloader():
            empty = False
            yield batch
        if empty:
            raise ValueError("the trainer's training data has no batch: lr_find needs training data")


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _step_loss(trainer, model: nn.Module, batches: Iterator[dict], accumulation: int, regularizer) -> float:
    """One optimizer step's forward/backward passes (`accumulation` batches); returns the mean training loss
    without AR/TAR (`regularizer`'s penalty is in the gradients, not in the loss recorded, as in fastai)."""
    total = 0.0
    for _ in range(accumulation):
        inputs = _to_device(next(batches), trainer.args.device)
        with trainer.accelerator.autocast():
            loss = trainer.compute_loss(model, inputs)
        if not torch.isfinite(loss):
            return float("nan")
        (loss / accumulation).backward()
        task_loss = regularizer.task_loss if regularizer is not None else None
        total += (loss if task_loss is None else task_loss).item() / accumulation
    return total


def _sweep(trainer, model, optimizer, start_lr, end_lr, num_steps, stop_div, regularizer) -> LRFinderResult:
    ratios = _group_ratios(optimizer)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    batches = _batches(trainer)
    accumulation = max(1, trainer.args.gradient_accumulation_steps)
    max_grad_norm = trainer.args.max_grad_norm
    result = LRFinderResult(lrs=[], losses=[], raw_losses=[], num_steps=num_steps, diverged=False)
    average, best = 0.0, float("inf")
    model.train()
    for step in range(num_steps):
        lr = start_lr * (end_lr / start_lr) ** (step / num_steps)  # fastai's SchedExp at pos = step / num_it
        for group, ratio in zip(optimizer.param_groups, ratios):
            group["lr"] = lr * ratio
        optimizer.zero_grad(set_to_none=True)
        try:
            loss = _step_loss(trainer, model, batches, accumulation, regularizer)
        except FloatingPointError:  # config.raise_on_nonfinite
            loss = float("nan")
        if math.isfinite(loss):
            if max_grad_norm and max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
        average = SMOOTHING_BETA * average + (1 - SMOOTHING_BETA) * loss  # fastai's AvgSmoothLoss
        smoothed = average / (1 - SMOOTHING_BETA ** (step + 1))
        result.lrs.append(lr)
        result.raw_losses.append(loss)
        result.losses.append(smoothed)
        best = min(best, smoothed)
        if not math.isfinite(smoothed) or (stop_div and smoothed > DIVERGENCE_FACTOR * best):
            result.diverged = True
            break
    optimizer.zero_grad(set_to_none=True)
    return result


def lr_find(
    trainer,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    stop_div: bool = True,
) -> LRFinderResult:
    """fastai's learning-rate finder on a `transformers.Trainer`: an exponential learning-rate sweep over the
    trainer's training data, then the model put back exactly as it was.

    Args:
        trainer: a `Trainer` with a `train_dataset`. Its optimizer (e.g. `ulmfit_optimizers`: AdamW with fastai's
            settings and discriminative learning rates) is copied with its state and hyperparameters; without one,
            Trainer's default optimizer is built for the sweep. Its hf_bpt3c callbacks act as in the first epoch:
            AR/TAR, the LM's carried state, gradual unfreezing (only the groups of the first epoch train).
        start_lr, end_lr: the top layer group's learning rate at the first step and the (never reached) end; each
            lower group keeps its ratio to the top group. Step `i` uses `start_lr * (end_lr/start_lr)**(i/num_steps)`.
        num_steps: optimizer steps (fastai's `num_it`, at least 6); batches are reused epoch after epoch if needed.
            Each step takes `gradient_accumulation_steps` batches and clips gradients at `max_grad_norm`, as
            Trainer does.
        stop_div: stop when the smoothed loss exceeds 4 times its minimum so far (fastai). A loss that is not
            finite always stops the sweep.

    Returns:
        `LRFinderResult` with the learning rates, smoothed and raw losses, fastai's four suggestions (`valley` is
        fastai's default) and `.plot(path)`.

    Afterwards the model's parameters and buffers are bitwise the same as before, and so are its gradients,
    `requires_grad` flags, train/eval mode and the torch/numpy/python random states; the trainer's optimizer and
    scheduler are never stepped. Training after `lr_find` is therefore the same as training without it.
    """
    _check_arguments(start_lr, end_lr, num_steps)
    if trainer.train_dataset is None:
        raise ValueError("trainer has no train_dataset: lr_find sweeps over the training data")
    if trainer.args.world_size > 1:
        raise ValueError(
            f"lr_find runs in one process (world_size is {trainer.args.world_size}): run it without a distributed "
            "launcher, then train with the learning rate it suggests"
        )
    model = trainer.model
    snapshot = _Snapshot.take(model)
    try:
        with _training_hooks(trainer, model) as regularizer:
            optimizer = _sweep_optimizer(trainer, model)
            result = _sweep(trainer, model, optimizer, start_lr, end_lr, num_steps, stop_div, regularizer)
    finally:
        snapshot.restore(model)
    result.suggestions, result.points = suggest(result.lrs, result.losses, num_steps)
    return result


__all__ = ["SUGGESTION_METHODS", "LRFinderResult", "lr_find", "suggest", "valley", "slide", "steep", "minimum"]
