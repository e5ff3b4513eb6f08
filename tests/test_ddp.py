"""Two CPU ranks (gloo) train exactly like one process with the combined batch: the classifier with gradual
unfreezing and the stream LM, dropout off, the head's BatchNorm on running statistics (see ddp_worker.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT

WORKER = REPO_ROOT / "tests" / "ddp_worker.py"
BIN = os.path.dirname(sys.executable)
LAUNCHERS = {
    "torchrun": [os.path.join(BIN, "torchrun"), "--nproc_per_node", "2"],
    "accelerate": [os.path.join(BIN, "accelerate"), "launch", "--multi_gpu", "--num_processes", "2"],
}

pytestmark = pytest.mark.slow  # subprocesses


def run(command: list[str], out) -> None:
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": str(29500 + os.getpid() % 1000)}
    result = subprocess.run([*command, str(WORKER), str(out)], capture_output=True, text=True, env=env, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "single"
    run([sys.executable], out)
    return out


@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_two_ranks_equal_one_process(single, tmp_path, launcher):
    out = tmp_path / launcher
    run(LAUNCHERS[launcher], out)
    for name in ("classifier", "lm"):
        expected, got = torch.load(single / f"{name}.pt"), torch.load(out / f"{name}.pt")
        assert expected.keys() == got.keys()
        for key in expected:
            diff = (expected[key].float() - got[key].float()).abs().max().item()
            assert diff <= 1e-5, (name, key, diff)
    ranks = [json.loads((out / f"trainable_rank{r}.json").read_text()) for r in (0, 1)]
    unfreezing = [[False, False, False, True], [False, False, True, True], [False, True, True, True]]
    assert ranks[0] == ranks[1] == json.loads((single / "trainable_rank0.json").read_text()) == unfreezing
