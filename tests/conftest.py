"""Shared fixtures: small seeded models, the offline data folder, no network."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from hf_bpt3c import AwdLstmConfig  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT.parent / "shared" / "data"


def small_config(**overrides) -> AwdLstmConfig:
    """A test-size AWD-LSTM: vocab 60, emb 8, hidden 12, 3 layers, bptt 5, max_len 15, 3 labels."""
    kwargs = dict(
        vocab_size=60,
        embedding_size=8,
        hidden_size=12,
        num_hidden_layers=3,
        bptt=5,
        max_len=15,
        num_labels=3,
        classifier_hidden_sizes=[10],
    )
    kwargs.update(overrides)
    return AwdLstmConfig(**kwargs)


def no_dropout(**overrides) -> AwdLstmConfig:
    """`small_config` with every dropout at 0."""
    zeros = dict(
        embedding_dropout=0.0,
        weight_dropout=0.0,
        input_dropout=0.0,
        hidden_dropout=0.0,
        output_dropout=0.0,
        classifier_dropouts=[0.0],
    )
    return small_config(**{**zeros, **overrides})


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.skip(f"shared data folder {DATA_DIR} not present")
    return DATA_DIR


# A process that cannot import hf_bpt3c: an import hook refuses the package and `src/` is off the path.
REFUSE_HF_BPT3C = """
import importlib.abc, sys

class _RefuseHfBpt3c(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "hf_bpt3c":
            raise ImportError("hf_bpt3c must not be needed to load a saved folder")
        return None

sys.meta_path.insert(0, _RefuseHfBpt3c())
sys.path = [p for p in sys.path if not p.rstrip("/").endswith("src")]
"""


def run_without_hf_bpt3c(code: str, *args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `code` (after `REFUSE_HF_BPT3C`) in a fresh interpreter, offline, with an HF_HOME of its own under `cwd`."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(cwd / "hf_home"), HF_HUB_OFFLINE="1")
    command = [sys.executable, "-c", REFUSE_HF_BPT3C + code, *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
