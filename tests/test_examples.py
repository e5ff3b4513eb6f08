"""The example scripts run end to end on real data (small settings) and leave usable folders."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from test_convert import toy_lm_state_dict
from transformers import AutoModelForSequenceClassification, pipeline

from hf_bpt3c import AwdLstmForSequenceClassification, AwdLstmTokenizer
from hf_bpt3c.convert import convert_fastai
from hf_bpt3c.transfer import vocabulary_of

EXAMPLES = REPO_ROOT / "examples"

pytestmark = pytest.mark.slow  # runs the example scripts

PNG = b"\x89PNG\r\n\x1a\n"
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None  # the scripts' figures need it


def run_script(name: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES)}
    command = [sys.executable, str(EXAMPLES / name), *args, "--report_to", "none", "--disable_tqdm", "true"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def test_run_ulmfit_quick_on_the_imdb_sample(data_dir, tmp_path):
    out = tmp_path / "imdb"
    stdout = run_script(
        "run_ulmfit.py",
        "--train_file", str(data_dir / "imdb_sample" / "texts.csv"),
        "--split_column", "is_valid",
        "--text_column", "text",
        "--label_column", "label",
        "--output_dir", str(out),
        "--quick",
    )  # fmt: skip
    assert "validation accuracy:" in stdout
    results = json.loads((out / "eval_results.json").read_text())
    assert 0.0 <= results["eval_accuracy"] <= 1.0 and "eval_f1" in results
    classify = pipeline("text-classification", model=str(out))
    prediction = classify("A wonderful, moving film with brilliant acting.")[0]
    assert prediction["label"] in {"negative", "positive"}
    card = ModelCard.load(out / "README.md")
    assert card.data.pipeline_tag == "text-classification" and "bpt3c" in card.data.tags
    assert (out / "language_model" / "model.safetensors").is_file()
    for folder in (out, out / "language_model") if HAS_MATPLOTLIB else ():
        assert (folder / "training_curves.png").read_bytes()[:8] == PNG, folder


def test_run_ulmfit_bidirectional_quick_writes_the_three_accuracies(data_dir, tmp_path):
    out = tmp_path / "bidi"
    stdout = run_script(
        "run_ulmfit.py",
        "--train_file", str(data_dir / "imdb_sample" / "texts.csv"),
        "--split_column", "is_valid",
        "--text_column", "text",
        "--label_column", "label",
        "--output_dir", str(out),
        "--quick", "--bidirectional", "--save_strategy", "no",
    )  # fmt: skip
    assert "ensemble" in stdout
    results = json.loads((out / "eval_results.json").read_text())
    assert {"forward_accuracy", "backward_accuracy", "ensemble_accuracy"} <= set(results)
    models = {d: AwdLstmForSequenceClassification.from_pretrained(out / d).eval() for d in ("forward", "backward")}
    assert not models["forward"].config.backwards and models["backward"].config.backwards
    tokenizer = AwdLstmTokenizer.from_pretrained(out / "forward")
    assert vocabulary_of(tokenizer) == vocabulary_of(AwdLstmTokenizer.from_pretrained(out / "backward"))
    # the ensemble's accuracy, recomputed one document at a time: the mean of the two softmaxes
    with open(data_dir / "imdb_sample" / "texts.csv", newline="", encoding="utf-8") as f:
        rows = [row for row in csv.DictReader(f) if row["is_valid"] == "True"][:80]  # --quick's validation rows
    correct = {"forward": 0, "backward": 0, "ensemble": 0}
    with torch.no_grad():
        for row in rows:
            ids = torch.tensor([tokenizer(row["text"])["input_ids"]])
            probs = {d: m(ids).logits.softmax(-1)[0] for d, m in models.items()}
            probs["ensemble"] = (probs["forward"] + probs["backward"]) / 2
            truth = models["forward"].config.label2id[row["label"]]
            for name, p in probs.items():
                correct[name] += int(p.argmax()) == truth
    for name, count in correct.items():
        assert results[f"{name}_accuracy"] == pytest.approx(count / len(rows)), name


def test_run_language_modeling_on_text_lines(data_dir, tmp_path):
    stdout = run_script(
        "run_language_modeling.py",
        "--train_file", str(data_dir / "tinyshakespeare" / "input.txt"),
        "--max_train_samples", "1500",
        "--max_eval_samples", "300",
        "--min_freq", "2",
        "--embedding_size", "16", "--hidden_size", "32", "--num_hidden_layers", "2", "--bptt", "20",
        "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "8",
        "--num_train_epochs", "1", "--lr", "3e-3",
        "--output_dir", str(tmp_path / "lm"),
    )  # fmt: skip
    perplexity = float(stdout.split("validation perplexity:")[1].split()[0])
    results = json.loads((tmp_path / "lm" / "lm_results.json").read_text())
    assert perplexity == pytest.approx(results["perplexity"], rel=1e-2)
    vocab_size = json.loads((tmp_path / "lm" / "config.json").read_text())["vocab_size"]
    assert 1 < perplexity < vocab_size  # better than a uniform guess over the vocabulary
    assert not HAS_MATPLOTLIB or (tmp_path / "lm" / "training_curves.png").read_bytes()[:8] == PNG


def small_converted_lm(data_dir, folder):
    """A fastai v2 LM (random weights, emb 16, hidden 32, 2 layers) whose vocabulary comes from other texts than
    the IMDb sample's, converted with `convert_fastai`: a stand-in for fastai's WT103 model."""
    texts = [line for line in (data_dir / "tinyshakespeare" / "input.txt").read_text().splitlines() if line][:3000]
    itos = vocabulary_of(AwdLstmTokenizer.from_texts(texts, min_freq=2))
    torch.save(toy_lm_state_dict(len(itos), emb=16, hid=32, layers=2), folder.parent / "lm.pth")
    convert_fastai(folder.parent / "lm.pth", itos, folder, bptt=24, max_len=96)
    return itos


def test_run_ulmfit_quick_from_a_pretrained_model(data_dir, tmp_path):
    """The three ULMFiT stages from a converted model: target vocabulary (pretrained rows mapped), LM fine-tuning
    (a frozen epoch, then all), the classifier."""
    pretrained_itos = small_converted_lm(data_dir, tmp_path / "pretrained")
    out = tmp_path / "imdb"
    stdout = run_script(
        "run_ulmfit.py",
        "--model_name_or_path", str(tmp_path / "pretrained"),
        "--train_file", str(data_dir / "imdb_sample" / "texts.csv"),
        "--split_column", "is_valid",
        "--text_column", "text",
        "--label_column", "label",
        "--output_dir", str(out),
        "--lm_extra_file", str(data_dir / "pretrain_corpus" / "corpus.jsonl"),
        "--lm_extra_max_texts", "50",
        "--quick",
    )  # fmt: skip
    assert "validation accuracy:" in stdout and f"language model: from {tmp_path / 'pretrained'}" in stdout
    assert "language model: 50 more texts from" in stdout
    lm_config = json.loads((out / "language_model" / "config.json").read_text())
    assert (lm_config["embedding_size"], lm_config["hidden_size"], lm_config["bptt"]) == (16, 32, 24)
    target_itos = vocabulary_of(AwdLstmTokenizer.from_pretrained(out / "language_model"))
    assert target_itos != pretrained_itos and lm_config["vocab_size"] == len(target_itos)
    lm_results = json.loads((out / "language_model" / "lm_results.json").read_text())
    assert lm_results["frozen_epoch"] == 1.0 and lm_results["perplexity"] > 1
    assert json.loads((out / "config.json").read_text())["bptt"] == 24


def test_run_language_modeling_resumes_and_logs_perplexity(data_dir, tmp_path):
    """Pretraining a corpus: tokenized by 2 processes, a checkpoint per epoch, perplexity in the logs. Rerunning the
    same command after an interruption (here: the last checkpoint and the final model removed) resumes from the last
    checkpoint and ends with the weights of the uninterrupted run."""
    out = tmp_path / "lm"
    command = [
        "--train_file", str(data_dir / "pretrain_corpus" / "corpus.jsonl"),
        "--max_train_samples", "200", "--max_eval_samples", "20", "--preprocessing_num_workers", "2",
        "--embedding_size", "16", "--hidden_size", "32", "--num_hidden_layers", "2", "--bptt", "20",
        "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "8", "--num_train_epochs", "2",
        "--eval_strategy", "epoch", "--save_strategy", "epoch", "--logging_steps", "20",
        "--output_dir", str(out), "--seed", "1",
    ]  # fmt: skip
    run_script("run_language_modeling.py", *command)
    checkpoints = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert len(checkpoints) == 2
    state = json.loads((checkpoints[-1] / "trainer_state.json").read_text())
    evals = [entry for entry in state["log_history"] if "eval_loss" in entry]
    assert [entry["epoch"] for entry in evals] == [1.0, 2.0]
    for entry in evals:
        assert entry["eval_perplexity"] == pytest.approx(math.exp(entry["eval_loss"]))
    assert any("perplexity" in entry for entry in state["log_history"] if "loss" in entry)
    uninterrupted = load_file(out / "model.safetensors")

    shutil.rmtree(checkpoints[-1])
    (out / "model.safetensors").unlink()
    stdout = run_script("run_language_modeling.py", *command)
    resumed = load_file(out / "model.safetensors")
    assert "validation perplexity:" in stdout
    assert resumed.keys() == uninterrupted.keys()
    for name, tensor in uninterrupted.items():
        assert torch.equal(resumed[name], tensor), name


def tiny_classification_task(folder) -> tuple[str, str]:
    """A tiny labelled CSV (48 training and 16 validation texts) and a tiny random LM with a tokenizer built from
    the texts (emb 8, hidden 16, 2 layers): a classification run in seconds."""
    import csv
    import random

    from hf_bpt3c import AwdLstmConfig, AwdLstmForCausalLM

    gen = random.Random(0)
    words = {"pos": "good great fine nice".split(), "neg": "bad awful poor dull".split()}
    rows = []
    for i in range(64):
        label = "pos" if i % 2 else "neg"
        text = " ".join(gen.choice(words[label] + ["film", "the", "a", "plot"]) for _ in range(gen.randint(3, 30)))
        rows.append({"text": text, "label": label, "is_valid": i >= 48})
    data = folder / "texts.csv"
    with open(data, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label", "is_valid"])
        writer.writeheader()
        writer.writerows(rows)
    tokenizer = AwdLstmTokenizer.from_texts([row["text"] for row in rows], min_freq=1)
    config = AwdLstmConfig(vocab_size=len(tokenizer), embedding_size=8, hidden_size=16, num_hidden_layers=2)
    AwdLstmForCausalLM(config).save_pretrained(folder / "lm")
    tokenizer.save_pretrained(folder / "lm")
    return str(data), str(folder / "lm")


def test_run_classification_lr_find_auto(tmp_path):
    """`--lr_find --lr auto`: the finder's plot and suggestions, training at the valley suggestion, the training
    curves next to the model."""
    pytest.importorskip("matplotlib")
    data, lm = tiny_classification_task(tmp_path)
    out = tmp_path / "clf"
    stdout = run_script(
        "run_classification.py",
        "--model_name_or_path", lm, "--train_file", data, "--split_column", "is_valid",
        "--bptt", "8", "--max_len", "16", "--per_device_train_batch_size", "8", "--num_train_epochs", "2",
        "--lr_find", "--lr", "auto", "--output_dir", str(out), "--save_strategy", "no",
    )  # fmt: skip
    valley = float(stdout.split("training at the valley suggestion, learning rate")[1].split()[0])
    assert f"valley {valley:.2e}" in stdout and "validation accuracy:" in stdout
    for name in ("lr_find.png", "training_curves.png"):
        assert (out / name).read_bytes()[:8] == PNG, name
    card = (out / "README.md").read_text()
    assert f"{valley}" in card or f"{valley:.2e}" in card


def write_test_file(path, texts: list[str]) -> None:
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows([[f"doc{i}", text] for i, text in enumerate(texts)])


def test_run_classification_predicts_in_input_order(tmp_path):
    """`--do_predict --test_file`: predictions.csv has the test rows in their order (not the length order the
    batches use), the predicted label and each class's probability, equal to the saved model's on each text."""
    import csv
    import random

    data, lm = tiny_classification_task(tmp_path)
    gen = random.Random(1)
    texts = [" ".join(gen.choice(["good", "bad", "film", "plot", "dull"]) for _ in range(n)) for n in range(1, 40, 3)]
    gen.shuffle(texts)
    write_test_file(tmp_path / "test.csv", texts)
    out = tmp_path / "clf"
    stdout = run_script(
        "run_classification.py",
        "--model_name_or_path", lm, "--train_file", data, "--split_column", "is_valid",
        "--bptt", "8", "--max_len", "16", "--per_device_train_batch_size", "8", "--num_train_epochs", "1",
        "--train_sampling_strategy", "group_by_length", "--per_device_eval_batch_size", "4",
        "--do_predict", "--test_file", str(tmp_path / "test.csv"), "--output_dir", str(out), "--save_strategy", "no",
    )  # fmt: skip
    assert f"predictions for {len(texts)} texts" in stdout
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["id", "text", "label", "prob_neg", "prob_pos"]
    assert [row["id"] for row in rows] == [f"doc{i}" for i in range(len(texts))]
    assert [row["text"] for row in rows] == texts
    tokenizer = AwdLstmTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    for row in rows:
        with torch.no_grad():
            probs = model(**tokenizer(row["text"], return_tensors="pt")).logits.softmax(-1)[0]
        assert [float(row["prob_neg"]), float(row["prob_pos"])] == pytest.approx(probs.tolist(), abs=1e-6)
        assert row["label"] == model.config.id2label[int(probs.argmax())]


def test_predictions_refuse_a_row_without_text(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    from run_classification import write_predictions

    from hf_bpt3c import AwdLstmConfig, AwdLstmForSequenceClassification

    tokenizer = AwdLstmTokenizer.from_texts(["good bad film"], min_freq=1)
    config = AwdLstmConfig(vocab_size=len(tokenizer), embedding_size=8, hidden_size=16, num_hidden_layers=2)
    model = AwdLstmForSequenceClassification(config)
    write_test_file(tmp_path / "test.csv", ["good film", "bad", "", "film"])
    with pytest.raises(ValueError, match=r"row 2 has no text in column 'text'"):
        write_predictions(model, tokenizer, str(tmp_path / "test.csv"), "text", str(tmp_path / "p.csv"))
    with pytest.raises(ValueError, match=r"no column 'review'"):
        write_predictions(model, tokenizer, str(tmp_path / "test.csv"), "review", str(tmp_path / "p.csv"))
    (tmp_path / "test.jsonl").write_text('{"text": "good", "label": "x"}\n{"text": "   ", "label": "y"}\n')
    with pytest.raises(ValueError, match=r"row 1 has no text"):
        write_predictions(model, tokenizer, str(tmp_path / "test.jsonl"), "text", str(tmp_path / "p.csv"))
    (tmp_path / "test.jsonl").write_text('{"text": "good film", "label": "x"}\n{"text": "bad", "label": "y"}\n')
    write_predictions(model, tokenizer, str(tmp_path / "test.jsonl"), "text", str(tmp_path / "p.csv"))
    header = (tmp_path / "p.csv").read_text().splitlines()[0]
    assert header == "text,label,predicted_label,prob_LABEL_0,prob_LABEL_1"  # the file's own label column is kept
