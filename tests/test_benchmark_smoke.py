"""The benchmarks' `--smoke` runs exercise every code path (both frameworks when fastai is installed) quickly."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT
from test_examples import small_converted_lm
from transformers import TrainingArguments

pytestmark = pytest.mark.slow  # subprocesses


def test_speed_benchmark_smoke(data_dir):
    """Every code path, bf16 included (emulated where the CPU lacks it); the first line names the CPU."""
    script = REPO_ROOT / "benchmarks" / "bpt3c_speed.py"
    result = subprocess.run(
        [sys.executable, str(script), "--smoke", "--dtype", "both"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert out.startswith(f"# CPU capability {torch.backends.cpu.get_cpu_capability()}, native bfloat16: "), out
    training, inference = out.split("\nTraining:\n")[1].split("\nInference:\n")
    assert "| uniform 20 |" in training and "| imdb |" in training and "int8" not in training.split("Memory")[0]
    assert "| uniform 20 |" in inference and "| imdb |" in inference and "ours int8 tok/s" in inference
    assert "Memory sweep" in out and "- bf16 vs fp32: argmax agreement" in out and "- int8 vs fp32: argmax" in out
    if importlib.util.find_spec("onnxruntime"):  # the ONNX Runtime rows, fp32 within 1e-4 of ours
        assert "ours onnx-int8 tok/s" in inference, out
        onnx_fp32 = next(line for line in out.splitlines() if line.startswith("- onnx-fp32 vs fp32"))
        assert "agreement 100.0%" in onnx_fp32 and float(onnx_fp32.split("difference| ")[1].split(",")[0]) < 1e-4


def load_speed_benchmark():
    spec = importlib.util.spec_from_file_location("bpt3c_speed", REPO_ROOT / "benchmarks" / "bpt3c_speed.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_speed_benchmark_runs_bf16_rows_only_where_native():
    choose = load_speed_benchmark().choose_dtypes
    assert choose("auto", True, "cpu") == (["fp32", "bf16"], False, "")
    dtypes, force, note = choose("auto", False, "cpu")
    assert (dtypes, force) == (["fp32"], False) and "not native" in note
    assert choose("both", False, "cpu")[:2] == (["fp32", "bf16"], True)  # asked for: real bf16, forced
    assert choose("bf16", True, "cpu") == (["bf16"], False, "")
    assert choose("fp32", False, "cpu") == (["fp32"], False, "")


def test_quality_benchmark_smoke(data_dir, tmp_path):
    """`benchmarks/quality.py --smoke` trains fastai's classifier and ours on the three datasets (tiny; German with
    SentencePiece), ours in both batch orders and both poolings, and reports."""
    pytest.importorskip("fastai.text.all", reason="the quality benchmark compares with fastai")
    pytest.importorskip("sentencepiece", reason="German news is tokenized with SentencePiece")
    script = REPO_ROOT / "benchmarks" / "quality.py"
    output = tmp_path / "quality.json"
    command = [sys.executable, str(script), "--smoke", "--output", str(output)]
    command += ["--batch_orders", "group_by_length", "sortish", "--poolings", "window", "document"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.read_text())
    assert set(report) == {"trec", "imdb", "german"}
    assert report["german"]["setting"]["tokenizer"] == "sentencepiece"
    variants = {f"{o}/{p}" for o in ("group_by_length", "sortish") for p in ("window", "document")}
    for dataset in report.values():
        (row,) = dataset["results"]
        assert set(row["ours"]) == variants
        assert 0.0 <= row["fastai"] <= 1.0 and all(0.0 <= a <= 1.0 for a in row["ours"].values())
        for name, accuracy in row["ours"].items():
            assert dataset["summary"]["ours"][name]["mean"] == accuracy
    assert "| mean of 1 |" in result.stdout


def test_transfer_benchmark_smoke(data_dir, tmp_path):
    """`benchmarks/transfer.py` runs both starts side by side (here `--quick`, one seed) and prints the table."""
    small_converted_lm(data_dir, tmp_path / "pretrained")
    script = REPO_ROOT / "benchmarks" / "transfer.py"
    command = [sys.executable, str(script), "--pretrained", str(tmp_path / "pretrained"), "--seeds", "1"]
    command += ["--extra=--quick", "--output_dir", str(tmp_path / "out")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| 1 | scratch |" in result.stdout and "| mean | pretrained |" in result.stdout
    report = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(report["runs"]["1"]) == {"scratch", "pretrained"}
    assert 0 < report["coverage"]["token_share_with_row"] <= 1 and report["coverage"]["perplexity_before"] > 1


def test_serving_accuracy_benchmark_on_a_small_classifier(data_dir, tmp_path):
    """`benchmarks/serving_accuracy.py` on a small random classifier: every path's row, float32 agreeing with itself."""
    import pandas as pd

    from hf_bpt3c import AwdLstmConfig, AwdLstmForSequenceClassification, AwdLstmTokenizer

    texts = pd.read_csv(data_dir / "imdb_sample" / "texts.csv").text.tolist()
    tokenizer = AwdLstmTokenizer.from_texts(texts, max_vocab=2000)
    config = AwdLstmConfig.for_classification(
        vocab_size=len(tokenizer), embedding_size=16, hidden_size=24, num_hidden_layers=2, num_labels=2,
        id2label={0: "negative", 1: "positive"},
    )  # fmt: skip
    AwdLstmForSequenceClassification(config).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    script = REPO_ROOT / "benchmarks" / "serving_accuracy.py"
    command = [sys.executable, str(script), "--model", str(tmp_path / "model"), "--reps", "1", "--threads", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {line.split("|")[1].strip(): line for line in result.stdout.splitlines() if line.startswith("| PyTorch")}
    assert "| 100.0% | 0.00e+00 |" in rows["PyTorch float32"] and "PyTorch int8" in rows
    if importlib.util.find_spec("onnxruntime"):
        assert "| ONNX Runtime int8 |" in result.stdout and "| ONNX Runtime float32 |" in result.stdout


def test_lm_speed_benchmark_runs_both_page_sizes():
    """`benchmarks/lm_speed.py` times the LM's training steps in a fresh process per setting; with 2 MB pages for
    PyTorch's large tensors the [2304, 6008] logits cost far fewer page faults (where the kernel has THP)."""
    script = REPO_ROOT / "benchmarks" / "lm_speed.py"
    command = [sys.executable, str(script), "--vocab_sizes", "6008", "--steps", "2", "--warmup", "1", "--threads", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| 6,008 |")]
    assert [row[1].strip() for row in rows] == ["unset", "1"]
    faults = [float(row[4].replace(",", "")) for row in rows]
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if thp.is_file() and "[never]" not in thp.read_text():
        assert faults[1] < faults[0] / 4


def test_early_stopping_benchmark_on_toy_language_models(tmp_path):
    """`benchmarks/early_stopping.py` from a work folder of forward and backward language models (toy size, made
    here): every holdout's classifiers and ensemble per seed, recorded, skipped when rerun, and the table."""
    import numpy as np
    import pandas as pd

    from hf_bpt3c.training.scripts import LanguageModelArguments, train_language_model

    rng = np.random.default_rng(0)
    words = "good bad film plot acting great dull long fun slow story cast".split()
    texts = [" ".join(rng.choice(words, size=int(rng.integers(4, 12)))) for _ in range(40)]
    labels = ["pos" if text.count("good") >= text.count("bad") else "neg" for text in texts]
    pd.DataFrame({"text": texts, "label": labels, "is_valid": [i >= 30 for i in range(40)]}).to_csv(
        tmp_path / "texts.csv", index=False
    )
    tokenizer = None
    for direction in ("forward", "backward"):
        lm_dir = tmp_path / "work" / "ours-seed0" / direction / "language_model"
        lm_args = LanguageModelArguments(
            embedding_size=8, hidden_size=12, num_hidden_layers=2, bptt=8, min_freq=1,
            backwards=True if direction == "backward" else None,
        )  # fmt: skip
        training = TrainingArguments(str(lm_dir), num_train_epochs=1, report_to=[], use_cpu=True, save_strategy="no")
        _, tokenizer, _ = train_language_model(lm_args, training, texts, texts[30:], tokenizer)

    script = REPO_ROOT / "benchmarks" / "early_stopping.py"
    output = tmp_path / "early_stopping.json"
    command = [sys.executable, str(script), "--train_file", str(tmp_path / "texts.csv"), "--workdir"]
    command += [str(tmp_path / "work"), "--seeds", "0", "--holdouts", "0", "20", "--metrics", "loss", "accuracy"]
    command += ["--output", str(output)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.read_text())
    assert set(report) == {"0", "20/loss", "20/accuracy"}
    for variant, runs in report.items():
        run = runs["0"]
        assert 0.0 <= run["ensemble"] <= 1.0 and all(0.0 <= run[d]["accuracy"] <= 1.0 for d in ("forward", "backward"))
        assert (run["forward"]["kept_epoch"] is None) == (variant == "0")
    assert "| 20/accuracy | 0 |" in result.stdout
    again = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert again.returncode == 0 and "| 20/loss | 0 |" in again.stdout
    assert "seed 0: {" not in again.stdout  # nothing rerun
    assert json.loads(output.read_text()) == report
