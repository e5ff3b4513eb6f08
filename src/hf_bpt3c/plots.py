"""Figures of a training run: `plot_training_curves(trainer.state.log_history, path)`.

matplotlib is optional (`pip install matplotlib`); figures are drawn on `matplotlib.figure.Figure` objects, without
pyplot, so no display or global backend is involved.
"""

from __future__ import annotations

from pathlib import Path

# keys of Trainer's evaluation logs that are not metrics of the model
_NOT_METRICS = {"eval_loss", "eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "epoch", "step"}


def new_figure(width: float = 6.4, height: float = 4.2, ncols: int = 1):
    """A matplotlib `Figure` and its axes (one, or a list of `ncols`)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError("plots need matplotlib: pip install matplotlib") from err
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(1, ncols)
    return fig, axes


def _series(log_history: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of `key` in the log entries that have it."""
    entries = [entry for entry in log_history if key in entry and "step" in entry]
    return [entry["step"] for entry in entries], [entry[key] for entry in entries]


def default_metric(log_history: list[dict]) -> str | None:
    """The first evaluation metric in the logs (`eval_accuracy`, `eval_perplexity`, `eval_mse`, ...), or None."""
    for entry in log_history:
        for key in entry:
            if key.startswith("eval_") and key not in _NOT_METRICS:
                return key
    return None


def steps_per_epoch(log_history: list[dict]) -> float | None:
    """Optimizer steps per epoch, from the last log entry that has both `step` and `epoch` (None without one)."""
    pairs = [(entry["step"], entry["epoch"]) for entry in log_history if entry.get("step") and entry.get("epoch")]
    if not pairs:
        return None
    steps, epochs = max(pairs)
    return steps / epochs


def _mark_epochs(ax, log_history: list[dict]) -> None:
    """Epochs on a second x axis on top, and a dotted line at the end of each whole epoch."""
    per_epoch = steps_per_epoch(log_history)
    if per_epoch is None:
        return
    top = ax.secondary_xaxis("top", functions=(lambda s: s / per_epoch, lambda e: e * per_epoch))
    top.set_xlabel("epoch")
    last_epoch = max(entry.get("epoch") or 0 for entry in log_history)
    for epoch in range(1, int(last_epoch + 1e-6) + 1):
        ax.axvline(epoch * per_epoch, color="grey", linestyle=":", linewidth=0.8)


def plot_training_curves(
    log_history: list[dict], path: str | Path | None = None, metric: str | None = None, title: str | None = None
):
    """Training loss, validation loss and a validation metric against the optimizer step (epochs on a second axis
    on top, each epoch's end a dotted line), from `trainer.state.log_history`.

    Args:
        log_history: Trainer's logs: entries with `loss` (training, every `logging_steps`), `eval_loss` and
            `eval_<metric>` (every evaluation), each with its `step` and `epoch`.
        path: where to save the PNG (nothing is saved when None).
        metric: the evaluation key for the right panel (default: the first `eval_*` metric in the logs, e.g.
            `eval_accuracy`); the panel is left out when there is none.
        title: the figure's title.

    Returns the matplotlib `Figure`. A run that logged nothing yet still gives a figure, which says so.
    """
    if not isinstance(log_history, list) or not all(isinstance(entry, dict) for entry in log_history):
        raise TypeError("log_history must be a list of dicts (trainer.state.log_history)")
    if metric is not None and not any(metric in entry for entry in log_history):
        raise ValueError(f"metric {metric!r} is in no entry of log_history (e.g. 'eval_accuracy')")
    metric = metric or default_metric(log_history)
    fig, axes = new_figure(width=10.5 if metric else 6.4, ncols=2 if metric else 1)
    loss_ax = axes[0] if metric else axes
    for key, label, style in (("loss", "training loss", "-"), ("eval_loss", "validation loss", "o-")):
        steps, values = _series(log_history, key)
        if steps:
            loss_ax.plot(steps, values, style, label=label)
    if loss_ax.lines:
        loss_ax.legend(loc="best")
    else:
        loss_ax.text(0.5, 0.5, "no loss logged (set --logging_steps / --eval_strategy)", ha="center", va="center")
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("loss")
    _mark_epochs(loss_ax, log_history)
    if metric:
        steps, values = _series(log_history, metric)
        axes[1].plot(steps, values, "o-", color="C2")
        axes[1].set_xlabel("step")
        axes[1].set_ylabel(f"validation {metric.removeprefix('eval_')}")
        _mark_epochs(axes[1], log_history)
    for ax in axes if metric else [axes]:
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


__all__ = ["default_metric", "new_figure", "plot_training_curves", "steps_per_epoch"]
