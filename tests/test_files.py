"""Bad files give load errors that name the file and the problem; an interrupted save loses nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from conftest import small_config
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForSequenceClassification

from hf_bpt3c import AwdLstmConfig, AwdLstmForSequenceClassification, AwdLstmTokenizer


@pytest.fixture
def saved(tmp_path):
    model = AwdLstmForSequenceClassification(small_config())
    model.save_pretrained(tmp_path)
    return tmp_path


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_weights_name_the_file(saved, damage):
    weights = saved / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x00" * 64)
    with pytest.raises(OSError, match=r"model\.safetensors\) is truncated or corrupted"):
        AutoModelForSequenceClassification.from_pretrained(saved)


def test_config_with_a_missing_size_names_the_field(saved):
    config = json.loads((saved / "config.json").read_text())
    del config["hidden_size"]
    (saved / "config.json").write_text(json.dumps(config))
    for load in (AutoModelForSequenceClassification.from_pretrained, AutoConfig.from_pretrained):
        with pytest.raises(ValueError, match=r"config\.json of this awd_lstm model lacks \['hidden_size'\]"):
            load(saved)


def test_config_with_a_wrong_type_names_the_field(saved):
    config = json.loads((saved / "config.json").read_text())
    config["num_hidden_layers"] = "3"
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(TypeError, match=r"config\.json .* AwdLstmConfig\.num_hidden_layers must be an int"):
        AutoModelForSequenceClassification.from_pretrained(saved)


def test_tokenizer_larger_than_the_embedding_is_refused(saved):
    texts = [" ".join(f"word{i}" for i in range(200))]
    AwdLstmTokenizer.from_texts(texts, min_freq=1).save_pretrained(saved)  # ~216 ids, the model has 60 rows
    with pytest.raises(ValueError, match=r"tokenizer\.json has ids up to \d+ but .* has only 60 rows"):
        AutoModelForSequenceClassification.from_pretrained(saved)


def test_output_loading_info_still_works(saved):
    """Regression: the checked load returned the (model, info) pair where a model was expected."""
    AwdLstmTokenizer.from_texts(["a film", "a dull film"], min_freq=1).save_pretrained(saved)
    model, info = AwdLstmForSequenceClassification.from_pretrained(saved, output_loading_info=True)
    assert isinstance(model, AwdLstmForSequenceClassification) and not info["missing_keys"]


def test_a_sentencepiece_tokenizer_fits_the_embedding_by_fastais_vocabulary(saved):
    """Regression: a SentencePiece tokenizer.json holds the model's pieces outside fastai's vocabulary too (ids past
    it map to xxunk); the check counts fastai's vocabulary, so a matching LM loads."""
    pytest.importorskip("sentencepiece")
    texts = [f"Die Regierung in Wien plant Reform {i} für das Budget der Republik." for i in range(40)]
    tokenizer = AwdLstmTokenizer.from_texts(texts, model="sentencepiece", lang="de", vocab_size=150, min_freq=50)
    assert tokenizer.backend_tokenizer.get_vocab_size() > len(tokenizer)  # pieces outside the vocabulary
    AwdLstmForSequenceClassification(small_config(vocab_size=len(tokenizer))).save_pretrained(saved)
    tokenizer.save_pretrained(saved)
    assert AutoModelForSequenceClassification.from_pretrained(saved).config.vocab_size == len(tokenizer)


SAVER = textwrap.dedent(
    """
    import sys, torch
    from hf_bpt3c import AwdLstmConfig, AwdLstmForSequenceClassification
    torch.manual_seed(1)
    config = AwdLstmConfig(vocab_size=300_000, embedding_size=400, hidden_size=64, num_hidden_layers=1)
    model = AwdLstmForSequenceClassification(config)
    print("ready", flush=True)
    while True:
        model.save_pretrained(sys.argv[1])
    """
)


def test_a_save_killed_midway_leaves_the_previous_model_whole(tmp_path):
    target = tmp_path / "model"
    torch.manual_seed(0)
    first = AwdLstmForSequenceClassification(
        AwdLstmConfig(vocab_size=300_000, embedding_size=400, hidden_size=64, num_hidden_layers=1)
    )
    first.save_pretrained(target)
    before = load_file(target / "model.safetensors")

    saver = subprocess.Popen([sys.executable, "-c", SAVER, str(target)], stdout=subprocess.PIPE, text=True)
    assert saver.stdout.readline().strip() == "ready"
    deadline = time.time() + 120
    while time.time() < deadline:  # kill it while a staging copy is being written
        partial = [p for p in tmp_path.glob(".model.saving-*/model.safetensors") if p.stat().st_size > 0]
        if partial:
            break
        time.sleep(0.002)
    saver.send_signal(signal.SIGKILL)
    saver.wait()
    assert partial, "the save was never caught in progress"

    after = load_file(target / "model.safetensors")  # complete: either the first model or the second, whole
    assert after.keys() == before.keys()
    reloaded = AutoModelForSequenceClassification.from_pretrained(target)
    assert reloaded.config.vocab_size == 300_000
    same = all(torch.equal(before[k], after[k]) for k in before)
    second = not any(torch.equal(before[k], after[k]) for k in before if k.startswith("classifier.blocks.0.linear"))
    assert same or second
