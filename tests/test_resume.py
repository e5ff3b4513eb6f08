"""Kill a Trainer run with SIGKILL right after a checkpoint, resume it, and get exactly the uninterrupted run's
weights (CPU, dropout on): the BPT3C classifier, and the LM (killed inside its second epoch, whose documents are
reshuffled) whose stream order and state are restored too."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT
from resume_worker import KILL_AT_STEP

WORKER = REPO_ROOT / "tests" / "resume_worker.py"

pytestmark = pytest.mark.slow  # subprocesses


def run(task: str, mode: str, out) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(WORKER), task, mode, str(out)], capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize("task", ["classifier", "lm"])
def test_killed_and_resumed_run_equals_uninterrupted(tmp_path, task):
    full = run(task, "full", tmp_path / "full")
    assert full.returncode == 0, full.stderr[-3000:]
    killed = run(task, "kill", tmp_path / "interrupted")
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "interrupted" / "final.pt").exists()
    assert (tmp_path / "interrupted" / f"checkpoint-{KILL_AT_STEP[task]}").is_dir()
    resumed = run(task, "resume", tmp_path / "interrupted")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = torch.load(tmp_path / "full" / "final.pt")
    got = torch.load(tmp_path / "interrupted" / "final.pt")
    diffs = {key: (expected[key].float() - got[key].float()).abs().max().item() for key in expected}
    print(task, "max abs diff after resume:", max(diffs.values()))
    assert max(diffs.values()) <= 1e-6, diffs
