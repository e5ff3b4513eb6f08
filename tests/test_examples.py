"""The example scripts run end to end on real data (small settings) and leave usable folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT
from huggingface_hub import ModelCard
from transformers import pipeline

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
