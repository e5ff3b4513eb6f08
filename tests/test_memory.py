"""Peak memory of a training step does not grow with document length (BPT3C keeps only max_len tokens)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

pytestmark = pytest.mark.slow  # subprocesses


def step_memory(length: int, pooling: str = "window") -> dict:
    script = REPO_ROOT / "benchmarks" / "peak_memory.py"
    command = [sys.executable, str(script), str(length), "--pooling", pooling]
    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=300)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("pooling", ["window", "document"])
def test_training_step_memory_is_flat_in_document_length(pooling):
    """Default bptt 72 / max_len 1440: a 20*max_len document costs at most 1.15x a 2*max_len one (pooling the
    whole document too: its running max and mean are carried, the earlier chunks build no graph)."""
    short, long = step_memory(2 * 1440, pooling), step_memory(20 * 1440, pooling)
    print(f"{pooling}: step memory {short['step_mb']} MB at 2*max_len, {long['step_mb']} MB at 20*max_len")
    assert short["step_mb"] > 50  # the step itself is measurable above the baseline
    assert long["step_mb"] <= 1.15 * short["step_mb"]
    assert long["peak_mb"] <= 1.15 * short["peak_mb"]
