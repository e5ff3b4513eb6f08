"""The benchmarks' `--smoke` runs exercise every code path (both frameworks when fastai is installed) quickly."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
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


def test_quality_benchmark_smoke(data_dir, tmp_path):
    """`benchmarks/quality.py --smoke` trains fastai's classifier and ours on both datasets (tiny) and reports."""
    pytest.importorskip("fastai.text.all", reason="the quality benchmark compares with fastai")
    script = REPO_ROOT / "benchmarks" / "quality.py"
    output = tmp_path / "quality.json"
    result = subprocess.run(
        [sys.executable, str(script), "--smoke", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.read_text())
    assert set(report) == {"trec", "imdb"}
    for dataset in report.values():
        (row,) = dataset["results"]
        assert 0.0 <= row["fastai"] <= 1.0 and 0.0 <= row["ours"] <= 1.0
        assert dataset["summary"]["ours_mean"] == row["ours"]
    assert "| mean of 1 |" in result.stdout
