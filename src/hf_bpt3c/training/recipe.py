"""ULMFiT's optimizers and learning-rate schedules as the `optimizers=` pair of `transformers.Trainer`.

- `discriminative_param_groups(model, lr)`: one optimizer group per layer group (`layer_groups`), the learning
  rate divided by 2.6 for each group further down.
- `slanted_triangular_schedule` (ULMFiT's STLR) and `one_cycle_schedule` (fastai's `fit_one_cycle`).
- `ulmfit_optimizers(model, lr, num_training_steps)`: AdamW with fastai's settings plus one of the schedules, for
  `Trainer(optimizers=...)`.
- `num_training_steps(num_examples, args)`: the optimizer steps `Trainer` will take, for the schedules.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .params import layer_groups

# fastai's Adam (`TextLearner` moms (0.8, 0.7, 0.8) start at 0.8; eps 1e-5; decoupled weight decay 0.01)
FASTAI_ADAM = {"betas": (0.8, 0.99), "eps": 1e-5, "weight_decay": 0.01}


def discriminative_param_groups(model: nn.Module, lr: float, factor: float = 2.6, **group_options) -> list[dict]:
    """Optimizer parameter groups with discriminative learning rates: the top group gets `lr`, each group below
    it `1/factor` of the one above (ULMFiT: factor 2.6). `group_options` (e.g. `weight_decay`) go into every
    group."""
    groups = layer_groups(model)
    top = len(groups) - 1
    return [{"params": params, "lr": lr / factor ** (top - k), **group_options} for k, params in enumerate(groups)]


def slanted_triangular_schedule(
    optimizer: torch.optim.Optimizer, num_training_steps: int, cut_frac: float = 0.1, ratio: float = 32.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """ULMFiT's slanted triangular learning rates: a linear rise over the first `cut_frac` of the steps from
    `lr/ratio` to `lr`, then a linear decay back to `lr/ratio` (Howard & Ruder 2018, eq. 3), per group."""
    if num_training_steps <= 0:
        raise ValueError(f"num_training_steps must be > 0, got {num_training_steps}")
    cut = max(1, math.floor(num_training_steps * cut_frac))

    def factor(step: int) -> float:
        if step < cut:
            p = step / cut
        else:
            p = max(0.0, 1 - (step - cut) / max(1.0, cut * (1 / cut_frac - 1)))
        return (1 + p * (ratio - 1)) / ratio

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def one_cycle_schedule(
    optimizer: torch.optim.Optimizer,
    num_training_steps: int,
    pct_start: float = 0.25,
    div_factor: float = 25.0,
    div_final: float = 1e5,
    moms: tuple[float, float] = (0.8, 0.7),
) -> torch.optim.lr_scheduler.OneCycleLR:
    """fastai's `fit_one_cycle`: cosine warm-up from `lr/div_factor` to each group's lr over `pct_start`, cosine
    annealing to `lr/div_final` (fastai's `div`/`div_final`), Adam's beta1 cycled from `moms[0]` down to
    `moms[1]` and back."""
    max_lrs = [group["lr"] for group in optimizer.param_groups]
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=max_lrs,
        total_steps=num_training_steps,
        pct_start=pct_start,
        div_factor=div_factor,
        final_div_factor=div_final / div_factor,  # torch's final lr is initial_lr / final_div_factor
        base_momentum=moms[1],
        max_momentum=moms[0],
    )


def ulmfit_optimizers(
    model: nn.Module,
    lr: float,
    num_training_steps: int,
    schedule: str = "stlr",
    factor: float = 2.6,
    **adam_options,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW over `discriminative_param_groups` with fastai's settings (`FASTAI_ADAM`, overridable) and the
    `"stlr"` or `"one_cycle"` schedule: pass the pair as `Trainer(optimizers=...)`."""
    options = {**FASTAI_ADAM, **adam_options}
    weight_decay = options.pop("weight_decay")
    optimizer = torch.optim.AdamW(discriminative_param_groups(model, lr, factor, weight_decay=weight_decay), **options)
    if schedule == "stlr":
        return optimizer, slanted_triangular_schedule(optimizer, num_training_steps)
    if schedule == "one_cycle":
        return optimizer, one_cycle_schedule(optimizer, num_training_steps)
    raise ValueError(f"schedule must be 'stlr' or 'one_cycle', got {schedule!r}")


def num_training_steps(num_examples: int, args) -> int:
    """Optimizer steps `Trainer` takes for `num_examples` training items under `TrainingArguments` `args`."""
    if args.max_steps and args.max_steps > 0:
        return args.max_steps
    batches = math.ceil(num_examples / (args.per_device_train_batch_size * max(1, args.world_size)))
    steps_per_epoch = max(1, math.ceil(batches / args.gradient_accumulation_steps))
    return math.ceil(steps_per_epoch * args.num_train_epochs)


__all__ = [
    "FASTAI_ADAM",
    "discriminative_param_groups",
    "slanted_triangular_schedule",
    "one_cycle_schedule",
    "ulmfit_optimizers",
    "num_training_steps",
]
