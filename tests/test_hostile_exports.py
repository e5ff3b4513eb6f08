"""Hostile `export-onnx` targets and altered exports (RELIABILITY.md, round 2): a mount point as `--out`, forged
manifests, subfolders and links, opsets outside the supported range, a language-model folder, a tampered
config.json in an export, an export killed midway."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from conftest import small_config  # noqa: E402

from hf_bpt3c import AwdLstmForCausalLM, AwdLstmForSequenceClassification  # noqa: E402
from hf_bpt3c.cli import main  # noqa: E402
from hf_bpt3c.serving import onnx as onnx_module  # noqa: E402
from hf_bpt3c.serving.onnx import MANIFEST, OnnxClassifier, export_onnx, supported_opsets  # noqa: E402


@pytest.fixture(scope="module")
def model() -> AwdLstmForSequenceClassification:
    torch.manual_seed(0)
    return AwdLstmForSequenceClassification(small_config(id2label={0: "neg", 1: "mixed", 2: "pos"})).eval()


@pytest.fixture(scope="module")
def model_dir(model, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    model.save_pretrained(folder)
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def entries(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


# ----------------------------------------------------------------------------------------------------------------
# Bug 4: a mount point as --out (the folder itself cannot be renamed)
# ----------------------------------------------------------------------------------------------------------------


def test_an_existing_out_folder_is_updated_in_place_never_renamed(model, tmp_path, monkeypatch):
    out = tmp_path / "volume"
    out.mkdir()
    inode = out.stat().st_ino
    real_replace, real_rename = os.replace, os.rename

    def mount_point(src, dst, *args, **kwargs):  # what a container volume does: EBUSY on renaming it
        if Path(src) == out or Path(dst) == out:
            raise OSError(errno.EBUSY, "Device or resource busy", str(src))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", mount_point)
    monkeypatch.setattr(os, "rename", lambda s, d, *a, **k: mount_point(s, d) if Path(s) == out else real_rename(s, d))
    export_onnx(model, out)  # empty mount point
    export_onnx(model, out, int8=True)  # a previous export in it
    export_onnx(model, out)  # and back: the int8 graphs go
    assert out.stat().st_ino == inode
    assert not any(name.startswith(".") for name in entries(out))  # no staging, no .old debris
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())
    assert "chunk_step.int8.onnx" not in entries(out)
    ids = torch.randint(2, 60, (2, 9))
    with torch.no_grad():
        expected = model(ids).logits.numpy()
    assert abs(OnnxClassifier(out)(ids.numpy()) - expected).max() < 1e-4


def test_an_export_killed_midway_leaves_a_folder_the_next_export_accepts(model, tmp_path, monkeypatch):
    out = tmp_path / "out"
    export_onnx(model, out)
    real_replace, calls = os.replace, []

    def dies_after_two(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as a kill would stop it between two files
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        export_onnx(model, out, int8=True)
    monkeypatch.setattr(os, "replace", real_replace)
    assert not any(name.startswith(".") for name in entries(out))  # the staging folder was removed
    stale = out / f"{onnx_module.STAGING_PREFIX}x"  # as SIGKILL would leave it
    stale.mkdir()
    (stale / "head.onnx").write_bytes(b"partial")
    export_onnx(model, out, int8=True)
    assert "chunk_step.int8.onnx" in entries(out) and not stale.exists()
    OnnxClassifier(out, int8=True)


# ----------------------------------------------------------------------------------------------------------------
# Weak case: a forged manifest may not make an export delete the user's files
# ----------------------------------------------------------------------------------------------------------------


def forge(folder: Path, files: list[str], **fields) -> None:
    manifest = {"format": 1, "opset": 17, "int8": False, "files": files, **fields}
    (folder / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("layout", ["user-files", "subfolder", "symlink", "garbage-manifest", "path-in-manifest"])
def test_a_forged_manifest_cannot_make_the_export_delete_anything(model, tmp_path, layout):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.docx").write_bytes(b"years of work")
    if layout == "user-files":
        forge(out, ["thesis.docx", MANIFEST])
    elif layout == "subfolder":
        (out / "thesis.docx").unlink()
        (out / "data").mkdir()
        (out / "data" / "corpus.txt").write_text("keep")
        forge(out, ["data", MANIFEST])
    elif layout == "symlink":
        (out / "thesis.docx").unlink()
        (out / "head.onnx").symlink_to(tmp_path / "elsewhere.txt")
        (tmp_path / "elsewhere.txt").write_text("keep")
        forge(out, ["head.onnx", MANIFEST])
    elif layout == "garbage-manifest":
        (out / MANIFEST).write_text("{not json")
    else:
        forge(out, ["../outside.txt", "thesis.docx", MANIFEST])
    before, around = snapshot(out), snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"out_dir \(--out\)|not an export manifest|not a readable export manifest"):
        export_onnx(model, out)
    assert snapshot(out) == before and snapshot(tmp_path) == around


def test_a_previous_export_is_still_replaced(model, tmp_path):
    out = tmp_path / "out"
    export_onnx(model, out, int8=True)
    export_onnx(model, out)
    manifest = json.loads((out / MANIFEST).read_text())
    assert set(manifest["files"]) == entries(out) and manifest["int8"] is False


# ----------------------------------------------------------------------------------------------------------------
# Bug 5: opsets outside the supported range; weak case: a language model folder
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("opset", [5, 6, 0, -3, 99, 24, True, "17", 17.0])
def test_opsets_outside_the_supported_range_are_refused_up_front(model_dir, tmp_path, capsys, opset):
    with pytest.raises(ValueError, match=r"opset \(--opset\) must be an int from 7 to \d+"):
        export_onnx(model_dir, tmp_path / "out", opset=opset)
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []
    if isinstance(opset, int) and not isinstance(opset, bool):
        assert main(["export-onnx", str(model_dir), "--out", str(tmp_path / "out"), "--opset", str(opset)]) == 2
        err = capsys.readouterr().err
        assert "opset" in err and "Traceback" not in err


@pytest.mark.parametrize("opset", [supported_opsets().start, supported_opsets().stop - 1])
def test_the_ends_of_the_range_export_graphs_that_run(model, tmp_path, opset):
    export_onnx(model, tmp_path / "out", int8=True, opset=opset)
    ids = torch.randint(2, 60, (2, 9))
    for int8 in (False, True):
        assert OnnxClassifier(tmp_path / "out", int8=int8)(ids.numpy()).shape == (2, 3)


def test_a_graph_that_does_not_load_is_not_exported(model, tmp_path, monkeypatch):
    real_write = onnx_module._write_export

    def broken(model, tokenizer, folder, int8, opset):
        files = real_write(model, tokenizer, folder, int8, opset)
        (folder / "head.onnx").write_bytes(b"not a graph")
        return files

    monkeypatch.setattr(onnx_module, "_write_export", broken)
    with pytest.raises(ValueError, match=r"the exported head\.onnx \(opset 17\) does not load"):
        export_onnx(model, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_a_language_model_folder_is_not_exported_with_a_random_head(tmp_path, capsys):
    AwdLstmForCausalLM(small_config()).save_pretrained(tmp_path / "lm")
    assert main(["export-onnx", str(tmp_path / "lm"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "holds no classifier head" in err and "language model" in err
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------------------------------
# Weak case: an export whose config.json was altered
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture
def export(model, tmp_path) -> Path:
    export_onnx(model, tmp_path / "out")
    return tmp_path / "out"


def edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(id2label={"0": "neg", "1": "pos"}), r"names 2 classes .* head\.onnx outputs 3"),
        (dict(id2label={str(i): f"c{i}" for i in range(5)}), r"names 5 classes .* outputs 3"),
        (dict(id2label={"0": "a", "1": "b", "7": "c"}), r"id2label must have the class ids 0\.\.2"),
        (dict(num_hidden_layers=2), r"describes 2 layers"),
        (dict(hidden_size=13), r"gives h_0 size 13"),
        (dict(backwards="false"), r"backwards must be true or false"),
    ],
    ids=["fewer-labels", "more-labels", "label-gap", "layers", "hidden", "backwards-string"],
)
def test_an_altered_export_config_is_refused(export, changes, match):
    edit_config(export, **changes)
    with pytest.raises((ValueError, TypeError), match=match):
        OnnxClassifier(export)


@pytest.mark.parametrize("damage", ["graph-missing", "graph-garbage", "manifest-garbage", "manifest-int8-string"])
def test_a_damaged_export_names_the_file(export, damage):
    if damage == "graph-missing":
        (export / "head.onnx").unlink()
        error, match = FileNotFoundError, "lacks head.onnx"
    elif damage == "graph-garbage":
        (export / "chunk_step.onnx").write_bytes(b"\x00" * 100)
        error, match = ValueError, r"chunk_step\.onnx is not a graph ONNX Runtime can load"
    elif damage == "manifest-garbage":
        (export / MANIFEST).write_text("[1, 2")
        error, match = ValueError, "not a readable export manifest"
    else:
        forge(export, ["head.onnx"], int8="yes")
        error, match = ValueError, "not an export manifest of hf_bpt3c"
    with pytest.raises(error, match=match):
        OnnxClassifier(export, int8=damage.startswith("manifest"))


def test_cleanup_removes_only_what_the_export_made(model, tmp_path):
    out = tmp_path / "out"
    export_onnx(model, out)
    shutil.copy(out / "config.json", tmp_path / "config.copy")
    export_onnx(model, out)
    assert (tmp_path / "config.copy").is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["config.copy", "out"]
