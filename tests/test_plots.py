"""`plot_training_curves` on a hand-made `trainer.state.log_history`: what is drawn where."""

from __future__ import annotations

import pytest

from hf_bpt3c.training import plot_training_curves

pytest.importorskip("matplotlib")

# 2 epochs of 10 steps: training loss every 5 steps, an evaluation after each epoch (as Trainer logs them)
LOG_HISTORY = [
    {"loss": 2.0, "grad_norm": 1.0, "learning_rate": 1e-3, "epoch": 0.5, "step": 5},
    {"loss": 1.5, "grad_norm": 1.0, "learning_rate": 1e-3, "epoch": 1.0, "step": 10},
    {"eval_loss": 1.4, "eval_accuracy": 0.6, "eval_f1": 0.5, "eval_runtime": 0.1, "epoch": 1.0, "step": 10},
    {"loss": 1.2, "grad_norm": 1.0, "learning_rate": 1e-4, "epoch": 1.5, "step": 15},
    {"loss": 1.0, "grad_norm": 1.0, "learning_rate": 1e-5, "epoch": 2.0, "step": 20},
    {"eval_loss": 1.1, "eval_accuracy": 0.7, "eval_f1": 0.65, "eval_runtime": 0.1, "epoch": 2.0, "step": 20},
    {"train_runtime": 3.0, "train_loss": 1.4, "epoch": 2.0, "step": 20},
]


def curves(ax) -> dict:
    """{legend label or y label: (xs, ys)} of the solid/marked lines of an axis (epoch lines left out)."""
    lines = [line for line in ax.get_lines() if line.get_linestyle() != ":"]
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in lines}


def test_losses_metric_and_epochs(tmp_path):
    path = tmp_path / "training_curves.png"
    figure = plot_training_curves(LOG_HISTORY, path, title="classifier")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    loss_ax, metric_ax = figure.axes[:2]
    drawn = curves(loss_ax)
    assert drawn["training loss"] == ([5, 10, 15, 20], [2.0, 1.5, 1.2, 1.0])
    assert drawn["validation loss"] == ([10, 20], [1.4, 1.1])
    assert list(curves(metric_ax).values()) == [([10, 20], [0.6, 0.7])]  # the first metric: accuracy
    assert metric_ax.get_ylabel() == "validation accuracy"
    for ax in (loss_ax, metric_ax):
        epoch_lines = [line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == ":"]
        assert epoch_lines == [10, 20]  # the end of each epoch
    assert [child.get_xlabel() for child in loss_ax.child_axes] == ["epoch"]  # the epoch axis on top
    assert figure._suptitle.get_text() == "classifier"


def test_chosen_metric_and_no_metric():
    figure = plot_training_curves(LOG_HISTORY, metric="eval_f1")
    assert list(curves(figure.axes[1]).values()) == [([10, 20], [0.5, 0.65])]
    training_only = [entry for entry in LOG_HISTORY if "loss" in entry]
    figure = plot_training_curves(training_only)
    assert list(curves(figure.axes[0])) == ["training loss"] and figure.axes[0].get_xlabel() == "step"
    empty = plot_training_curves([])
    assert "no loss logged" in empty.axes[0].texts[0].get_text()


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="log_history"):
        plot_training_curves({"loss": 1.0})
    with pytest.raises(ValueError, match="metric"):
        plot_training_curves(LOG_HISTORY, metric="eval_bleu")
