"""ULMFiT's training recipe as small pieces that plug into `transformers.Trainer` without subclassing it.

- `layer_groups(model)`: fastai's parameter groups (classifier: embedding, each LSTM layer, head; language model:
  each LSTM layer, then embedding + decoder).
- `discriminative_param_groups(model, lr)`: one optimizer group per layer group, the learning rate divided by 2.6
  for each group further down.
- `slanted_triangular_schedule` (ULMFiT's STLR) and `one_cycle_schedule` (fastai's `fit_one_cycle`).
- `ulmfit_optimizers(model, lr, num_training_steps)`: AdamW with fastai's settings plus one of the schedules, for
  `Trainer(optimizers=...)`.
- `GradualUnfreezingCallback`: the last layer group first, one more each epoch.
- `ActivationRegularizationCallback`: fastai's AR (alpha 2) and TAR (beta 1) added to the training loss.
- `EvaluationRandomStateCallback`: evaluations during training leave the random state as it was, so evaluating
  every epoch does not change the trained weights.
- `lr_find(trainer)`: fastai's learning-rate finder (exponential sweep, smoothed loss, suggestions, plot), the
  model and the trainer's optimizer left exactly as they were (`hf_bpt3c.training.lr_finder`).
- `plot_training_curves(trainer.state.log_history, path)`: training/validation loss and a metric (`hf_bpt3c.plots`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from transformers import TrainerCallback

from ..models.awd_lstm.modeling_awd_lstm import AwdLstmForCausalLM, AwdLstmForSequenceClassification, AwdLstmModel
from ..plots import plot_training_curves

# fastai's Adam (`TextLearner` moms (0.8, 0.7, 0.8) start at 0.8; eps 1e-5; decoupled weight decay 0.01)
FASTAI_ADAM = {"betas": (0.8, 0.99), "eps": 1e-5, "weight_decay": 0.01}


def layer_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """fastai's layer groups, lowest first (the last group is unfrozen first and gets the highest lr).

    - classifier (`awd_lstm_clas_split`): [embedding], [LSTM 0], ..., [LSTM n-1], [head];
    - language model (`awd_lstm_lm_split`): [LSTM 0], ..., [LSTM n-1], [embedding + decoder];
    - encoder: [embedding], [LSTM 0], ..., [LSTM n-1].
    """
    if isinstance(model, AwdLstmForSequenceClassification):
        encoder = model.awd_lstm
        return [list(encoder.embeddings.parameters())] + _lstm_groups(encoder) + [list(model.classifier.parameters())]
    if isinstance(model, AwdLstmForCausalLM):
        encoder = model.awd_lstm
        top = _unique([*encoder.embeddings.parameters(), *model.decoder.parameters()])
        return _lstm_groups(encoder) + [top]
    if isinstance(model, AwdLstmModel):
        return [list(model.embeddings.parameters())] + _lstm_groups(model)
    raise TypeError(f"model must be an hf_bpt3c AWD-LSTM model, got {type(model).__name__}")


def _lstm_groups(encoder: AwdLstmModel) -> list[list[nn.Parameter]]:
    return [list(layer.parameters()) for layer in encoder.layers]


def _unique(params: Sequence[nn.Parameter]) -> list[nn.Parameter]:
    """Drop repeats (the decoder weight is tied to the embedding)."""
    seen, unique = set(), []
    for param in params:
        if id(param) not in seen:
            seen.add(id(param))
            unique.append(param)
    return unique


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


def freeze_to(groups: list[list[nn.Parameter]], n_trainable: int) -> None:
    """Make the last `n_trainable` groups trainable and freeze the others (fastai's `freeze_to(-n)`)."""
    first_trainable = max(0, len(groups) - n_trainable)
    for k, params in enumerate(groups):
        for param in params:
            param.requires_grad_(k >= first_trainable)


class GradualUnfreezingCallback(TrainerCallback):
    """ULMFiT's gradual unfreezing: epoch `e` trains the last `schedule[e]` layer groups (default: the last group
    in the first epoch, one more group each epoch after). The last entry holds for later epochs.

    The groups are fastai's (`layer_groups`). Under DDP every rank runs the same schedule, so the frozen sets
    agree; the model must be wrapped with `find_unused_parameters=True` (Trainer's default for these models).
    """

    def __init__(self, schedule: Sequence[int] | None = None):
        self.schedule = list(schedule) if schedule is not None else None

    def trainable_groups(self, epoch: int, n_groups: int) -> int:
        """How many groups (from the top) train in `epoch` (0-based)."""
        if self.schedule is None:
            return min(n_groups, epoch + 1)
        return min(n_groups, self.schedule[min(epoch, len(self.schedule) - 1)])

    def on_epoch_begin(self, args, state, control, model=None, **kwargs):
        groups = layer_groups(model)
        # the epoch under way: `state.epoch` is a whole number at an epoch's start, and a fraction past it when a
        # run resumes from a checkpoint inside the epoch (the tolerance absorbs float error)
        epoch = math.floor((state.epoch or 0) + 1e-6)
        freeze_to(groups, self.trainable_groups(epoch, len(groups)))

    def on_train_end(self, args, state, control, model=None, **kwargs):
        groups = layer_groups(model)
        freeze_to(groups, len(groups))  # leave the model fully trainable


def activation_penalty(raw: torch.Tensor, dropped: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """fastai's `RNNRegularizer` on one output `(batch, seq, features)`: `alpha * mean(dropped^2)` (AR) plus
    `beta * mean((raw[:, 1:] - raw[:, :-1])^2)` (TAR)."""
    penalty = alpha * dropped.float().pow(2).mean()
    if raw.size(1) > 1:
        penalty = penalty + beta * (raw[:, 1:] - raw[:, :-1]).float().pow(2).mean()
    return penalty


class ActivationRegularizationCallback(TrainerCallback):
    """Add fastai's activation regularisation (AR, `alpha`) and temporal activation regularisation (TAR, `beta`)
    to the training loss, through forward hooks installed for the run (set `alpha = beta = 0` to switch it off).

    - language model: AR on the output after output dropout, TAR on the raw last-layer output (as fastai);
    - classifier: both on the raw last-layer output of every kept chunk (fastai: on the concatenated kept
      outputs); TAR is taken within chunks, not across chunk boundaries.

    `task_loss` is the last training forward's loss before the penalty (detached; None when no penalty was added):
    the loss fastai's recorder reports, as its `RNNRegularizer` adds AR/TAR to the gradient's loss only.
    """

    def __init__(self, alpha: float = 2.0, beta: float = 1.0):
        self.alpha, self.beta = alpha, beta
        self.task_loss: torch.Tensor | None = None
        self._handles: list = []
        self._chunk_outputs: list[torch.Tensor] = []

    def attach(self, model: nn.Module) -> ActivationRegularizationCallback:
        """Install the hooks on `model` (done at the start of training)."""
        self.remove()
        if isinstance(model, AwdLstmForSequenceClassification):
            top_layer = model.awd_lstm.layers[-1]
            self._handles.append(top_layer.register_forward_hook(self._keep_chunk_output))
        self._handles.append(model.register_forward_hook(self._add_penalty))
        return self

    def _keep_chunk_output(self, module, args, output):
        chunk_output = output[0]
        if module.training and chunk_output.requires_grad:  # kept chunks only; warm-up runs without autograd
            self._chunk_outputs.append(chunk_output)

    def _add_penalty(self, module, args, output):
        chunk_outputs, self._chunk_outputs = self._chunk_outputs, []
        self.task_loss = None
        loss = getattr(output, "loss", None)
        if not module.training or loss is None or (self.alpha == 0 and self.beta == 0):
            return output
        if isinstance(module, AwdLstmForSequenceClassification):
            penalty = self._classifier_penalty(chunk_outputs)
        else:
            penalty = activation_penalty(output.last_hidden_state, output.dropped_hidden_state, self.alpha, self.beta)
        self.task_loss = loss.detach()
        output.loss = loss + penalty.to(loss.dtype)
        return output

    def _classifier_penalty(self, chunk_outputs: list[torch.Tensor]) -> torch.Tensor:
        if not chunk_outputs:
            return torch.zeros(())
        squares = sum(out.float().pow(2).sum() for out in chunk_outputs)
        count = sum(out.numel() for out in chunk_outputs)
        penalty = self.alpha * squares / count
        diffs = [out[:, 1:] - out[:, :-1] for out in chunk_outputs if out.size(1) > 1]
        if diffs:
            penalty = penalty + self.beta * sum(d.float().pow(2).sum() for d in diffs) / sum(d.numel() for d in diffs)
        return penalty

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.attach(model)

    def on_train_end(self, args, state, control, **kwargs):
        self.remove()

    def remove(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []


def rng_state() -> dict:
    """The torch (and CUDA), numpy and python random states."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Put back random states taken by `rng_state`."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


class EvaluationRandomStateCallback(TrainerCallback):
    """Evaluations during training (`eval_strategy` "epoch" or "steps") leave the random state as it was.

    Creating the evaluation dataloader draws from torch's global generator, which the next training steps' dropout
    masks and shuffling would otherwise see: with this callback, training with evaluations gives the same weights,
    bit for bit, as training without them. The state is taken at the end of every step and epoch (just before
    Trainer evaluates) and put back when an evaluation ends.
    """

    def __init__(self):
        self._state: dict | None = None

    def on_step_end(self, args, state, control, **kwargs):
        self._state = rng_state()

    def on_epoch_end(self, args, state, control, **kwargs):
        self._state = rng_state()

    def on_evaluate(self, args, state, control, **kwargs):
        if self._state is not None:
            set_rng_state(self._state)

    def on_train_end(self, args, state, control, **kwargs):
        self._state = None


_FROM_LR_FINDER = ("SUGGESTION_METHODS", "LRFinderResult", "lr_find")


def __getattr__(name: str):
    """`lr_find` and its result live in `hf_bpt3c.training.lr_finder`, which builds on this module: imported on
    first use, so that either module can be imported first."""
    if name in _FROM_LR_FINDER:
        from . import lr_finder

        return getattr(lr_finder, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FASTAI_ADAM",
    "layer_groups",
    "discriminative_param_groups",
    "slanted_triangular_schedule",
    "one_cycle_schedule",
    "ulmfit_optimizers",
    "num_training_steps",
    "freeze_to",
    "GradualUnfreezingCallback",
    "activation_penalty",
    "ActivationRegularizationCallback",
    "EvaluationRandomStateCallback",
    "rng_state",
    "set_rng_state",
    "plot_training_curves",
    *_FROM_LR_FINDER,
]
