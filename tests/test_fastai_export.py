"""fastai's exported learners (`learn.export()`), converted without running their pickle: a real fastai 2.8 text
classifier, language model and SentencePiece classifier, exported and converted (same token ids, vocabulary, class
names and logits as fastai's `learn.model`); the conversion never unpickles normally nor imports fastai; hostile
exports (code anywhere in the pickle, forged storages and views, truncated or foreign files) are refused, naming
the global, and nothing they ask for runs."""

from __future__ import annotations

import io
import json
import pickle
import pickletools
import random
import shutil
import struct
import subprocess
import sys
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

fa = pytest.importorskip("fastai.text.all", reason="fastai builds the learners to export")
pytestmark = pytest.mark.fastai

from fastai_reference import randomize_head_batchnorm  # noqa: E402

from hf_bpt3c import AwdLstmForCausalLM, AwdLstmForSequenceClassification  # noqa: E402
from hf_bpt3c.convert.fastai_export import (  # noqa: E402
    RefusedGlobal,
    convert_fastai_export,
    load_export_graph,
    read_fastai_export,
)
from hf_bpt3c.models.awd_lstm.tokenization_awd_lstm import AwdLstmTokenizer  # noqa: E402

TOL = 1e-5
BPTT, MAX_LEN = 8, 24  # SentenceEncoder's: probes longer than max_len exercise the kept window
CONFIG = dict(emb_sz=16, n_hid=24, n_layers=2)

REVIEWS = {
    "pos": [
        "I loved this film, the acting was wonderful.",
        "What a great movie! I laughed all the way through.",
        "A fine story, well told and beautifully shot.",
        "The best picture I have seen this year.",
        "Charming, warm and very funny.",
        "Great fun from start to end; go and see it.",
        "The cast is superb and the music is lovely.",
        "A delight. I would watch it again tomorrow.",
        "Smart, moving and full of heart.",
        "I was smiling for days after seeing it.",
    ],
    "neg": [
        "I hated this film, the acting was awful.",
        "What a terrible movie. I slept all the way through.",
        "A dull story, badly told and ugly to look at.",
        "The worst picture I have seen this year.",
        "Cold, boring and not funny at all.",
        "A bore from start to end; do not see it.",
        "The cast is wooden and the music is loud.",
        "A mess. I would never watch it again.",
        "Stupid, empty and without any heart.",
        "I was angry for days after seeing it.",
    ],
    "mixed": [
        "Some good acting, but the story is weak.",
        "The music is great, the rest is dull.",
        "Funny at times, boring at others.",
        "A fine cast wasted on a poor script.",
        "Not bad, not great: an average movie.",
        "I liked the start but hated the end.",
        "Beautifully shot, badly told.",
        "Worth seeing once, but only once.",
    ],
}
PROBES = [
    "I loved the music, but the story was dull and the end was a mess.",
    "A GREAT film!!! the cast is superb, the acting wonderful, the music lovely and the story moving; "
    "I would see it again and again, and again, with all my friends, and laugh all the way through.",
    "Zyxwv qqq, an unknown word or two.",
]


@dataclass
class Exported:
    learn: object
    path: Path
    ids: list[list[int]]  # fastai's token ids of PROBES


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Exported]:
    """A classifier and a language model (fastai's word tokenizer), built once, weights made non-trivial, exported
    with `learn.export()`; and fastai's own ids of the probes."""
    import numpy as np
    import pandas as pd

    root = tmp_path_factory.mktemp("exports")
    texts = [(text, label) for label, group in REVIEWS.items() for text in group]
    df = pd.DataFrame({"text": [t for t, _ in texts], "label": [label for _, label in texts]})
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    numericalize_tokens = fa.Tokenizer(fa.WordTokenizer())
    out = {}

    block = fa.TextBlock.from_df("text", seq_len=BPTT, min_freq=1)
    dls = fa.DataBlock(
        blocks=(block, fa.CategoryBlock),
        get_x=fa.ColReader("text"),
        get_y=fa.ColReader("label"),
        splitter=fa.RandomSplitter(0.2, seed=0),
    ).dataloaders(df, bs=8, num_workers=0, path=root)
    learn = fa.text_classifier_learner(
        dls, fa.AWD_LSTM, config=dict(fa.awd_lstm_clas_config, **CONFIG), pretrained=False, seq_len=BPTT,
        max_len=MAX_LEN,
    )  # fmt: skip
    randomize_head_batchnorm(learn.model[1])
    learn.export("classifier.pkl")
    out["classifier"] = Exported(learn, root / "classifier.pkl", _fastai_ids(numericalize_tokens, dls.vocab[0]))

    lm_block = fa.TextBlock.from_df("text", is_lm=True, min_freq=1)
    lm_dls = fa.DataBlock(blocks=lm_block, get_x=fa.ColReader("text"), splitter=fa.RandomSplitter(0.2, seed=0))
    lm_dls = lm_dls.dataloaders(df, bs=4, seq_len=BPTT, num_workers=0, path=root)
    lm = fa.language_model_learner(lm_dls, fa.AWD_LSTM, config=dict(fa.awd_lstm_lm_config, **CONFIG), pretrained=False)
    with torch.no_grad():
        lm.model[1].decoder.bias.normal_(0, 0.1)  # fastai zeroes it; make the mapping visible
    lm.export("lm.pkl")
    out["lm"] = Exported(lm, root / "lm.pkl", _fastai_ids(numericalize_tokens, lm_dls.vocab))
    return out


def _fastai_ids(tokenizer, vocab) -> list[list[int]]:
    numericalize = fa.Numericalize(vocab=vocab)
    return [numericalize(tokenizer(text)).tolist() for text in PROBES]


def max_logit_diff(model, learn, ids: list[list[int]], backwards: bool = False) -> float:
    """Max |logits - fastai's| over the documents, fastai's `learn.model` in eval mode with a fresh state each. A
    backward classifier reverses each document itself; fastai's is given it reversed, as its data is."""
    reference = learn.model.eval()
    diff = 0.0
    with torch.no_grad():
        for doc in ids:
            reference.reset()
            theirs = reference(torch.tensor([doc[::-1] if backwards else doc]))[0]
            diff = max(diff, (model(torch.tensor([doc])).logits - theirs).abs().max().item())
    return diff


def same_vocabulary(out: Path, vocab) -> bool:
    """The converted tokenizer's tokens are fastai's vocabulary, id for id (the repeated `xxfake` fillers that pad
    fastai's vocabulary to a multiple of 8 get distinct names: `transfer.last_id_wins`)."""
    tokens = AwdLstmTokenizer.from_pretrained(out).convert_ids_to_tokens(list(range(len(vocab))))
    assert "xxfake" in vocab  # the case is exercised
    return len(tokens) == len(vocab) and all(
        ours == theirs or (theirs == "xxfake" and ours.startswith("xxfake")) for ours, theirs in zip(tokens, vocab)
    )


def our_ids(out: Path) -> list[list[int]]:
    tokenizer = AwdLstmTokenizer.from_pretrained(out)
    return [tokenizer(text)["input_ids"] for text in PROBES]


# ----------------------------------------------------------------------------------------------------------------
# Real exports
# ----------------------------------------------------------------------------------------------------------------


def test_classifier_export_converts_to_the_same_model(exports, tmp_path):
    exported = exports["classifier"]
    learn = exported.learn
    result = convert_fastai_export(exported.path, tmp_path / "out")
    assert (result.kind, result.tokenizer, result.lang) == ("classifier", "word", "en")
    assert result.learner == "fastai.text.learner.TextLearner"
    assert result.labels == list(learn.dls.vocab[1]) == ["mixed", "neg", "pos"]
    model = AwdLstmForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    config = model.config
    assert [config.id2label[i] for i in range(config.num_labels)] == list(learn.dls.vocab[1])
    assert (config.bptt, config.max_len, config.backwards) == (BPTT, MAX_LEN, False)
    assert same_vocabulary(tmp_path / "out", learn.dls.vocab[0])
    assert our_ids(tmp_path / "out") == exported.ids
    assert max(len(doc) for doc in exported.ids) > MAX_LEN
    diff = max_logit_diff(model, learn, exported.ids)
    print(f"classifier: max |logits - fastai's| = {diff:.2e}")
    assert diff <= TOL


def test_language_model_export_converts_to_the_same_model(exports, tmp_path):
    exported = exports["lm"]
    learn = exported.learn
    result = convert_fastai_export(exported.path, tmp_path / "out")
    assert (result.kind, result.learner, result.labels) == ("language_model", "fastai.text.learner.LMLearner", None)
    model = AwdLstmForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert model.config.bptt == BPTT
    assert same_vocabulary(tmp_path / "out", learn.dls.vocab)
    assert our_ids(tmp_path / "out") == exported.ids
    diff = max_logit_diff(model, learn, exported.ids)
    print(f"language model: max |logits - fastai's| = {diff:.2e}")
    assert diff <= TOL


def test_export_weights_equal_the_learners_state_dict(exports):
    for exported in exports.values():
        read = read_fastai_export(exported.path)
        expected = exported.learn.model.state_dict()
        assert list(read.state_dict) == list(expected)
        for key, tensor in expected.items():
            assert torch.equal(read.state_dict[key], tensor), key


def test_legacy_torch_format_reads_the_same(exports, tmp_path):
    """torch's pre-1.6 single-stream format (fastai exports of that time, `_use_new_zipfile_serialization=False`)."""
    exported = exports["classifier"]
    legacy = tmp_path / "legacy.pkl"
    learner = fa.load_learner(exported.path)  # what export() pickled (data emptied, no optimizer); trusted here
    torch.save(learner, legacy, pickle_module=pickle, pickle_protocol=2, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(legacy)
    convert_fastai_export(legacy, tmp_path / "out")
    model = AwdLstmForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    assert max_logit_diff(model, exported.learn, exported.ids) <= TOL


def test_conversion_does_not_unpickle_normally(exports, tmp_path, monkeypatch):
    """Sentinels on every way a normal load would go (pickle's Unpickler and load functions, torch.load, fastai's
    Learner and torch's Module `__setstate__`): the conversion trips none; fastai's `load_learner` trips them."""
    calls = []

    class RecordingUnpickler(pickle.Unpickler):
        def find_class(self, module, name):
            calls.append(f"find_class {module}.{name}")
            return super().find_class(module, name)

    def recorder(name, original):
        def record(*args, **kwargs):
            calls.append(name)
            return original(*args, **kwargs)

        return record

    module_setstate = torch.nn.Module.__setstate__
    monkeypatch.setattr(pickle, "Unpickler", RecordingUnpickler)
    monkeypatch.setattr(pickle, "load", recorder("pickle.load", pickle.load))
    monkeypatch.setattr(pickle, "loads", recorder("pickle.loads", pickle.loads))
    torch_load = torch.load

    def load(*args, **kwargs):
        calls.append(f"torch.load weights_only={kwargs.get('weights_only')}")
        return torch_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    monkeypatch.setattr(torch.nn.Module, "__setstate__", recorder("Module.__setstate__", module_setstate))

    def learner_setstate(self, state):
        calls.append("Learner")
        self.__dict__.update(state)

    monkeypatch.setattr(fa.Learner, "__setstate__", learner_setstate, raising=False)
    result = convert_fastai_export(exports["classifier"].path, tmp_path / "out")
    assert result.kind == "classifier"
    # the only load: convert_fastai reading the weights this conversion wrote, with torch.load(weights_only=True)
    assert set(calls) <= {"torch.load weights_only=True"}, calls
    fa.load_learner(exports["classifier"].path)  # the sentinels do see a normal unpickling
    assert any(call.startswith("find_class fastai.") for call in calls) and "Learner" in calls


def test_conversion_never_imports_fastai(exports, tmp_path):
    """In a fresh interpreter where fastai and the packages its pickle names cannot be imported."""
    script = textwrap.dedent(
        f"""
        import json, sys
        import importlib.machinery
        BLOCKED = ("fastai", "fastcore", "fasttransform", "fastprogress", "spacy", "thinc", "plum", "cloudpickle",
                   "confection")
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    return importlib.machinery.ModuleSpec(name, self)
            def create_module(self, spec):
                raise ImportError(f"{{spec.name}} is blocked in this test")
            def exec_module(self, module):
                raise ImportError("blocked")
        sys.meta_path.insert(0, Block())
        from hf_bpt3c.convert.fastai_export import convert_fastai_export
        result = convert_fastai_export({str(exports["lm"].path)!r}, {str(tmp_path / "out")!r})
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        print(json.dumps({{"kind": result.kind, "vocab": result.config.vocab_size, "loaded": loaded}}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"kind": "language_model", "vocab": len(exports["lm"].learn.dls.vocab), "loaded": []}
    model = AwdLstmForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert max_logit_diff(model, exports["lm"].learn, exports["lm"].ids) <= TOL


def test_out_dir_is_never_overwritten_without_overwrite(exports, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty"):
        convert_fastai_export(exports["lm"].path, out)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    convert_fastai_export(exports["lm"].path, out, overwrite=True)
    assert (out / "mine.txt").read_text() == "keep me" and (out / "config.json").is_file()


def test_the_real_exports_name_only_allowed_globals(exports):
    """What a fastai 2.8 export names (listed by the reader): fastai's classes, never an os/subprocess/eval."""
    _, names = load_export_graph(exports["classifier"].path)
    assert "fastai.text.learner.TextLearner" in names and "torch._utils._rebuild_tensor_v2" in names
    assert not any(name.startswith(("os.", "posix.", "subprocess.", "sys.")) for name in names)


# ----------------------------------------------------------------------------------------------------------------
# SentencePiece
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sp_export(tmp_path_factory):
    """A backward classifier with fastai's SentencePieceTokenizer: the export, and its spm.model kept apart."""
    pytest.importorskip("sentencepiece")
    import pandas as pd

    root = tmp_path_factory.mktemp("sp")
    texts = [(text, label) for label, group in REVIEWS.items() for text in group]
    df = pd.DataFrame({"text": [t for t, _ in texts] * 2, "label": [label for _, label in texts] * 2})
    random.seed(0)
    torch.manual_seed(0)
    sp = fa.SentencePieceTokenizer(lang="en", vocab_sz=120, cache_dir=root / "spm")
    block = fa.TextBlock.from_df("text", tok=sp, seq_len=BPTT, backwards=True, min_freq=1)
    dls = fa.DataBlock(
        blocks=(block, fa.CategoryBlock), get_x=fa.ColReader("text"), get_y=fa.ColReader("label")
    ).dataloaders(df, bs=8, num_workers=0, path=root)
    learn = fa.text_classifier_learner(
        dls, fa.AWD_LSTM, config=dict(fa.awd_lstm_clas_config, **CONFIG), pretrained=False, seq_len=BPTT,
        max_len=MAX_LEN,
    )  # fmt: skip
    randomize_head_batchnorm(learn.model[1])
    folder = root / "repo"
    folder.mkdir()
    learn.export(folder / "model.pkl")
    tokenizer = fa.Tokenizer(fa.SentencePieceTokenizer(lang="en", sp_model=root / "spm" / "spm.model"))
    ids = _fastai_ids(tokenizer, dls.vocab[0])
    return Exported(learn, folder / "model.pkl", ids), root / "spm" / "spm.model"


def test_sentencepiece_export_needs_its_model_then_converts(sp_export, tmp_path):
    exported, spm = sp_export
    with pytest.raises(ValueError, match=r"SentencePieceTokenizer.*spm\.model.*sp_model="):
        convert_fastai_export(exported.path, tmp_path / "missing")
    assert not (tmp_path / "missing").exists()
    shutil.copy(spm, exported.path.parent / "spm.model")  # next to the export, as a Hub repository would hold it
    try:
        result = convert_fastai_export(exported.path, tmp_path / "out")
    finally:
        (exported.path.parent / "spm.model").unlink()
    assert (result.tokenizer, result.config.backwards) == ("sentencepiece", True)
    model = AwdLstmForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    assert our_ids(tmp_path / "out") == exported.ids
    diff = max_logit_diff(model, exported.learn, exported.ids, backwards=True)
    print(f"backward SentencePiece classifier: max |logits - fastai's| = {diff:.2e}")
    assert diff <= TOL
    again = convert_fastai_export(exported.path, tmp_path / "given", sp_model=spm.read_bytes())
    assert again.labels == list(exported.learn.dls.vocab[1])
    assert our_ids(tmp_path / "given") == exported.ids


# ----------------------------------------------------------------------------------------------------------------
# Hostile exports
# ----------------------------------------------------------------------------------------------------------------


def call(module: str, name: str, *args) -> bytes:
    """Protocol-2 opcodes that call `module.name(*args)` (GLOBAL, the arguments, REDUCE), using no memo."""
    arguments = pickletools.optimize(pickle.dumps(tuple(args), protocol=2))[2:-1]
    return b"c" + f"{module}\n{name}\n".encode() + arguments + b"R"


def ops(data: bytes) -> list[tuple[str, object, int, int]]:
    """(opcode name, argument, start, end) of each opcode of a pickle."""
    found = list(pickletools.genops(data))
    ends = [pos for _, _, pos in found[1:]] + [len(data)]
    return [(op.name, arg, pos, end) for (op, arg, pos), end in zip(found, ends, strict=True)]


def replace_op(data: bytes, index: int, new: bytes) -> bytes:
    _, _, start, end = ops(data)[index]
    return data[:start] + new + data[end:]


def find_op(data: bytes, predicate, after: int = 0) -> int:
    return next(i for i, op in enumerate(ops(data)) if i >= after and predicate(op))


def rewrite(export: Path, target: Path, change) -> Path:
    """A copy of a real export whose data.pkl is `change(data.pkl)` (the storages unchanged)."""
    with zipfile.ZipFile(export) as source, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as out:
        for info in source.infolist():
            data = source.read(info)
            out.writestr(info.filename, change(data) if info.filename.endswith("/data.pkl") else data)
    return target


def payloads(flag: Path) -> dict[str, bytes]:
    """Calls that would create `flag` (or worse) if anything ran them."""
    touch = f"touch {flag}"
    return {
        "os.system": call("os", "system", touch),
        "posix.system": call("posix", "system", touch),
        "subprocess.check_call": call("subprocess", "check_call", ["touch", str(flag)]),
        "builtins.eval": call("builtins", "eval", f"open({str(flag)!r}, 'w')"),
        "builtins.exec": call("__builtin__", "exec", f"open({str(flag)!r}, 'w')"),
        "builtins.open": call("builtins", "open", str(flag), "w"),
        "importlib.import_module": call("importlib", "import_module", "antigravity"),
        "torch.load": call("torch", "load", str(flag)),
        "torch.hub.load": call("torch.hub", "load", "attacker/repo", "model"),
        "numpy.load": call("numpy", "load", str(flag)),
        "functools.partial": call("functools", "partial", 1),
        "sys.exit": call("sys", "exit", 3),
    }


def refused(path: Path, out: Path, flag: Path, name: str) -> str:
    with pytest.raises(RefusedGlobal) as caught:  # a ValueError
        convert_fastai_export(path, out)
    message = str(caught.value)
    assert name in message, message
    assert not flag.exists(), "a payload ran"
    assert not out.exists()
    return message


@pytest.mark.parametrize("name", ["os.system", "posix.system", "builtins.eval", "builtins.exec", "builtins.open"])
def test_top_level_payload_is_refused(exports, tmp_path, name):
    flag = tmp_path / "flag"
    hostile = rewrite(
        exports["lm"].path, tmp_path / "export.pkl", lambda data: b"\x80\x02" + payloads(flag)[name] + b"."
    )
    message = refused(hostile, tmp_path / "out", flag, name)
    assert f"asks for {name}: refused; nothing was run" in message


@pytest.mark.parametrize("where", ["header", "object"])
def test_payload_in_the_legacy_format_is_refused(tmp_path, where):
    flag = tmp_path / "flag"
    header = [pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2), pickle.dumps(1001, protocol=2)]
    payload = b"\x80\x02" + payloads(flag)["os.system"] + b"."
    rest = [payload] if where == "header" else [pickle.dumps({}, protocol=2), payload]
    path = tmp_path / "export.pkl"
    path.write_bytes(b"".join(header + rest))
    refused(path, tmp_path / "out", flag, "os.system")


@pytest.mark.parametrize("name", list(payloads(Path("flag"))))
def test_payload_inside_the_learner_is_refused(exports, tmp_path, name):
    """In place of the learner's `lr`, deep inside the real pickle: code, `torch.load`/`torch.hub.load`, numpy."""
    flag = tmp_path / "flag"

    def change(data):
        key = find_op(data, lambda op: op[1] == "lr")
        return replace_op(data, key + 2, payloads(flag)[name])  # "lr", its BINPUT, then the float

    refused(rewrite(exports["classifier"].path, tmp_path / "export.pkl", change), tmp_path / "out", flag, name)


def test_payload_inside_the_vocabulary_is_refused(exports, tmp_path):
    flag = tmp_path / "flag"

    def change(data):
        opcodes = ops(data)
        # the "vocab" key of Numericalize's state (the string, or a GET of its memo), then the list: EMPTY_LIST, its
        # PUT, MARK, then the first token
        memo = next(opcodes[i + 1][1] for i, op in enumerate(opcodes) if op[1] == "vocab")
        vocab = next(
            i
            for i, op in enumerate(opcodes)
            if (op[1] == "vocab" or (op[0].endswith("GET") and op[1] == memo)) and opcodes[i + 1][0] == "EMPTY_LIST"
        )
        first = vocab + 4
        assert opcodes[first - 1][0] == "MARK" and opcodes[first][0] in ("BINUNICODE", "BINGET", "LONG_BINGET")
        return replace_op(data, first, payload)

    payload = pickle.dumps("planted", protocol=2)[2:-1]  # first, a plain token at that place: it is the vocabulary
    planted = read_fastai_export(rewrite(exports["lm"].path, tmp_path / "planted.pkl", change))
    assert planted.vocab[0] == "planted" and planted.vocab[1:] == list(exports["lm"].learn.dls.vocab[1:])
    payload = payloads(flag)["posix.system"]
    refused(rewrite(exports["lm"].path, tmp_path / "export.pkl", change), tmp_path / "out", flag, "posix.system")


@pytest.mark.parametrize("where", ["storage type", "storage key", "rebuild offset", "rebuild size"])
def test_payload_where_a_tensor_belongs_is_refused(exports, tmp_path, where):
    flag = tmp_path / "flag"

    def change(data):
        rebuild = find_op(data, lambda op: op[1] == "torch._utils _rebuild_tensor_v2")
        persid = find_op(data, lambda op: op[0] == "BINPERSID", after=rebuild)
        index = {
            "storage type": find_op(data, lambda op: op[0] == "GLOBAL" and "Storage" in str(op[1]), after=rebuild),
            "storage key": find_op(data, lambda op: op[1] == "0", after=rebuild),
            "rebuild offset": persid + 1,  # BINPERSID, then the offset
            "rebuild size": persid + 2,
        }[where]
        return replace_op(data, index, payloads(flag)["os.system"])

    refused(rewrite(exports["lm"].path, tmp_path / "export.pkl", change), tmp_path / "out", flag, "os.system")


def test_getattr_is_only_for_fastai_methods(exports, tmp_path):
    flag = tmp_path / "flag"
    reach = call("__builtin__", "getattr", "text", "__class__")
    hostile = rewrite(exports["lm"].path, tmp_path / "export.pkl", lambda data: b"\x80\x02" + reach + b".")
    refused(hostile, tmp_path / "out", flag, "builtins.getattr")


@pytest.mark.parametrize(
    ("name", "opcodes"),
    [  # BUILD on what find_class gave: a safe constructor's attributes, a tensor rebuild's defaults (slot state)
        ("builtins.list", b"c__builtin__\nlist\n}X\x01\x00\x00\x00aK\x01sb"),
        (
            "torch._utils._rebuild_tensor_v2",
            b"ctorch._utils\n_rebuild_tensor_v2\nN}X\x0c\x00\x00\x00__defaults__)s\x86b",
        ),
    ],
)
def test_allowed_globals_cannot_be_changed(exports, tmp_path, name, opcodes):
    hostile = rewrite(exports["lm"].path, tmp_path / "export.pkl", lambda data: b"\x80\x02" + opcodes + b".")
    with pytest.raises(RefusedGlobal, match=f"the pickle tries to change {name}"):
        convert_fastai_export(hostile, tmp_path / "out")


def int_op(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


@pytest.mark.parametrize(
    ("forgery", "expected"),
    [
        ("offset past the end", r"_rebuild_tensor_v2 asks for a view .* reaching element"),
        ("size past the end", r"_rebuild_tensor_v2 asks for a view .* reaching element"),
        ("declared length past the data", r"torch\.\w+Storage\) holds \d+ bytes but the pickle declares"),
        ("negative offset", r"_rebuild_tensor_v2 was given the storage offset -1"),
    ],
)
def test_forged_storages_and_views_are_refused(exports, tmp_path, forgery, expected):
    def change(data):
        rebuild = find_op(data, lambda op: op[1] == "torch._utils _rebuild_tensor_v2")
        persid = find_op(data, lambda op: op[0] == "BINPERSID", after=rebuild)
        if forgery == "offset past the end":
            return replace_op(data, persid + 1, int_op(10_000_000))
        if forgery == "negative offset":
            return replace_op(data, persid + 1, int_op(-1))
        if forgery == "size past the end":
            return replace_op(data, persid + 2, int_op(1 << 20))  # the first size
        numel = find_op(data, lambda op: op[1] == "cpu", after=rebuild) + 2  # "cpu", its BINPUT, the length
        return replace_op(data, numel, int_op(1 << 24))

    hostile = rewrite(exports["lm"].path, tmp_path / "export.pkl", change)
    with pytest.raises(ValueError, match=expected):
        convert_fastai_export(hostile, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_storage_and_oversized_export_are_refused(exports, tmp_path):
    path = exports["lm"].path
    gutted = tmp_path / "gutted.pkl"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(gutted, "w") as out:
        for info in source.infolist():
            if "/data/" not in info.filename:
                out.writestr(info.filename, source.read(info))
    with pytest.raises(ValueError, match=r"storage '0'.* is not in the file"):
        convert_fastai_export(gutted, tmp_path / "out")
    with pytest.raises(ValueError, match=r"more than 1\.0 KiB .*HF_BPT3C_MAX_EXPORT_BYTES"):
        read_fastai_export(path, max_bytes="1K")


@pytest.mark.parametrize(
    "damage", ["truncated", "truncated pickle", "memo bomb", "text", "empty", "random", "pickle of a dict"]
)
def test_damaged_and_foreign_files_are_refused(exports, tmp_path, damage):
    data = exports["lm"].path.read_bytes()
    path = tmp_path / "export.pkl"
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
        expected = "damaged or truncated"
    elif damage == "truncated pickle":
        rewrite(exports["lm"].path, path, lambda pkl: pkl[: len(pkl) // 2])
        expected = "damaged or truncated"
    elif damage == "memo bomb":  # a memo slot of 2**30 would make CPython's unpickler allocate 8 GiB at once
        rewrite(exports["lm"].path, path, lambda pkl: b"\x80\x02Nr" + struct.pack("<I", 1 << 30) + b".")
        expected = "memo slot 1073741824"
    elif damage == "text":
        path.write_text("this is not a fastai export\n")
        expected = "not a fastai export"
    elif damage == "empty":
        path.write_bytes(b"")
        expected = "not a fastai export"
    elif damage == "random":
        path.write_bytes(b"\x80" + random.Random(0).randbytes(4000))
        expected = "not a fastai export"
    else:
        buffer = io.BytesIO()
        torch.save({"weights": torch.zeros(3)}, buffer)
        path.write_bytes(buffer.getvalue())
        expected = r"holds a dict, not a fastai Learner .*a checkpoint of weights.*--vocab"
    with pytest.raises(ValueError, match=expected) as caught:
        convert_fastai_export(path, tmp_path / "out")
    assert str(path) in str(caught.value)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------------------------------------------


def test_cli_converts_an_export_and_reports_refusals_in_one_line(exports, tmp_path, capsys):
    from hf_bpt3c import cli

    if not hasattr(cli, "convert_fastai_export"):
        pytest.skip("`hf-bpt3c convert-fastai EXPORT --out DIR` is not wired into the CLI yet")
    assert cli.main(["convert-fastai", str(exports["classifier"].path), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "without running its pickle" in printed and "classes: mixed, neg, pos" in printed
    assert cli.main(["convert-fastai", str(exports["lm"].path), "--out", str(tmp_path / "o2"), "--bptt", "9"]) == 2
    assert "--bptt cannot be used with a fastai export" in capsys.readouterr().err
    flag = tmp_path / "flag"
    hostile = rewrite(
        exports["lm"].path, tmp_path / "export.pkl", lambda data: b"\x80\x02" + payloads(flag)["os.system"] + b"."
    )
    assert cli.main(["convert-fastai", str(hostile), "--out", str(tmp_path / "o3")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "asks for os.system: refused; nothing was run" in err
    assert not flag.exists() and not (tmp_path / "o3").exists()
