"""fastai checkpoint conversion: safe loading, vocabulary transfer, CLI, and exact parity with fastai per layout."""

from __future__ import annotations

import csv
import os
import pickle
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import DATA_DIR
from fastai_reference import randomize_head_batchnorm
from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

from hf_bpt3c import AwdLstmConfig
from hf_bpt3c.cli import main
from hf_bpt3c.convert import convert_fastai, load_fastai_checkpoint, load_itos, match_embeddings
from hf_bpt3c.models.awd_lstm.tokenization_awd_lstm import SPECIAL_TOKENS, AwdLstmTokenizer

IMDB = DATA_DIR / "imdb_sample" / "texts.csv"
EMB, HID, LAYERS, BPTT, MAX_LEN = 16, 24, 3, 20, 60
FASTAI_CONFIG = dict(emb_sz=EMB, n_hid=HID, n_layers=LAYERS, pad_token=1, bidir=False, output_p=0.1)
FASTAI_CONFIG.update(hidden_p=0.15, input_p=0.25, embed_p=0.02, weight_p=0.2)
TOL = 1e-5


# ----------------------------------------------------------------------------------------------------------------
# Helpers without fastai: a v2-layout LM state dict of random tensors and pickled vocabularies
# ----------------------------------------------------------------------------------------------------------------


def toy_itos(n_words: int = 7) -> list[str]:
    return [*SPECIAL_TOKENS, *(f"w{i}" for i in range(n_words))]


def toy_lm_state_dict(vocab: int, emb: int = 4, hid: int = 6, layers: int = 2, bias: bool = True) -> dict:
    """A fastai v2 LM state dict `{key: tensor}` with seeded random values."""
    gen = torch.Generator().manual_seed(0)
    embedding = torch.randn(vocab, emb, generator=gen)
    state = {"0.encoder.weight": embedding, "0.encoder_dp.emb.weight": embedding}
    for i in range(layers):
        n_in, n_out = (emb if i == 0 else hid), (emb if i == layers - 1 else hid)
        state[f"0.rnns.{i}.weight_hh_l0_raw"] = torch.randn(4 * n_out, n_out, generator=gen)
        state[f"0.rnns.{i}.module.weight_ih_l0"] = torch.randn(4 * n_out, n_in, generator=gen)
        state[f"0.rnns.{i}.module.bias_ih_l0"] = torch.randn(4 * n_out, generator=gen)
        state[f"0.rnns.{i}.module.bias_hh_l0"] = torch.randn(4 * n_out, generator=gen)
    state["1.decoder.weight"] = embedding
    if bias:
        state["1.decoder.bias"] = torch.randn(vocab, generator=gen)
    return state


def write_pickle(path: Path, obj) -> Path:
    path.write_bytes(pickle.dumps(obj))
    return path


class _RunsCode:
    """A pickle payload that would run a shell command when unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# ----------------------------------------------------------------------------------------------------------------
# Safe loading
# ----------------------------------------------------------------------------------------------------------------


def test_itos_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = write_pickle(tmp_path / "itos.pkl", ["xxunk", _RunsCode(marker)])
    with pytest.raises(ValueError, match="itos.pkl"):
        load_itos(path)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [[1.5], {"a", "b"}, ["a", None], [b"bytes"], []])
def test_itos_with_other_types_is_refused(tmp_path, payload):
    with pytest.raises(ValueError, match="itos.pkl"):
        load_itos(write_pickle(tmp_path / "itos.pkl", payload))


def test_itos_list_tuple_and_stoi_dict_are_read(tmp_path):
    assert load_itos(write_pickle(tmp_path / "a.pkl", ["x", "y"])) == ["x", "y"]
    assert load_itos(write_pickle(tmp_path / "b.pkl", ("x", "y"))) == ["x", "y"]
    assert load_itos(write_pickle(tmp_path / "c.pkl", {"y": 1, "x": 0})) == ["x", "y"]


def test_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"0.encoder.weight": torch.zeros(2, 2)}, "extra": _RunsCode(marker)}, path)
    with pytest.raises(ValueError, match="evil.pth"):
        load_fastai_checkpoint(path)
    assert not marker.exists()


def test_checkpoint_must_hold_named_tensors(tmp_path):
    torch.save({"0.encoder.weight": [1, 2]}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="bad.pth"):
        load_fastai_checkpoint(tmp_path / "bad.pth")


# ----------------------------------------------------------------------------------------------------------------
# Vocabulary transfer and special tokens, on numbers
# ----------------------------------------------------------------------------------------------------------------


def test_match_embeddings_on_numbers():
    state = {
        "awd_lstm.embeddings.weight": torch.tensor([[1.0, 2.0], [3.0, 8.0], [5.0, 2.0]]),
        "decoder.bias": torch.tensor([1.0, 2.0, 6.0]),
    }
    matched = match_embeddings(state, ["a", "b", "c"], ["c", "new", "a", "b"])
    expected = torch.tensor([[5.0, 2.0], [3.0, 4.0], [1.0, 2.0], [3.0, 8.0]])  # new -> mean row (3, 4)
    assert torch.equal(matched["awd_lstm.embeddings.weight"], expected)
    assert torch.equal(matched["decoder.bias"], torch.tensor([6.0, 3.0, 1.0, 2.0]))  # new -> mean bias 3


def test_vocabulary_matching_lives_in_transfer():
    from hf_bpt3c.convert import from_fastai, transfer

    assert match_embeddings is transfer.match_embeddings is from_fastai.match_embeddings
    itos, notes = transfer.with_fastai_specials(["_unk_", "xbos", "the"])
    assert itos[:3] == ["xxunk", "xxbos", "the"] and set(SPECIAL_TOKENS) <= set(itos) and len(notes) == 3
    state = {"awd_lstm.embeddings.weight": torch.tensor([[1.0, 2.0], [3.0, 6.0]]), "decoder.bias": torch.ones(2)}
    grown = transfer.append_mean_rows(state, 2)  # (2, emb) -> (4, emb), the new rows hold the mean row
    assert torch.equal(grown["awd_lstm.embeddings.weight"][2:], torch.tensor([[2.0, 4.0], [2.0, 4.0]]))
    assert torch.equal(grown["decoder.bias"], torch.ones(4))


def test_convert_with_target_vocab_maps_rows_by_token(tmp_path):
    itos = toy_itos()
    state = toy_lm_state_dict(len(itos))
    torch.save(state, tmp_path / "lm.pth")
    target = [*SPECIAL_TOKENS, "w3", "unseen", "w0"]
    convert_fastai(tmp_path / "lm.pth", itos, tmp_path / "out", target_vocab=target)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    emb, bias = state["0.encoder.weight"], state["1.decoder.bias"]
    old = {tok: i for i, tok in enumerate(itos)}
    expected_rows = [emb[old[t]] if t in old else emb.mean(0) for t in target]
    expected_bias = [bias[old[t]] if t in old else bias.mean() for t in target]
    assert torch.allclose(model.awd_lstm.embeddings.weight, torch.stack(expected_rows), atol=1e-7)
    assert torch.allclose(model.decoder.bias, torch.stack(expected_bias), atol=1e-7)
    assert AwdLstmTokenizer.from_pretrained(tmp_path / "out").convert_tokens_to_ids("unseen") == len(SPECIAL_TOKENS) + 1


def test_fastai_07_special_tokens_are_renamed_and_missing_ones_appended(tmp_path):
    old_names = ["_unk_", "_pad_", "xbos", "xfld", "tk_rep", "tk_wrep", "t_up", "the", "a"]
    state = toy_lm_state_dict(len(old_names), bias=False)
    torch.save(state, tmp_path / "fwd.h5")
    result = convert_fastai(tmp_path / "fwd.h5", old_names, tmp_path / "out")
    tokenizer = AwdLstmTokenizer.from_pretrained(tmp_path / "out")
    assert tokenizer.convert_ids_to_tokens(list(range(7))) == [
        "xxunk",
        "xxpad",
        "xxbos",
        "xxfld",
        "xxrep",
        "xxwrep",
        "xxup",
    ]
    assert tokenizer.convert_ids_to_tokens([9, 10]) == ["xxeos", "xxmaj"]
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    emb = state["0.encoder.weight"]
    assert torch.equal(model.awd_lstm.embeddings.weight[:9], emb)
    assert torch.allclose(model.awd_lstm.embeddings.weight[9:], emb.mean(0).expand(2, -1))
    assert torch.equal(model.decoder.bias, torch.zeros(11))
    assert any("no bias" in note for note in result.notes)


# ----------------------------------------------------------------------------------------------------------------
# Output folder and CLI behaviour
# ----------------------------------------------------------------------------------------------------------------


def test_non_empty_out_folder_is_refused_unless_overwrite(tmp_path):
    itos = toy_itos()
    torch.save(toy_lm_state_dict(len(itos)), tmp_path / "lm.pth")
    write_pickle(tmp_path / "itos.pkl", itos)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = [str(tmp_path / "lm.pth"), "--vocab", str(tmp_path / "itos.pkl"), "--out", str(out)]
    assert main(["convert-fastai", *args]) == 2
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert main(["convert-fastai", *args, "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}


def test_vocab_size_mismatch_names_the_files(tmp_path):
    torch.save(toy_lm_state_dict(20), tmp_path / "lm.pth")
    with pytest.raises(ValueError, match="lm.pth"):
        convert_fastai(tmp_path / "lm.pth", toy_itos(), tmp_path / "out")


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"1.layers.0.weight": torch.ones(48), "1.layers.2.bias": torch.ones(2)}, "fastai v2 classifiers"),
        ({"0.rnns.0.module.weight_xx": torch.ones(1), "1.decoder.weight": torch.ones(1)}, "unknown fastai encoder"),
        ({}, "neither a language model"),
    ],
)
def test_unsupported_layouts_are_refused_by_name(tmp_path, extra, message):
    """fastai v1 classifier heads (flat `layers.{i}` with Linear biases) and unknown keys are refused."""
    state = {k: v for k, v in toy_lm_state_dict(len(toy_itos())).items() if not k.startswith("1.decoder")}
    torch.save({**state, **extra}, tmp_path / "clas.pth")
    with pytest.raises(ValueError, match=rf"clas\.pth.*{message}"):
        convert_fastai(tmp_path / "clas.pth", toy_itos(), tmp_path / "out")


def test_console_command_reports_errors(tmp_path):
    write_pickle(tmp_path / "itos.pkl", toy_itos())
    (tmp_path / "lm.pth").write_bytes(b"not a checkpoint")
    command = [sys.executable, "-m", "hf_bpt3c.cli", "convert-fastai", str(tmp_path / "lm.pth")]
    command += ["--vocab", str(tmp_path / "itos.pkl"), "--out", str(tmp_path / "out")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "lm.pth" in done.stderr and "weights_only" in done.stderr


# ----------------------------------------------------------------------------------------------------------------
# Parity with fastai, per checkpoint layout
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fastai_text():
    return pytest.importorskip("fastai.text.all", reason="fastai is the parity reference")


@pytest.fixture(scope="module")
def imdb(fastai_text):
    """fastai's itos built from 20 IMDb sample reviews, and 3 other reviews tokenized by fastai: `(itos, ids)`."""
    if not IMDB.is_file():
        pytest.skip(f"{IMDB} not present")
    with IMDB.open(newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)][:23]
    tokenizer = fastai_text.Tokenizer(fastai_text.SpacyTokenizer())
    counts = Counter(tok for text in texts[:20] for tok in tokenizer(text))
    itos = list(fastai_text.make_vocab(counts, min_freq=2))
    numericalize = fastai_text.Numericalize(vocab=itos)
    return itos, texts[20:], [numericalize(tokenizer(text)) for text in texts[20:]]


def fastai_lm(fastai_text, vocab_size: int, **config):
    torch.manual_seed(0)
    model = fastai_text.get_language_model(
        fastai_text.AWD_LSTM, vocab_size, config={**FASTAI_CONFIG, "tie_weights": True, "out_bias": True, **config}
    )
    if model[1].decoder.bias is not None:
        with torch.no_grad():
            model[1].decoder.bias.normal_(0, 0.1)  # fastai zeroes it; make the mapping visible
    return model.eval()


def fastai_classifier(fastai_text, vocab_size: int):
    torch.manual_seed(0)
    model = fastai_text.get_text_classifier(
        fastai_text.AWD_LSTM, vocab_size, 3, seq_len=BPTT, config=dict(FASTAI_CONFIG), max_len=MAX_LEN
    )
    randomize_head_batchnorm(model[1])
    return model.eval()


def text_learner(fastai_text, model, path: Path):
    """A real fastai `TextLearner` (empty data) so that `learn.save` / `save_encoder` write fastai's files."""
    dls = fastai_text.DataLoaders(fastai_text.TfmdDL([]), fastai_text.TfmdDL([]), device="cpu")
    learn = fastai_text.TextLearner(dls, model, loss_func=fastai_text.CrossEntropyLossFlat(), path=path)
    learn.create_opt()  # learn.save then stores {'model': ..., 'opt': ...}, as after training
    return learn


def v1_state_dict(lm) -> dict:
    """fastai v1's LM layout: v2's keys plus `module.weight_hh_l0` (a DropConnect-ed copy) after `weight_ih_l0`."""
    state = {}
    for key, tensor in lm.state_dict().items():
        state[key] = tensor
        if key.endswith("module.weight_ih_l0"):
            raw = lm.state_dict()[key.replace("module.weight_ih_l0", "weight_hh_l0_raw")]
            state[key.replace("weight_ih_l0", "weight_hh_l0")] = torch.nn.functional.dropout(raw, 0.5)
    return state


def v07_state_dict(lm) -> dict:
    """fastai 0.7's LM layout: `encoder_with_dropout.embed`, the raw weight on the wrapped LSTM, no decoder bias."""
    v2 = lm.state_dict()
    assert "1.decoder.bias" not in v2
    state = {"0.encoder.weight": v2["0.encoder.weight"]}
    state["0.encoder_with_dropout.embed.weight"] = v2["0.encoder_dp.emb.weight"]
    for i in range(LAYERS):
        for name in ("weight_ih_l0", "bias_ih_l0", "bias_hh_l0"):  # 0.7 registered the raw weight last
            state[f"0.rnns.{i}.module.{name}"] = v2[f"0.rnns.{i}.module.{name}"]
        state[f"0.rnns.{i}.module.weight_hh_l0_raw"] = v2[f"0.rnns.{i}.weight_hh_l0_raw"]
    state["1.decoder.weight"] = v2["1.decoder.weight"]
    return state


def convert_both_ways(weights: Path, itos_path: Path, tmp_path: Path, *extra: str) -> list[Path]:
    """Convert with `convert_fastai` and with `hf-bpt3c convert-fastai`; returns both output folders."""
    backwards = "--backwards" in extra
    convert_fastai(weights, itos_path, tmp_path / "py", backwards=backwards, bptt=BPTT, max_len=MAX_LEN)
    args = [str(weights), "--vocab", str(itos_path), "--out", str(tmp_path / "cli"), *extra]
    assert main(["convert-fastai", *args, "--bptt", str(BPTT), "--max-len", str(MAX_LEN)]) == 0
    return [tmp_path / "py", tmp_path / "cli"]


def assert_same_ids(folder: Path, texts: list[str], fastai_ids: list[torch.Tensor]) -> None:
    tokenizer = AwdLstmTokenizer.from_pretrained(folder)
    for text, ids in zip(texts, fastai_ids):
        assert tokenizer(text)["input_ids"] == ids.tolist()


def lm_max_diff(folder: Path, reference, fastai_ids: list[torch.Tensor], flip: bool = False) -> float:
    """Max |logits - fastai logits| of the converted LM over the documents (each read from a fresh state)."""
    model = AutoModelForCausalLM.from_pretrained(folder)
    diff = 0.0
    with torch.no_grad():
        for ids in fastai_ids:
            ids = ids.flip(0)[None] if flip else ids[None]
            reference.reset()
            diff = max(diff, (model(ids).logits - reference(ids)[0]).abs().max().item())
    return diff


LM_LAYOUTS = ["v2_learn_save", "v2_state_dict", "v1", "0.7"]


@pytest.mark.fastai
@pytest.mark.parametrize("layout", LM_LAYOUTS)
def test_language_model_parity(fastai_text, imdb, tmp_path, layout):
    itos, texts, ids = imdb
    itos_file = write_pickle(tmp_path / "itos.pkl", itos)
    weights = tmp_path / "lm.pth"
    reference = fastai_lm(fastai_text, len(itos), **({"n_hid": HID - 1, "out_bias": False} if layout == "0.7" else {}))
    if layout == "v2_learn_save":
        text_learner(fastai_text, reference, tmp_path).save("lm")
        weights = tmp_path / "models" / "lm.pth"
        assert set(torch.load(weights, weights_only=False)) == {"model", "opt"}
    elif layout == "v2_state_dict":
        torch.save(reference.state_dict(), weights)
    elif layout == "v1":
        torch.save(v1_state_dict(reference), weights)
    else:  # 0.7 vocabularies name the special tokens differently; they convert to fastai v2's names
        torch.save(v07_state_dict(reference), weights)
        itos_file = write_pickle(tmp_path / "itos.pkl", [{"xxunk": "_unk_", "xxpad": "_pad_"}.get(t, t) for t in itos])
    for folder in convert_both_ways(weights, itos_file, tmp_path):
        config = AwdLstmConfig.from_pretrained(folder)
        assert (config.vocab_size, config.embedding_size, config.num_hidden_layers) == (len(itos), EMB, LAYERS)
        assert config.hidden_size == (HID - 1 if layout == "0.7" else HID)
        assert_same_ids(folder, texts, ids)
        diff = lm_max_diff(folder, reference, ids)
        print(f"LM {layout} ({folder.name}): max abs diff {diff:.2e}")
        assert diff <= TOL


@pytest.mark.fastai
def test_backward_language_model_parity(fastai_text, imdb, tmp_path):
    itos, _, ids = imdb
    reference = fastai_lm(fastai_text, len(itos))
    torch.save(reference.state_dict(), tmp_path / "bwd.pth")
    for folder in convert_both_ways(
        tmp_path / "bwd.pth", write_pickle(tmp_path / "itos.pkl", itos), tmp_path, "--backwards"
    ):
        assert AwdLstmConfig.from_pretrained(folder).backwards is True
        diff = lm_max_diff(folder, reference, ids, flip=True)
        print(f"LM backwards ({folder.name}): max abs diff {diff:.2e}")
        assert diff <= TOL


@pytest.mark.fastai
def test_classifier_parity(fastai_text, imdb, tmp_path):
    itos, texts, ids = imdb
    reference = fastai_classifier(fastai_text, len(itos))
    text_learner(fastai_text, reference, tmp_path).save("clas")
    for folder in convert_both_ways(
        tmp_path / "models" / "clas.pth", write_pickle(tmp_path / "itos.pkl", itos), tmp_path
    ):
        config = AwdLstmConfig.from_pretrained(folder)
        assert (config.num_labels, config.classifier_hidden_sizes, config.bptt, config.max_len) == (
            3,
            [50],
            BPTT,
            MAX_LEN,
        )
        model = AutoModelForSequenceClassification.from_pretrained(folder)
        batch = AwdLstmTokenizer.from_pretrained(folder)(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            logits = model(**batch).logits
            expected = torch.cat([reference(doc[None])[0] for doc in ids])
        assert_same_ids(folder, texts, ids)
        diff = (logits - expected).abs().max().item()
        print(f"classifier v2 ({folder.name}): max abs diff {diff:.2e}")
        assert diff <= TOL


@pytest.mark.fastai
@pytest.mark.parametrize("source", ["language_model", "classifier"])
def test_save_encoder_parity(fastai_text, imdb, tmp_path, source):
    """`save_encoder` files convert to an encoder folder that the LM and classifier Auto classes load."""
    itos, _, ids = imdb
    full = (
        fastai_lm(fastai_text, len(itos)) if source == "language_model" else fastai_classifier(fastai_text, len(itos))
    )
    text_learner(fastai_text, full, tmp_path).save_encoder("enc")
    encoder = full[0] if source == "language_model" else full[0].module
    for folder in convert_both_ways(
        tmp_path / "models" / "enc.pth", write_pickle(tmp_path / "itos.pkl", itos), tmp_path
    ):
        base, lm = AutoModel.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder)
        clas = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
        assert torch.equal(clas.awd_lstm.embeddings.weight, encoder.encoder.weight)
        diff = 0.0
        with torch.no_grad():
            for doc in ids:
                encoder.reset()
                hidden = encoder(doc[None])
                diff = max(diff, (base(doc[None]).last_hidden_state - hidden).abs().max().item())
                logits = torch.nn.functional.linear(hidden, encoder.encoder.weight)  # fresh LM decoder: bias 0
                diff = max(diff, (lm(doc[None]).logits - logits).abs().max().item())
        print(f"encoder from {source} ({folder.name}): max abs diff {diff:.2e}")
        assert diff <= TOL


# ----------------------------------------------------------------------------------------------------------------
# Class names of a converted classifier
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.fastai
def test_classifier_keeps_its_class_names(fastai_text, imdb, tmp_path, capsys):
    """`labels=` / `--labels neg,mixed,pos` / `--labels @FILE` / `--labels FILE` become id2label and label2id, and
    the pipeline returns them; a count other than the head's is refused before anything is written."""
    from transformers import pipeline

    itos, texts, _ = imdb
    text_learner(fastai_text, fastai_classifier(fastai_text, len(itos)), tmp_path).save("clas")
    weights, itos_path = tmp_path / "models" / "clas.pth", write_pickle(tmp_path / "itos.pkl", itos)
    names = ["neg", "mixed", "pos"]
    (tmp_path / "labels.txt").write_text("neg\nmixed\n\npos\n")
    convert_fastai(weights, itos_path, tmp_path / "py", labels=names, bptt=BPTT, max_len=MAX_LEN)
    folders = [tmp_path / "py"]
    for i, value in enumerate(["neg, mixed,pos", f"@{tmp_path / 'labels.txt'}", str(tmp_path / "labels.txt")]):
        out = tmp_path / f"cli{i}"
        args = ["convert-fastai", str(weights), "--vocab", str(itos_path), "--out", str(out), "--labels", value]
        assert main([*args, "--bptt", str(BPTT), "--max-len", str(MAX_LEN)]) == 0
        assert "classes: neg, mixed, pos" in capsys.readouterr().out
        folders.append(out)
    for folder in folders:
        config = AwdLstmConfig.from_pretrained(folder)
        assert config.id2label == dict(enumerate(names)) and config.label2id == {n: i for i, n in enumerate(names)}
        classify = pipeline("text-classification", model=str(folder), top_k=None)
        scores = classify([texts[0]])[0]  # every class, best first
        assert sorted(score["label"] for score in scores) == sorted(names)
        model = AutoModelForSequenceClassification.from_pretrained(folder)
        with torch.no_grad():
            logits = model(**AwdLstmTokenizer.from_pretrained(folder)(texts[0], return_tensors="pt")).logits[0]
        assert scores[0]["label"] == names[int(logits.argmax())]

    with pytest.raises(ValueError, match=r"labels has 2 names \(neg, pos\) but the checkpoint's head has 3"):
        convert_fastai(weights, itos_path, tmp_path / "two", labels=["neg", "pos"])
    assert not (tmp_path / "two").exists()
    with pytest.raises(ValueError, match="labels must be distinct"):
        convert_fastai(weights, itos_path, tmp_path / "dup", labels=["neg", "neg", "pos"])
    with pytest.raises(TypeError, match="labels must be a list"):
        convert_fastai(weights, itos_path, tmp_path / "str", labels="neg,mixed,pos")
    args = ["convert-fastai", str(weights), "--vocab", str(itos_path), "--out", str(tmp_path / "cli_bad")]
    assert main([*args, "--labels", "neg,pos"]) == 2
    assert "labels has 2 names" in capsys.readouterr().err
    assert main([*args, "--labels", f"@{tmp_path / 'missing.txt'}"]) == 2
    assert "--labels file" in capsys.readouterr().err


def test_labels_are_refused_for_a_language_model(tmp_path):
    itos = toy_itos()
    torch.save(toy_lm_state_dict(len(itos)), tmp_path / "lm.pth")
    with pytest.raises(ValueError, match="labels name a classifier's classes, but the checkpoint is a language model"):
        convert_fastai(tmp_path / "lm.pth", itos, tmp_path / "out", labels=["neg", "pos"])
