"""Saved folders load through every Auto class with `trust_remote_code=True` in a process that cannot import
hf_bpt3c (a fresh HF_HOME, `src/` off the path, and an import hook that refuses the package)."""

from __future__ import annotations

import json
import os
import textwrap

import pytest
import torch
from conftest import run_without_hf_bpt3c, small_config

from hf_bpt3c import AwdLstmForCausalLM, AwdLstmForSequenceClassification, AwdLstmTokenizer

TEXT = "The film was GREAT, really great!!! I'd watch it again... <br /><br />Don't miss it."

LOADER = textwrap.dedent(
    """
    import json, sys

    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification
    from transformers import AutoTokenizer

    lm_dir, clf_dir, ids = sys.argv[1], sys.argv[2], torch.tensor(json.loads(sys.argv[3]))
    results = {"config": type(AutoConfig.from_pretrained(clf_dir, trust_remote_code=True)).__name__}
    with torch.no_grad():
        clf = AutoModelForSequenceClassification.from_pretrained(clf_dir, trust_remote_code=True).eval()
        results["classifier"] = clf(ids).logits.tolist()
        lm = AutoModelForCausalLM.from_pretrained(lm_dir, trust_remote_code=True).eval()
        results["lm"] = lm(ids).logits.tolist()
        base = AutoModel.from_pretrained(lm_dir, trust_remote_code=True).eval()
        results["base"] = base(ids).last_hidden_state.tolist()
    tokenizer = AutoTokenizer.from_pretrained(clf_dir, trust_remote_code=True)
    results["token_ids"] = tokenizer(sys.argv[4])["input_ids"]
    results["modules"] = sorted({type(m).__module__ for m in (clf, lm, base, tokenizer)})
    print(json.dumps(results))
    """
)


@pytest.mark.slow
def test_folders_load_with_remote_code_only(tmp_path):
    tokenizer = AwdLstmTokenizer.from_texts([TEXT, "A dull film, sadly."] * 2, min_freq=1)
    config = small_config(vocab_size=len(tokenizer), id2label={0: "a", 1: "b", 2: "c"})
    lm, clf = AwdLstmForCausalLM(config).eval(), AwdLstmForSequenceClassification(config).eval()
    lm.save_pretrained(tmp_path / "lm")
    clf.save_pretrained(tmp_path / "clf")
    tokenizer.save_pretrained(tmp_path / "clf")
    assert (tmp_path / "clf" / "tokenization_awd_lstm.py").is_file()
    for folder in ("lm", "clf"):
        saved = set(os.listdir(tmp_path / folder))
        assert {"modeling_awd_lstm.py", "configuration_awd_lstm.py", "config.json"} <= saved
        auto_map = json.loads((tmp_path / folder / "config.json").read_text())["auto_map"]
        heads = {"AutoModel", "AutoModelForCausalLM", "AutoModelForSequenceClassification"}
        assert set(auto_map) == {"AutoConfig", *heads}

    ids = torch.randint(2, config.vocab_size, (2, 40))
    args = [str(tmp_path / "lm"), str(tmp_path / "clf"), json.dumps(ids.tolist()), TEXT]
    result = run_without_hf_bpt3c(LOADER, *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["config"] == "AwdLstmConfig"
    assert loaded["token_ids"] == tokenizer(TEXT)["input_ids"]
    assert all(m.startswith("transformers_modules.") for m in loaded["modules"]), loaded["modules"]
    with torch.no_grad():
        assert torch.allclose(torch.tensor(loaded["classifier"]), clf(ids).logits, atol=1e-6, rtol=0)
        assert torch.allclose(torch.tensor(loaded["lm"]), lm(ids).logits, atol=1e-6, rtol=0)
        base = lm.awd_lstm(ids).last_hidden_state
        assert torch.allclose(torch.tensor(loaded["base"]), base, atol=1e-6, rtol=0)
