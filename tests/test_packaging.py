"""The package as users get it: a wheel holds every module and the model-card templates, and installed from the
wheel alone (no source tree) it saves a model with its card; `import hf_bpt3c` stays light."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
from conftest import REPO_ROOT

import hf_bpt3c

pytestmark = pytest.mark.slow  # builds a wheel

SAVE_WITH_A_CARD = """
import json, sys
import hf_bpt3c
from hf_bpt3c import AwdLstmConfig, AwdLstmForSequenceClassification

config = AwdLstmConfig(vocab_size=30, embedding_size=4, hidden_size=6, num_hidden_layers=1, bptt=4, max_len=8)
AwdLstmForSequenceClassification(config).save_pretrained(sys.argv[1])
print(json.dumps({"file": hf_bpt3c.__file__, "version": hf_bpt3c.__version__}))
"""


def test_wheel_ships_the_modules_and_model_cards(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    shutil.copytree(REPO_ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    build = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-w"]
    subprocess.run([*build, str(tmp_path / "dist")], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("hf_bpt3c-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    package = REPO_ROOT / "src" / "hf_bpt3c"
    modules = {p.relative_to(package).as_posix() for p in package.rglob("*.py") if "__pycache__" not in p.parts}
    assert {f"hf_bpt3c/{m}" for m in modules} <= names  # every subpackage too (models/awd_lstm, training/scripts...)
    cards = {f"hf_bpt3c/model_cards/{p.name}" for p in (REPO_ROOT / "src" / "hf_bpt3c" / "model_cards").glob("*.md")}
    assert len(cards) == 4 and cards <= names

    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}
    run = [sys.executable, "-c", SAVE_WITH_A_CARD, str(tmp_path / "saved")]
    result = subprocess.run(run, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["file"].startswith(str(site))  # the installed wheel, not the source tree
    assert loaded["version"] == hf_bpt3c.__version__ != "0+unknown"
    card = (tmp_path / "saved" / "README.md").read_text(encoding="utf-8")
    assert "bpt3c" in card and "AwdLstmForSequenceClassification" in card


def test_import_is_light_and_submodules_load_on_first_use():
    code = (
        "import sys, hf_bpt3c\n"
        "heavy = [m for m in ('datasets', 'matplotlib', 'evaluate', 'fastai', 'hf_bpt3c.training', "
        "'hf_bpt3c.interpret', 'hf_bpt3c.convert', 'hf_bpt3c.training.data') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert callable(hf_bpt3c.training.lr_find) and callable(hf_bpt3c.interpret.token_attributions)\n"
        "assert callable(hf_bpt3c.training.data.LMStreamDataset) and callable(hf_bpt3c.convert.convert_fastai)\n"
        "from hf_bpt3c import transfer\n"
        "try:\n    hf_bpt3c.no_such_thing\nexcept AttributeError as error:\n    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "has no attribute 'no_such_thing'" in result.stdout
