"""`hf_bpt3c.training.scripts`, what the example scripts are built from: learning rates, logging for the curves,
checkpoints, splits, metrics, the two ULMFiT stages run in-process at toy size; and the example scripts import
the package, never one another."""

from __future__ import annotations

import ast
import csv
import importlib.util
import logging
import types

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from transformers import EvalPrediction, HfArgumentParser, TrainingArguments
from transformers.trainer_utils import IntervalStrategy

from hf_bpt3c import AwdLstmForSequenceClassification
from hf_bpt3c.training.scripts import (
    CARD_METRICS,
    ClassifierArguments,
    DataArguments,
    LanguageModelArguments,
    file_builder,
    held_out_split,
    last_checkpoint,
    load_splits,
    log_for_curves,
    metrics_for,
    parse_lr,
    report,
    resolve_lr,
    runs,
    save_training_curves,
    steps_per_epoch,
    summary,
    train_classifier,
    train_language_model,
    training_defaults,
)

EXAMPLES = REPO_ROOT / "examples"
METRICS_DIR = EXAMPLES / "metrics"
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
WORDS = "good bad film plot acting great dull long fun slow story cast".split()


def training_args(tmp_path, **overrides) -> TrainingArguments:
    defaults = dict(output_dir=str(tmp_path), report_to=[], use_cpu=True, disable_tqdm=True, save_strategy="no")
    return TrainingArguments(**{**defaults, **overrides})


# ---------------------------------------------------------------------------------------------- the examples


@pytest.mark.parametrize("script", ["run_classification.py", "run_language_modeling.py", "run_ulmfit.py"])
def test_the_examples_import_the_package_not_one_another(script):
    tree = ast.parse((EXAMPLES / script).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    others = {path.stem for path in EXAMPLES.glob("*.py")}
    assert not imported & others, imported & others
    assert "hf_bpt3c.training.scripts" in imported
    assert "sys.path" not in (EXAMPLES / script).read_text()


def test_training_defaults_pin_memory_only_with_an_accelerator():
    parser = HfArgumentParser(TrainingArguments)
    parser.set_defaults(**training_defaults())
    (default,) = parser.parse_args_into_dataclasses(["--output_dir", "out", "--report_to", "none"])
    assert default.dataloader_pin_memory is torch.accelerator.is_available()
    (asked,) = parser.parse_args_into_dataclasses(["--output_dir", "out", "--dataloader_pin_memory", "true"])
    assert asked.dataloader_pin_memory is True  # the user's flag still wins


@pytest.mark.parametrize("script", ["run_classification.py", "run_language_modeling.py", "run_ulmfit.py"])
def test_the_examples_take_the_training_defaults(script):
    tree = ast.parse((EXAMPLES / script).read_text())
    called = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert "training_defaults" in called


# ---------------------------------------------------------------------------------------------- learning rates


def test_parse_lr_reads_a_positive_number_or_auto():
    assert parse_lr("1e-2") == 0.01 and parse_lr(3e-3) == 3e-3
    assert parse_lr("auto") is None and parse_lr(" AUTO ") is None
    for bad in ("0", "-1e-3", "nan", "inf", "fast", None):
        with pytest.raises(ValueError, match="--lm_lr must be a positive number or 'auto'"):
            parse_lr(bad, "--lm_lr")


class FakeFinder:
    """Stands in for `find_learning_rate`: records its calls, returns fixed suggestions."""

    def __init__(self):
        self.calls = []

    def __call__(self, trainer, what):
        self.calls.append((trainer, what))
        return types.SimpleNamespace(valley=4e-3, suggestions={"valley": 4e-3, "minimum": 1e-2})


@pytest.fixture
def finder(monkeypatch) -> FakeFinder:
    fake = FakeFinder()
    monkeypatch.setattr(runs, "find_learning_rate", fake)
    return fake


def test_resolve_lr_without_the_finder_builds_one_trainer(finder):
    built = []
    lr, trainer, notes = resolve_lr(1e-2, False, lambda lr: built.append(lr) or f"trainer {lr}", False, "x", 2e-3)
    assert (lr, trainer, notes, built, finder.calls) == (1e-2, "trainer 0.01", {}, [1e-2], [])


def test_resolve_lr_auto_trains_at_the_valley(finder, capsys):
    built = []
    lr, trainer, notes = resolve_lr(None, False, lambda lr: built.append(lr) or f"trainer {lr}", False, "clf", 2e-3)
    assert (lr, trainer, built) == (4e-3, "trainer 0.004", [2e-3, 4e-3])
    assert finder.calls == [("trainer 0.002", "clf")]  # the finder runs on the placeholder's trainer
    assert notes == {"LR finder suggestions": "valley 4.00e-03, minimum 1.00e-02"}
    assert "clf: training at the valley suggestion, learning rate 4.00e-03" in capsys.readouterr().out


def test_resolve_lr_keeps_a_given_lr_and_notes_the_suggestions(finder):
    lr, trainer, notes = resolve_lr(1e-2, True, lambda lr: f"trainer {lr}", False, "lm", 2e-3)
    assert (lr, trainer, len(finder.calls)) == (1e-2, "trainer 0.01", 1) and "valley 4.00e-03" in notes[
        next(iter(notes))
    ]


def test_resolve_lr_skips_the_finder_when_resuming(finder, caplog):
    with caplog.at_level(logging.WARNING):
        lr, trainer, notes = resolve_lr(None, True, lambda lr: f"trainer {lr}", True, "lm", 2e-3)
    assert (lr, trainer, notes, finder.calls) == (2e-3, "trainer 0.002", {}, [])
    assert "the LR finder is skipped" in caplog.text


# ---------------------------------------------------------------------------------------------- runs


def test_steps_per_epoch_ignores_max_steps_and_epochs(tmp_path):
    args = training_args(tmp_path, per_device_train_batch_size=4, gradient_accumulation_steps=2, max_steps=100)
    assert steps_per_epoch(33, args) == 5  # 9 batches, 2 per step
    assert args.max_steps == 100  # unchanged


def test_log_for_curves_fills_only_trainers_defaults(tmp_path):
    args = training_args(tmp_path)
    log_for_curves(args, epoch_steps=23, has_eval=True)
    assert (args.logging_steps, args.eval_strategy) == (4, IntervalStrategy.EPOCH)
    given = training_args(tmp_path, logging_steps=7, eval_strategy="steps", eval_steps=3)
    log_for_curves(given, epoch_steps=23, has_eval=True)
    assert (given.logging_steps, given.eval_strategy) == (7, IntervalStrategy.STEPS)
    no_eval = training_args(tmp_path)
    log_for_curves(no_eval, epoch_steps=3, has_eval=False)
    assert (no_eval.logging_steps, no_eval.eval_strategy) == (1, IntervalStrategy.NO)


def test_last_checkpoint_is_the_latest_one(tmp_path):
    assert last_checkpoint(str(tmp_path / "missing")) is None
    assert last_checkpoint(str(tmp_path)) is None
    for step in (3, 10, 7):
        (tmp_path / f"checkpoint-{step}").mkdir()
    assert last_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-10")


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="training_curves.png needs matplotlib")
def test_save_training_curves_on_the_main_process_only(tmp_path):
    history = [{"loss": 2.0, "step": 1, "epoch": 0.5}, {"loss": 1.5, "step": 2, "epoch": 1.0},
               {"eval_loss": 1.7, "eval_accuracy": 0.6, "step": 2, "epoch": 1.0}]  # fmt: skip

    def trainer(folder, main: bool):
        args = types.SimpleNamespace(output_dir=str(folder))
        state = types.SimpleNamespace(log_history=history)
        return types.SimpleNamespace(args=args, state=state, is_world_process_zero=lambda: main)

    (tmp_path / "main").mkdir(), (tmp_path / "other").mkdir()
    save_training_curves(trainer(tmp_path / "main", True), "classifier")
    save_training_curves(trainer(tmp_path / "other", False), "classifier")
    assert (tmp_path / "main" / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "other" / "training_curves.png").exists()


# ---------------------------------------------------------------------------------------------- texts


def write_csv(path, rows: list[dict]) -> str:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def test_file_builder():
    assert [file_builder(p) for p in ("a.jsonl", "a.json", "corpus/*.txt", "a.csv", "a.tsv")] == [
        "json", "json", "text", "csv", "csv",
    ]  # fmt: skip


def test_load_splits_by_column_held_out_share_and_limits(tmp_path):
    rows = [{"text": f"text {i}", "is_valid": str(i % 4 == 0)} for i in range(20)]
    path = write_csv(tmp_path / "texts.csv", rows)
    splits = load_splits(DataArguments(train_file=path, split_column="is_valid"))
    assert (len(splits["train"]), len(splits["validation"])) == (15, 5)
    assert splits["validation"]["text"] == [f"text {i}" for i in range(0, 20, 4)]
    held_out = load_splits(DataArguments(train_file=path, validation_split_percentage=25))
    assert (len(held_out["train"]), len(held_out["validation"])) == (15, 5)
    limited = load_splits(DataArguments(train_file=path, split_column="is_valid", max_train_samples=4))
    assert (len(limited["train"]), len(limited["validation"])) == (4, 5)
    with pytest.raises(ValueError, match="give --train_file"):
        load_splits(DataArguments())


# ---------------------------------------------------------------------------------------------- metrics


def test_metrics_for_each_problem_type():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0]])
    single = metrics_for("single_label_classification", METRICS_DIR)(EvalPrediction(logits, np.array([0, 1, 1, 1])))
    assert single["accuracy"] == 0.75 and single["f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    multi_logits = np.array([[1.0, 1.0], [-1.0, 2.0]])
    multi = metrics_for("multi_label_classification", METRICS_DIR)(EvalPrediction(multi_logits, np.eye(2)))
    assert multi["accuracy"] == 0.75 and multi["exact_match"] == 0.5
    probabilities = metrics_for("multi_label_classification", METRICS_DIR, probabilities=True)
    assert probabilities(EvalPrediction(np.array([[0.6, 0.4], [0.4, 0.6]]), np.eye(2)))["exact_match"] == 1.0
    values = metrics_for("regression", METRICS_DIR)(EvalPrediction(np.array([[1.0], [2.0]]), np.array([1.0, 3.0])))
    assert values["mse"] == pytest.approx(0.5) and values["mae"] == pytest.approx(0.5)
    for problem_type, names in CARD_METRICS.items():
        metrics = {f"eval_{name}": 0.5 for name in names}
        assert summary(metrics, problem_type) == ", ".join(f"{name} 0.5000" for name in names)
    assert report({"eval_accuracy": 0.8125, "eval_f1": 0.8}, "single_label_classification") == (
        "validation accuracy: 0.8125 (macro F1 0.8000)"
    )
    assert report({"eval_mse": 1, "eval_mae": 1, "eval_pearson": 0.25}, "regression").startswith(
        "validation metrics: mse"
    )


# ---------------------------------------------------------------------------------------------- the two stages


def texts_and_labels(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(4, 12)))) for _ in range(n)]
    return texts, ["positive" if text.count("good") >= text.count("bad") else "negative" for text in texts]


def toy_language_model(tmp_path):
    """A toy LM trained in `tmp_path/lm` (checked), and the classifier's splits: 24 training, 8 validation texts."""
    torch.manual_seed(0)
    train_texts, train_labels = texts_and_labels(24, seed=0)
    eval_texts, eval_labels = texts_and_labels(8, seed=1)
    lm_args = LanguageModelArguments(embedding_size=8, hidden_size=12, num_hidden_layers=2, bptt=8, min_freq=1)
    lm_training = training_args(tmp_path / "lm", num_train_epochs=1, per_device_train_batch_size=2)
    lm, tokenizer, lm_metrics = train_language_model(lm_args, lm_training, train_texts, eval_texts)
    assert np.isfinite(lm_metrics["perplexity"]) and (tmp_path / "lm" / "lm_results.json").is_file()
    assert lm.config.bptt == 8 and lm_training.train_sampling_strategy == "sequential"
    import datasets

    splits = datasets.DatasetDict(
        train=datasets.Dataset.from_dict({"text": train_texts, "label": train_labels}),
        validation=datasets.Dataset.from_dict({"text": eval_texts, "label": eval_labels}),
    )
    return splits, tokenizer


def test_the_language_model_then_the_classifier_at_toy_size(tmp_path):
    splits, tokenizer = toy_language_model(tmp_path)
    args = ClassifierArguments(model_name_or_path=str(tmp_path / "lm"), bptt=8, max_len=24)
    classifier_training = training_args(tmp_path / "clf", num_train_epochs=2, per_device_train_batch_size=4)
    trainer, metrics = train_classifier(args, classifier_training, splits, "text", tokenizer, metrics_dir=METRICS_DIR)
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0 and "eval_f1" in metrics
    assert trainer.model.config.id2label == {0: "negative", 1: "positive"}
    assert (tmp_path / "clf" / "model.safetensors").is_file() and (tmp_path / "clf" / "all_results.json").is_file()
    assert trainer.model.model_card_info["training"]["learning rate (head)"] == 1e-2


def validation_loss(model, tokenizer, split) -> float:
    """The mean cross-entropy of `model` on `split`, one padded batch (BPT3C is batch invariant)."""
    batch = tokenizer(list(split["text"]), padding=True, return_tensors="pt")
    labels = torch.tensor([model.config.label2id[label] for label in split["label"]])
    with torch.no_grad():
        return model.eval()(**batch, labels=labels).loss.item()


def test_early_stopping_keeps_the_epoch_of_the_lowest_held_out_loss(tmp_path):
    from safetensors.torch import load_file

    splits, tokenizer = toy_language_model(tmp_path)
    args = ClassifierArguments(model_name_or_path=str(tmp_path / "lm"), bptt=8, max_len=24, early_stopping_holdout=25)
    out = tmp_path / "clf"
    classifier_training = training_args(out, num_train_epochs=5, per_device_train_batch_size=4, save_strategy="epoch")
    trainer, metrics = train_classifier(args, classifier_training, splits, "text", tokenizer, metrics_dir=METRICS_DIR)

    card = trainer.model.model_card_info["training"]
    assert card["training documents"] == 18 and card["held out for early stopping"] == 6
    *held_out_losses, final = [
        (log["eval_loss"], log["epoch"]) for log in trainer.state.log_history if "eval_loss" in log
    ]
    assert len(held_out_losses) == 5 and final[0] == metrics["eval_loss"]
    best_loss, best_epoch = min(held_out_losses)
    assert card["kept epoch"] == best_epoch
    # the saved weights are those of the kept epoch's checkpoint
    saved = load_file(out / "model.safetensors")
    kept = load_file(out / f"checkpoint-{round(best_epoch * 5)}" / "model.safetensors")
    assert saved.keys() == kept.keys() and all(torch.equal(saved[k], kept[k]) for k in saved)
    # the reported metrics are the validation split's, not the held-out documents'
    model = AwdLstmForSequenceClassification.from_pretrained(out)
    assert metrics["eval_loss"] == pytest.approx(validation_loss(model, tokenizer, splits["validation"]), rel=1e-5)


def test_early_stopping_split_is_seeded_and_its_checkpoints_go_unless_asked_for(tmp_path):
    splits, tokenizer = toy_language_model(tmp_path)
    args = ClassifierArguments(
        model_name_or_path=str(tmp_path / "lm"),
        bptt=8,
        max_len=24,
        early_stopping_holdout=25,
        early_stopping_patience=1,
    )
    first, held_out = held_out_split(args, training_args(tmp_path, seed=3), splits["train"])
    again, held_out_again = held_out_split(args, training_args(tmp_path, seed=3), splits["train"])
    texts = {name: list(rows["text"]) for name, rows in (("first", first), ("held_out", held_out), ("again", again))}
    assert len(held_out) == 6 and texts["held_out"] == list(held_out_again["text"]) and texts["first"] == texts["again"]
    assert sorted(texts["first"] + texts["held_out"]) == sorted(splits["train"]["text"])
    _, other = held_out_split(args, training_args(tmp_path, seed=4), splits["train"])
    assert list(other["text"]) != texts["held_out"]

    out = tmp_path / "clf"
    classifier_training = training_args(out, num_train_epochs=6, per_device_train_batch_size=4)
    trainer, _ = train_classifier(args, classifier_training, splits, "text", tokenizer, metrics_dir=METRICS_DIR)
    assert not list(out.glob("checkpoint-*")) and (out / "model.safetensors").is_file()
    *held_out_losses, _ = [log["eval_loss"] for log in trainer.state.log_history if "eval_loss" in log]
    # patience 1: training stops at the first epoch whose held-out loss is not lower than the best before it
    stop = next((i for i in range(1, len(held_out_losses)) if held_out_losses[i] >= min(held_out_losses[:i])), None)
    assert len(held_out_losses) == (6 if stop is None else stop + 1)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"early_stopping_holdout": 100}, "0-99"),
        ({"early_stopping_holdout": -5}, "0-99"),
        ({"early_stopping_patience": 2}, "needs --early_stopping_holdout"),
        ({"early_stopping_holdout": 10, "early_stopping_patience": 0}, "needs --early_stopping_holdout"),
    ],
)
def test_early_stopping_arguments_are_checked(tmp_path, overrides, message):
    import datasets

    args = ClassifierArguments(model_name_or_path="unused", **overrides)
    rows = datasets.Dataset.from_dict({"text": ["a"] * 10, "label": ["x"] * 10})
    with pytest.raises(ValueError, match=message):
        held_out_split(args, training_args(tmp_path), rows)


def test_early_stopping_refuses_step_checkpoints(tmp_path):
    splits, tokenizer = toy_language_model(tmp_path)
    args = ClassifierArguments(model_name_or_path=str(tmp_path / "lm"), bptt=8, max_len=24, early_stopping_holdout=25)
    steps = training_args(tmp_path / "clf", save_strategy="steps", save_steps=2)
    with pytest.raises(ValueError, match="--save_strategy"):
        train_classifier(args, steps, splits, "text", tokenizer, metrics_dir=METRICS_DIR)
