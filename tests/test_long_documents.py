"""A single 1,000,000-token document: inference memory bounded by the chunk, same logits as the training path."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT, no_dropout

from hf_bpt3c import AwdLstmForSequenceClassification

SIZES = ["--emb", "16", "--hidden", "32", "--layers", "2", "--batch", "1", "--inference"]


def inference_memory(length: int) -> dict:
    script = REPO_ROOT / "benchmarks" / "peak_memory.py"
    result = subprocess.run(
        [sys.executable, str(script), str(length), *SIZES], capture_output=True, text=True, check=True, timeout=900
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_million_token_inference_memory_is_bounded():
    short, long = inference_memory(10_000), inference_memory(1_000_000)
    print(f"peak RSS: {short['peak_mb']} MB at 10k tokens, {long['peak_mb']} MB at 1M tokens")
    assert long["peak_mb"] <= 1.5 * short["peak_mb"]


@pytest.mark.slow
def test_million_token_logits_equal_the_training_path():
    model = AwdLstmForSequenceClassification(
        no_dropout(bptt=72, max_len=1440, embedding_size=16, hidden_size=32, num_hidden_layers=2)
    )
    ids = torch.randint(9, 60, (1, 1_000_000), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        eval_logits = model.eval()(ids).logits
    model.train()
    model.classifier.eval()  # BatchNorm on running statistics; every dropout is 0
    train_logits = model(ids).logits
    assert train_logits.requires_grad  # the chunked training path, with autograd for the kept window
    assert (train_logits - eval_logits).abs().max() <= 1e-5
