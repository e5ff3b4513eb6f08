"""The `transformers.Trainer` callbacks of ULMFiT's training.

- `GradualUnfreezingCallback`: the last layer group first, one more each epoch.
- `ActivationRegularizationCallback`: fastai's AR (alpha 2) and TAR (beta 1) added to the training loss
  (`activation_penalty` on one output).
- `EvaluationRandomStateCallback`: evaluations during training leave the random state as it was, so evaluating
  every epoch does not change the trained weights.
- `StreamStateCallback`: the language model's recurrent state carried from batch to batch over the contiguous
  streams of `hf_bpt3c.training.data.LMStreamDataset`, saved with every checkpoint.
- `TimeEstimateCallback`: the work announced when training begins, then the measured speed and the time left.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..models.awd_lstm.modeling_awd_lstm import AwdLstmForSequenceClassification
from .params import freeze_to, layer_groups
from .random_state import rng_state, set_rng_state


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


class StreamStateCallback(TrainerCallback):
    """Carry the LM's recurrent state from one batch to the next during `Trainer` training and evaluation.

    Installs two hooks on the model (at the start of training, or with `attach`): before each forward call the
    previous batch's state (detached) is passed as `state`, after it the returned state is kept. Training and
    evaluation keep separate streams: the training state is reset at the start of every epoch, the evaluation
    state at the start of every evaluation; a batch of another size (the last, smaller one) starts from zeros,
    and so does the batch after one whose state is not finite (with a warning). The training state is saved with
    every checkpoint and restored when training resumes from the latest checkpoint in `output_dir`.
    Use it with `LMStreamDataset` and `TrainingArguments(train_sampling_strategy="sequential")`.
    """

    def __init__(self):
        self.states: dict[bool, tuple | None] = {True: None, False: None}  # keyed by `model.training`
        self._handles: list = []
        self._training: bool | None = None
        self._resumed_mid_epoch = False

    def _before_forward(self, module, args, kwargs):
        if module.training != self._training:
            self._training = module.training
            if not module.training:
                self.states[False] = None  # a new evaluation reads its streams from the start
        state = self.states[module.training]
        kwargs["use_cache"] = True  # return the state even though Trainer sets config.use_cache=False
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if state is not None and input_ids is not None and state[0][0].size(0) == input_ids.size(0):
            kwargs["state"] = state
        return args, kwargs

    def _after_forward(self, module, args, kwargs, output):
        state = getattr(output, "state", None)
        if state is not None and not all(bool(torch.isfinite(t).all()) for pair in state for t in pair):
            warnings.warn("the LM state is not finite (NaN/inf): the next batch starts from zeros", stacklevel=2)
            state = None
        detached = None if state is None else tuple((h.detach(), c.detach()) for h, c in state)
        self.states[module.training] = detached

    def attach(self, model: torch.nn.Module) -> StreamStateCallback:
        """Install the hooks on `model` (done at the start of training; call it yourself to evaluate only)."""
        self.remove()
        self._handles = [
            model.register_forward_pre_hook(self._before_forward, with_kwargs=True),
            model.register_forward_hook(self._after_forward, with_kwargs=True),
        ]
        self.states, self._training = {True: None, False: None}, None
        return self

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.attach(model)
        self._resumed_mid_epoch = False
        saved = self._checkpoint_file(args, state)
        if state.global_step > 0 and saved.is_file():  # resuming: continue the streams where they stopped
            self.states[True] = torch.load(saved, weights_only=True)
            self._resumed_mid_epoch = not float(state.epoch or 0).is_integer()

    def on_epoch_begin(self, args, state, control, **kwargs):
        if self._resumed_mid_epoch:
            self._resumed_mid_epoch = False  # the restored state belongs to this epoch
        else:
            self.states[True] = None

    def on_save(self, args, state, control, **kwargs):
        """Save the training streams' state next to Trainer's checkpoint (one file per process)."""
        path = self._checkpoint_file(args, state)
        if path.parent.is_dir():
            torch.save(self.states[True], path)

    @staticmethod
    def _checkpoint_file(args, state) -> Path:
        checkpoint = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        return checkpoint / f"stream_state-{args.process_index}.pt"

    def on_evaluate(self, args, state, control, **kwargs):
        self.states[False], self._training = None, None

    def remove(self) -> None:
        """Remove the hooks from the model."""
        for handle in self._handles:
            handle.remove()
        self._handles = []


class TimeEstimateCallback(TrainerCallback):
    """Say up front how much work a run is, then, after `measure_steps` steps, how fast it goes and how long is left.

    When training begins (or resumes) it prints the steps and tokens to go; once `measure_steps` steps have run
    after the first one (the first includes one-off setup, so it is not timed), the measured tokens per second and
    the estimated minutes left. Printed by the main process only.

    Args:
        tokens_per_step: tokens one optimizer step reads on all processes together (language model: streams *
            processes * gradient accumulation * bptt).
        what: the name printed before the figures, e.g. "language model".
        measure_steps: how many timed steps the estimate rests on.
    """

    def __init__(self, tokens_per_step: int, what: str, measure_steps: int = 20):
        self.tokens_per_step, self.what, self.measure_steps = tokens_per_step, what, measure_steps
        self._timer: tuple[int, float] | None = None
        self.tokens_per_second: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._timer, self.tokens_per_second = None, None
        steps_left = state.max_steps - state.global_step
        if state.is_world_process_zero and steps_left > 0:
            print(
                f"{self.what}: {steps_left:,} steps of {self.tokens_per_step:,} tokens to go "
                f"({steps_left * self.tokens_per_step / 1e6:.2f}M tokens); a time estimate follows after "
                f"{self.measure_steps + 1} steps",
                flush=True,
            )

    def on_step_end(self, args, state, control, **kwargs):
        if self.tokens_per_second is not None:
            return
        if self._timer is None:
            self._timer = (state.global_step, time.perf_counter())  # after the first (untimed) step
            return
        first_step, started = self._timer
        timed = state.global_step - first_step
        if timed < self.measure_steps:
            return
        self.tokens_per_second = timed * self.tokens_per_step / (time.perf_counter() - started)
        minutes_left = (state.max_steps - state.global_step) * self.tokens_per_step / self.tokens_per_second / 60
        if state.is_world_process_zero:
            print(
                f"{self.what}: {self.tokens_per_second:,.0f} tokens/s, about {minutes_left:.0f} min left "
                f"(step {state.global_step:,} of {state.max_steps:,})",
                flush=True,
            )


__all__ = [
    "GradualUnfreezingCallback",
    "activation_penalty",
    "ActivationRegularizationCallback",
    "EvaluationRandomStateCallback",
    "StreamStateCallback",
    "TimeEstimateCallback",
]
