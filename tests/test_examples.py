"""The example scripts run end to end on real data (small settings) and leave usable folders."""

from __future__ import annotations

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
from transformers import pipeline

from hf_bpt3c import AwdLstmTokenizer
from hf_bpt3c.convert import convert_fastai
from hf_bpt3c.transfer import vocabulary_of

EXAMPLES = REPO_ROOT / "examples"


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
