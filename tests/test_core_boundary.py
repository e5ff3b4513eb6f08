"""The core folder (`hf_bpt3c/models/awd_lstm/`) is exactly what `save_pretrained` ships as remote code, and it
stands alone: it imports only the standard library, torch, the Hugging Face stack and its own siblings, and knows
nothing of the tools built on it (serving, training, conversion, interpretation)."""

from __future__ import annotations

import ast
import json
import re
import sys
import textwrap
from pathlib import Path

import torch
from conftest import run_without_hf_bpt3c, small_config

import hf_bpt3c
from hf_bpt3c import AwdLstmForSequenceClassification, AwdLstmTokenizer

CORE = Path(hf_bpt3c.__file__).parent / "models" / "awd_lstm"
CORE_MODULES = sorted(p.stem for p in CORE.glob("*.py") if p.name != "__init__.py")
ALLOWED_PACKAGES = {"torch", "transformers", "tokenizers", "huggingface_hub", "safetensors"}
# needed by one feature only (training a SentencePiece tokenizer), imported inside a `try` where it is used: loading a
# saved folder never needs it
OPTIONAL_PACKAGES = {"sentencepiece"}
# words of the tools on top, which the shipped core must not know about
TOOL_WORDS = re.compile(r"(?i:quantiz|onnx|hf_bpt3c\.(serving|training|convert|interpret|model_card))|Int8|int8_")


def imports_of(path: Path) -> list[tuple[int, str, bool]]:
    """`(level, module, guarded)` of every import statement in a file (level 0: absolute; for `from . import x`,
    `x`; guarded: inside a `try` block, which transformers' remote-code loader does not require)."""
    found = []

    def visit(node: ast.AST, guarded: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend((0, alias.name, guarded) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.module is None:
                found.extend((node.level, alias.name, guarded) for alias in node.names)
            else:
                found.append((node.level, node.module, guarded))
        for child in ast.iter_child_nodes(node):
            visit(child, guarded or isinstance(node, ast.Try))

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def test_core_imports_only_the_standard_library_torch_the_hf_stack_and_its_siblings():
    # 9 modules, + fastai_rules and sentencepiece_backend (the SentencePiece tokenizer), + the ensemble's
    # configuration and modeling: a new module is a deliberate change of what ships with every model
    assert len(CORE_MODULES) == 14, CORE_MODULES
    for path in sorted(CORE.glob("*.py")):
        for level, module, guarded in imports_of(path):
            where = f"{path.name}: import of {'.' * level}{module}"
            if level == 0:
                top = module.split(".")[0]
                allowed = top in sys.stdlib_module_names or top in ALLOWED_PACKAGES
                assert allowed or (guarded and top in OPTIONAL_PACKAGES), where
            else:
                assert level == 1 and module.split(".")[0] in CORE_MODULES, where


def test_core_knows_nothing_of_the_tools_built_on_it():
    for path in sorted(CORE.glob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            assert not TOOL_WORDS.search(line), f"{path.name}:{number}: {line.strip()}"


def test_save_pretrained_ships_exactly_the_core(tmp_path):
    tokenizer = AwdLstmTokenizer.from_texts(["A film.", "Another film, sadly."], min_freq=1)
    model = AwdLstmForSequenceClassification(small_config(vocab_size=len(tokenizer)))
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    if any(name.endswith("_ensemble") for name in CORE_MODULES):  # the ensemble's modules ship with an ensemble
        from hf_bpt3c.models.awd_lstm.modeling_awd_lstm_ensemble import AwdLstmEnsembleForSequenceClassification

        AwdLstmEnsembleForSequenceClassification.from_members([model, model]).save_pretrained(tmp_path / "ensemble")
    shipped = sorted({p.stem for p in tmp_path.glob("*.py")} | {p.stem for p in tmp_path.glob("ensemble/*.py")})
    assert shipped == CORE_MODULES


LOADER = textwrap.dedent(
    """
    import json, sys

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder, text = sys.argv[1], sys.argv[2]
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
    ids = tokenizer([text], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits
    print(json.dumps({"ids": ids[0].tolist(), "logits": logits[0].tolist(), "module": type(model).__module__}))
    """
)


def test_saved_model_and_tokenizer_load_as_remote_code_without_the_package(tmp_path):
    text = "The film was GREAT, really great!!! I'd watch it again."
    tokenizer = AwdLstmTokenizer.from_texts([text, "A dull film, sadly."] * 2, min_freq=1)
    torch.manual_seed(0)
    model = AwdLstmForSequenceClassification(small_config(vocab_size=len(tokenizer))).eval()
    model.save_pretrained(tmp_path / "clf")
    tokenizer.save_pretrained(tmp_path / "clf")
    result = run_without_hf_bpt3c(LOADER, str(tmp_path / "clf"), text, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["module"].startswith("transformers_modules.")
    ids = tokenizer([text], return_tensors="pt")["input_ids"]
    assert loaded["ids"] == ids[0].tolist()
    with torch.no_grad():
        torch.testing.assert_close(torch.tensor(loaded["logits"]), model(ids).logits[0], atol=1e-6, rtol=0)
