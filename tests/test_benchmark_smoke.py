"""`benchmarks/bpt3c_speed.py --smoke` runs every code path (both frameworks if fastai is installed) quickly."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO_ROOT


def test_speed_benchmark_smoke(data_dir):
    script = REPO_ROOT / "benchmarks" / "bpt3c_speed.py"
    result = subprocess.run(
        [sys.executable, str(script), "--smoke"], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for expected in ("| uniform 20 | train |", "| imdb | infer |", "Memory sweep", "argmax agreement"):
        assert expected in out, out
