"""Hostile fastai files for the converter (RELIABILITY.md, round 2): vocabulary pickles that hang, recurse or run
code, checkpoints whose shapes do not fit, repeated tokens; and fuzzing of pickle opcodes, random bytes and
random shape changes. Every case ends, quickly, in a `ValueError` naming the file (and the key or entry)."""

from __future__ import annotations

import os
import pickle
import pickletools
import struct
import tempfile
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_convert import toy_itos, toy_lm_state_dict

from hf_bpt3c.convert import convert_fastai, load_fastai_checkpoint, load_itos
from hf_bpt3c.convert.transfer import last_id_wins
from hf_bpt3c.models.awd_lstm.tokenization_awd_lstm import AwdLstmTokenizer

ITOS = toy_itos()  # 9 special tokens + 7 words


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def refused_quickly(path: Path, match: str, seconds: float = 5.0) -> str:
    start = time.monotonic()
    with pytest.raises(ValueError, match=match) as caught:
        load_itos(path)
    assert time.monotonic() - start < seconds
    assert str(path) in str(caught.value)
    return str(caught.value)


# ----------------------------------------------------------------------------------------------------------------
# Bug 2: vocabulary pickles that hang or recurse (regressions)
# ----------------------------------------------------------------------------------------------------------------


def shared_lists(depth: int = 40) -> bytes:
    """`x = [x, x]` `depth` times: a 254-byte pickle of 2^depth leaves (the converter walked them all)."""
    x: list = []
    for _ in range(depth):
        x = [x, x]
    return pickle.dumps(x)


def self_containing() -> bytes:
    x: list = ["xxunk"]
    x.append(x)
    return pickle.dumps(x)


def deep(depth: int = 100_000) -> bytes:
    """A list nested `depth` deep, written opcode by opcode (pickle.dumps itself would recurse)."""
    return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."


@pytest.mark.parametrize(
    "data, match",
    [(shared_lists(), "more than 16 lists"), (self_containing(), "entry 1 is a list"), (deep(), "more than 16 lists")],
    ids=["shared-2^40", "self-containing", "100k-deep"],
)
def test_vocabulary_pickles_that_hang_or_recurse_are_refused_quickly(tmp_path, data, match):
    path = write(tmp_path / "itos.pkl", data)
    if data == shared_lists():
        assert len(data) < 300
    refused_quickly(path, match)


def test_the_cli_reports_them_without_a_traceback(tmp_path, capsys):
    from hf_bpt3c.cli import main

    torch.save(toy_lm_state_dict(len(ITOS)), tmp_path / "lm.pth")
    write(tmp_path / "itos.pkl", shared_lists())
    assert main(["convert-fastai", str(tmp_path / "lm.pth"), "--vocab", str(tmp_path / "itos.pkl"), "--out", "o"]) == 2
    err = capsys.readouterr().err
    assert "itos.pkl refused" in err and "Traceback" not in err and err.count("\n") == 1


# ----------------------------------------------------------------------------------------------------------------
# Pickles: every opcode that reaches outside data, and the size limit
# ----------------------------------------------------------------------------------------------------------------

OUTSIDE = {
    "GLOBAL": b"\x80\x02cposix\nsystem\n(S'true'\ntR.",
    "STACK_GLOBAL": b"\x80\x04\x8c\x05posix\x8c\x06system\x93\x8c\x04true\x85R.",
    "INST": b"(S'true'\niposix\nsystem\n.",
    "OBJ": b"\x80\x02(cposix\nsystem\nS'true'\no.",
    "REDUCE-without-global": b"\x80\x02]\x94)R.",
    "BUILD": b"\x80\x02}\x94}b.",
    "PERSID": b"Pfoo\n.",
    "BINPERSID": b"\x80\x02X\x03\x00\x00\x00fooQ.",
    "EXT1": b"\x80\x02\x82\x01.",
    "NEXT_BUFFER": b"\x80\x05\x97.",
    "EMPTY_SET": b"\x80\x04\x8f\x94.",
    "FROZENSET": b"\x80\x04(\x8c\x01a\x91.",
}


@pytest.mark.parametrize("name", sorted(OUTSIDE))
def test_every_opcode_that_reaches_outside_data_is_refused(tmp_path, name):
    message = refused_quickly(write(tmp_path / "itos.pkl", OUTSIDE[name]), "refused")
    assert "posix.system" in message or "not allowed" in message


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "refused"),
        (b"not a pickle at all", "refused"),
        (pickle.dumps(ITOS)[:-5], "refused"),
        (b"\x80\x02L" + b"9" * 5000 + b"L\n.", "refused"),  # a 5000-digit int (Python limits str -> int)
        (pickle.dumps(["a", "b"], protocol=0), None),
        (pickle.dumps(("a", "b"), protocol=5), None),
        (pickle.dumps({"a": 0, "b": 1}, protocol=2), None),
        (pickle.dumps({"a": 0, "b": 2}), "ids of the str->id dict"),
        (pickle.dumps({"a": True, "b": 0}), "not token -> id"),
        (pickle.dumps(["a", b"b"]), "entry 1 is a bytes"),
        (pickle.dumps("abc"), "got a str"),
        (pickle.dumps({}), "is empty"),
    ],
)
def test_data_pickles_are_read_or_refused_by_entry(tmp_path, data, match):
    path = write(tmp_path / "itos.pkl", data)
    if match is None:
        assert load_itos(path) == ["a", "b"]
    else:
        refused_quickly(path, match)


def test_the_vocabulary_size_limit_and_its_overrides(tmp_path, monkeypatch):
    path = write(tmp_path / "itos.pkl", pickle.dumps([f"w{i}" for i in range(2000)]))
    with pytest.raises(ValueError, match=r"larger than 1\.0 KiB \(raise HF_BPT3C_MAX_VOCAB_BYTES"):
        load_itos(path, max_bytes="1K")
    monkeypatch.setenv("HF_BPT3C_MAX_VOCAB_BYTES", "2K")
    refused_quickly(path, "larger than 2.0 KiB")
    monkeypatch.setenv("HF_BPT3C_MAX_VOCAB_BYTES", "1M")
    assert len(load_itos(path)) == 2000


def test_a_fifo_or_folder_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "fifo.pkl")
    for path in (tmp_path / "fifo.pkl", tmp_path):
        with pytest.raises(ValueError, match="is not a regular file"):
            load_itos(path)
        with pytest.raises(ValueError, match="is not a regular file"):
            load_fastai_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="missing.pkl does not exist"):
        load_itos(tmp_path / "missing.pkl")


# fuzzing: random opcode streams and random bytes
_ARGS = {
    "uint1": st.integers(0, 255).map(lambda n: bytes([n])),
    "uint2": st.integers(0, 65535).map(lambda n: struct.pack("<H", n)),
    "int4": st.integers(-(2**31), 2**31 - 1).map(lambda n: struct.pack("<i", n)),
    "uint4": st.integers(0, 40).map(lambda n: struct.pack("<I", n)),
    "stringnl_noescape_pair": st.sampled_from([b"posix\nsystem\n", b"builtins\nlist\n"]),
    "decimalnl_short": st.sampled_from([b"1\n", b"00\n", b"x\n"]),
    "unicodestring1": st.text(max_size=5)
    .map(lambda t: t.encode("utf-8", "surrogatepass"))
    .map(lambda b: bytes([len(b)]) + b),
}
_OPCODES = [op for op in pickletools.opcodes if op.arg is None or op.arg.name in _ARGS]
OPCODE = st.sampled_from(_OPCODES).flatmap(
    lambda op: (_ARGS[op.arg.name] if op.arg is not None else st.just(b"")).map(lambda a: op.code.encode("latin-1") + a)
)


def load_or_refuse(data: bytes) -> None:
    """`load_itos` on `data`: a list of str, or ValueError naming the file; within a second."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "itos.pkl"
        path.write_bytes(data)
        start = time.monotonic()
        try:
            itos = load_itos(path)
        except ValueError as err:
            assert str(path) in str(err)
        else:
            assert isinstance(itos, list) and itos and all(isinstance(t, str) for t in itos)
        assert time.monotonic() - start < 1.0


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(OPCODE, max_size=30))
def test_random_opcode_streams_load_as_tokens_or_are_refused(ops):
    load_or_refuse(b"\x80\x04" + b"".join(ops) + b".")


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.binary(max_size=200))
def test_random_bytes_load_as_tokens_or_are_refused(data):
    load_or_refuse(data)


# ----------------------------------------------------------------------------------------------------------------
# Bug 3: checkpoints whose shapes do not fit (regressions, with the fastai key named)
# ----------------------------------------------------------------------------------------------------------------


def converted(tmp_path: Path, state: dict, match: str, itos=ITOS) -> None:
    """convert_fastai refuses `state` with a ValueError naming the file and matching `match`; writes nothing."""
    torch.save(state, tmp_path / "lm.pth")
    with pytest.raises(ValueError, match=match) as caught:
        convert_fastai(tmp_path / "lm.pth", itos, tmp_path / "out")
    assert "lm.pth" in str(caught.value)
    assert not (tmp_path / "out").exists()


def lm(**changes) -> dict:
    state = toy_lm_state_dict(len(ITOS))
    for key, value in changes.items():
        key = key.replace("__", ".")
        if value is None:
            del state[key]
        else:
            state[key] = value
    return state


SHAPE_CASES = {
    "valid": ({}, None),
    "no-embedding": ({"0.encoder.weight": None}, r"the token embedding is missing \('0\.encoder\.weight'\)"),
    "1-d-embedding": ({"0.encoder.weight": torch.zeros(16)}, r"'0\.encoder\.weight' \(the token embedding\) has shape"),
    "input-size": ({"0.rnns.0.module.weight_ih_l0": torch.zeros(24, 5)}, r"weight_ih_l0' .*expected \(24, 4\)"),
    "recurrent": ({"0.rnns.1.weight_hh_l0_raw": torch.zeros(16, 3)}, r"'0\.rnns\.1\.weight_hh_l0_raw' has shape"),
    "no-bias": ({"0.rnns.0.module.bias_hh_l0": None}, r"recurrent bias is missing \('0\.rnns\.0\.module\.bias_hh_l0'"),
    "layer-gap": ({"0.rnns.5.module.bias_hh_l0": torch.zeros(16)}, r"LSTM layer 2 is missing"),
    "decoder-bias": ({"1.decoder.bias": torch.zeros(3)}, r"'1\.decoder\.bias' .*has shape \(3,\), expected \(16,\)"),
    "int-embedding": ({"0.encoder.weight": torch.zeros(16, 4, dtype=torch.int64)}, r"holds torch\.int64 values"),
    "nan": ({"0.rnns.1.module.bias_ih_l0": torch.full((16,), float("nan"))}, r"bias_ih_l0' holds NaN"),
    "duplicate-key": ({"0.module.encoder.weight": torch.zeros(16, 4)}, r"'0\.encoder\.weight' and '0\.module\."),
    "3-d-embedding": ({"0.encoder.weight": torch.zeros(16, 4, 2)}, r"has shape \(16, 4, 2\)"),
    "complex": ({"0.rnns.1.module.weight_ih_l0": torch.zeros(16, 6, dtype=torch.complex64)}, r"torch\.complex64"),
}


@pytest.mark.parametrize("changes, match", list(SHAPE_CASES.values()), ids=list(SHAPE_CASES))
def test_checkpoint_shape_problems_name_the_key(tmp_path, changes, match):
    if match is None:
        convert_fastai(write_state(tmp_path, lm()), ITOS, tmp_path / "out")
        return
    converted(tmp_path, lm(**changes), match)


def write_state(tmp_path: Path, state: dict) -> Path:
    torch.save(state, tmp_path / "lm.pth")
    return tmp_path / "lm.pth"


def test_a_classifier_head_that_does_not_chain_is_named(tmp_path):
    state = {k.replace("0.", "0.module.", 1): v for k, v in lm().items() if not k.startswith("1.")}
    state.pop("0.module.encoder_dp.emb.weight")
    emb = 4
    for name in ("weight", "bias", "running_mean", "running_var"):
        state[f"1.layers.0.0.{name}"] = torch.ones(3 * emb)
        state[f"1.layers.1.0.{name}"] = torch.ones(5)
    state["1.layers.0.2.weight"] = torch.zeros(6, 3 * emb)  # outputs 6, but block 1 reads 5
    state["1.layers.1.2.weight"] = torch.zeros(2, 5)
    converted(
        tmp_path, state, r"'1\.layers\.1\.0\.weight' \(block 1's BatchNorm weight\) has shape \(5,\), expected \(6,\)"
    )
    state["1.layers.0.2.weight"] = torch.zeros(5, 3 * emb)
    state["1.layers.3.2.weight"] = torch.zeros(2, 5)
    converted(tmp_path, state, "classifier block 2 is missing")


def test_a_100_layer_checkpoint_is_refused_by_the_config_bound(tmp_path):
    state = toy_lm_state_dict(len(ITOS), emb=2, hid=2, layers=100)
    converted(tmp_path, state, r"num_hidden_layers must be <= 64, got 100")


@pytest.mark.parametrize(
    "content, match",
    [(b"", "not a readable PyTorch checkpoint"), (b"PK\x03\x04garbage", "not a readable"), (None, "not a readable")],
    ids=["empty", "broken-zip", "truncated"],
)
def test_unreadable_checkpoints_are_named(tmp_path, content, match):
    if content is None:
        torch.save(lm(), tmp_path / "full.pth")
        content = (tmp_path / "full.pth").read_bytes()[:-200]
    with pytest.raises(ValueError, match=match):
        load_fastai_checkpoint(write(tmp_path / "lm.pth", content))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    key=st.sampled_from(sorted(lm())),
    shape=st.lists(st.integers(0, 30), min_size=0, max_size=3),
    drop=st.booleans(),
)
def test_random_shape_changes_convert_or_name_the_key(key, shape, drop):
    state = lm()
    if drop:
        del state[key]
    else:
        state[key] = torch.zeros(shape)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        try:
            convert_fastai(write_state(tmp, state), ITOS, tmp / "out")
        except ValueError as err:
            assert "lm.pth" in str(err)
            assert not (tmp / "out").exists()


# ----------------------------------------------------------------------------------------------------------------
# A token listed twice maps to its last id, as in fastai
# ----------------------------------------------------------------------------------------------------------------


def test_a_repeated_token_maps_to_its_last_id_as_fastai_does(tmp_path):
    itos = [*ITOS[:-1], "w0"]  # "w0" at ids 9 and 15
    result = convert_fastai(write_state(tmp_path, lm()), itos, tmp_path / "out")
    assert any("'w0' is listed at ids [9, 15]" in note for note in result.notes)
    tokenizer = AwdLstmTokenizer.from_pretrained(tmp_path / "out")
    assert tokenizer("w0", add_special_tokens=False)["input_ids"] == [15]
    assert len(tokenizer) == len(itos) and tokenizer.convert_ids_to_tokens(9) == "w0 1"
    fastai_o2i = {v: k for k, v in enumerate(itos)}  # fastai v1 Vocab / v2 Numericalize(vocab=...)
    assert fastai_o2i["w0"] == 15


def test_last_id_wins_keeps_ids_and_leaves_unique_tokens():
    names, notes = last_id_wins(["a", "b", "a", "a 1", "xxfake", "xxfake"])
    assert names == ["a 2", "b", "a", "a 1", "xxfake 1", "xxfake"] and len(notes) == 1
    assert last_id_wins(ITOS) == (ITOS, [])


def test_fastai_numericalize_agrees(tmp_path):
    text = pytest.importorskip("fastai.text.all", reason="fastai is the reference")
    itos = [*ITOS[:-1], "w0"]
    numericalize = text.Numericalize(vocab=itos)
    assert numericalize.o2i["w0"] == 15


# ----------------------------------------------------------------------------------------------------------------
# The command line: options checked before reading, labels files, system errors
# ----------------------------------------------------------------------------------------------------------------


def test_options_are_checked_before_the_checkpoint_is_read(tmp_path):
    missing = tmp_path / "never-read.pth"
    for kwargs, match in [
        (dict(bptt=0), "bptt"),
        (dict(max_len=10, bptt=20), "max_len"),
        (dict(backwards="no"), "backwards"),
    ]:
        with pytest.raises((ValueError, TypeError), match=match):
            convert_fastai(missing, ITOS, tmp_path / "out", **kwargs)


def test_a_labels_file_that_is_not_utf8_is_named(tmp_path, capsys):
    from hf_bpt3c.cli import main

    (tmp_path / "labels.txt").write_bytes("n\xe9g\npos\n".encode("latin-1"))
    torch.save(toy_lm_state_dict(len(ITOS)), tmp_path / "lm.pth")
    args = ["convert-fastai", str(tmp_path / "lm.pth"), "--vocab", str(tmp_path / "lm.pth"), "--out", "o"]
    assert main([*args, "--labels", f"@{tmp_path / 'labels.txt'}"]) == 2
    assert "labels.txt is not UTF-8 text (byte 1)" in capsys.readouterr().err


def test_a_system_error_is_one_line_not_a_traceback(tmp_path, capsys, monkeypatch):
    from hf_bpt3c import cli

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "out"))

    monkeypatch.setattr(cli, "convert_fastai", full_disk)
    assert cli.main(["convert-fastai", "w.pth", "--vocab", "i.pkl", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err == f"hf-bpt3c convert-fastai: error: No space left on device ({tmp_path / 'out'})\n"


@pytest.mark.parametrize("data", [shared_lists(), deep(), pickle.dumps([os.system])], ids=["shared", "deep", "global"])
def test_a_sentencepiece_vocabulary_pickle_goes_through_the_same_scan(tmp_path, data):
    """`AwdLstmTokenizer.from_sentencepiece(..., vocab=path)` reads the pickle with the core's `safe_pickle`, as the
    converter does: refused before anything is built."""
    from hf_bpt3c.models.awd_lstm.sentencepiece_backend import load_vocab

    (tmp_path / "itos.pkl").write_bytes(data)
    with pytest.raises(ValueError, match="refused"):
        load_vocab(tmp_path / "itos.pkl")
