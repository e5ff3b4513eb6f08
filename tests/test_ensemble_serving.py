"""Serving the forward + backward ensemble (`AwdLstmEnsembleForSequenceClassification`) as one model: int8
(`quantize_for_cpu`), ONNX export (`export_onnx`, `hf-bpt3c export-onnx`) and `OnnxClassifier`, checked against the
PyTorch ensemble for single-label, multi-label and regression ensembles."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from conftest import small_config  # noqa: E402
from test_bpt3c import pad_batch, random_docs  # noqa: E402
from test_pipelines import TEXTS  # noqa: E402
from transformers import pipeline  # noqa: E402

import hf_bpt3c  # noqa: E402
from hf_bpt3c import (  # noqa: E402
    AwdLstmEnsembleForSequenceClassification,
    AwdLstmForSequenceClassification,
    AwdLstmTokenizer,
)
from hf_bpt3c.cli import main  # noqa: E402
from hf_bpt3c.models.awd_lstm.modeling_awd_lstm_ensemble import mean_prediction_logits  # noqa: E402
from hf_bpt3c.serving import onnx as onnx_module  # noqa: E402
from hf_bpt3c.serving.onnx import MANIFEST, OnnxClassifier, export_onnx  # noqa: E402
from hf_bpt3c.serving.quantization import Int8Linear, Int8LstmLayer  # noqa: E402

MAX_LEN = 16
LENGTHS = [1, 2, 7, 8, 9, 16, 17, 33, 50, 5 * MAX_LEN]  # around bptt 8 and max_len 16, up to 5*max_len
LABELS = {0: "neg", 1: "mixed", 2: "pos"}
PROBLEM_TYPES = {
    "single": "single_label_classification",
    "multi": "multi_label_classification",
    "regression": "regression",
}
ATOL = 1e-4
MAX_DIFFS: dict[str, float] = {}  # the largest differences seen, printed at the end of the module (pytest -s)


def record(name: str, diff: float) -> float:
    MAX_DIFFS[name] = max(MAX_DIFFS.get(name, 0.0), float(diff))
    return float(diff)


@pytest.fixture(scope="module", autouse=True)
def _report_max_diffs():
    yield
    print("\nmax differences seen:", json.dumps({k: f"{v:.2e}" for k, v in sorted(MAX_DIFFS.items())}))


def member(vocab_size: int, seed: int, problem_type: str, backwards: bool = False) -> AwdLstmForSequenceClassification:
    """emb 16, hidden 24, 3 layers, bptt 8, max_len 16, with non-trivial BatchNorm statistics and logits of order 1."""
    torch.manual_seed(seed)
    labels = {0: "score"} if problem_type == "regression" else LABELS
    config = small_config(
        vocab_size=vocab_size,
        embedding_size=16,
        hidden_size=24,
        bptt=8,
        max_len=MAX_LEN,
        num_labels=len(labels),
        id2label=labels,
        problem_type=problem_type,
        backwards=backwards,
    )
    model = AwdLstmForSequenceClassification(config)
    with torch.no_grad():
        for block in model.classifier.blocks:
            block.batch_norm.running_mean.normal_(0, 0.3)
            block.batch_norm.running_var.uniform_(0.2, 2.0)
            block.batch_norm.weight.uniform_(0.5, 1.5)
            block.batch_norm.bias.normal_(0, 0.1)
        model.classifier.blocks[-1].linear.weight.mul_(5)
    return model.eval()


def make_ensemble(vocab_size: int, problem_type: str, seed: int = 0) -> AwdLstmEnsembleForSequenceClassification:
    """A forward and a backward member."""
    members = [member(vocab_size, seed, problem_type), member(vocab_size, seed + 1, problem_type, backwards=True)]
    return AwdLstmEnsembleForSequenceClassification.from_members(members)


def torch_logits(model, ids: torch.Tensor, mask: torch.Tensor | None = None) -> np.ndarray:
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits.numpy()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@dataclass
class Exported:
    ensemble: AwdLstmEnsembleForSequenceClassification
    folder: Path  # the ensemble's save_pretrained folder, with the tokenizer
    out: Path  # its ONNX export
    runner: OnnxClassifier


@pytest.fixture(scope="module")
def tokenizer() -> AwdLstmTokenizer:
    return AwdLstmTokenizer.from_texts(TEXTS * 3, min_freq=1)


@pytest.fixture(scope="module")
def exports(tokenizer, tmp_path_factory):
    """`exports(kind)`: the `kind` ensemble saved with the tokenizer and exported (once per module): the single-label
    one from its folder through the CLI with `--int8`, the others from the model object (with the tokenizer)."""
    done: dict[str, Exported] = {}

    def get(kind: str) -> Exported:
        if kind not in done:
            ensemble = make_ensemble(len(tokenizer), PROBLEM_TYPES[kind], seed=10)
            root = tmp_path_factory.mktemp(f"ensemble-{kind}")
            folder, out = root / "model", root / "onnx"
            ensemble.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            if kind == "single":
                assert main(["export-onnx", str(folder), "--out", str(out), "--int8"]) == 0
            else:
                assert export_onnx(ensemble, out, tokenizer=tokenizer) == out
            done[kind] = Exported(ensemble, folder, out, OnnxClassifier(out, intra_op_num_threads=1))
        return done[kind]

    return get


@pytest.fixture(params=list(PROBLEM_TYPES))
def exported(request, exports) -> Exported:
    return exports(request.param)


# ----------------------------------------------------------------------------------------------------------------
# ONNX: the ensemble's logits, predictions, int8, layout
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("side", ["right", "left"])
def test_onnx_logits_equal_the_pytorch_ensemble(exported, side):
    config = exported.ensemble.config
    docs = random_docs(LENGTHS, config.vocab_size, seed=1)
    ids, mask = pad_batch(docs, side, pad_id=config.pad_token_id)
    got = exported.runner(ids.numpy(), mask.numpy())
    expected = torch_logits(exported.ensemble, ids, mask)
    assert got.dtype == np.float32 and got.shape == (len(docs), config.num_labels)
    record(f"onnx-vs-torch {config.problem_type}", np.abs(got - expected).max())
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)
    # the rule is the PyTorch ensemble's: the members' ONNX logits through `mean_prediction_logits`
    members = [torch.from_numpy(m(ids.numpy(), mask.numpy())) for m in exported.runner.members]
    np.testing.assert_array_equal(got, mean_prediction_logits(members, config.problem_type).numpy())


def test_onnx_logits_without_a_mask_and_one_document(exported):
    config = exported.ensemble.config
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23]])
    ids = ids.clamp(max=config.vocab_size - 1)
    np.testing.assert_allclose(exported.runner(ids.numpy()), torch_logits(exported.ensemble, ids), rtol=0, atol=ATOL)


def test_predict_equals_the_pipeline_of_the_ensemble_folder(exported):
    classify = pipeline("text-classification", model=str(exported.folder), top_k=None)
    expected = classify(TEXTS)
    got = exported.runner.predict(TEXTS, top_k=None)
    assert len(got) == len(expected) == len(TEXTS)
    for ours, theirs in zip(got, expected):
        ours, theirs = ({d["label"]: d["score"] for d in row} for row in (ours, theirs))
        assert ours.keys() == theirs.keys()
        record(
            f"predict-vs-pipeline {exported.ensemble.config.problem_type}", max(abs(ours[k] - theirs[k]) for k in ours)
        )
        assert ours == pytest.approx(theirs, abs=1e-4)
    best = exported.runner.predict(TEXTS)
    assert [b["label"] for b in best] == [max(row, key=lambda d: d["score"])["label"] for row in expected]


def test_export_layout_and_members(exported):
    out = exported.out
    manifest = json.loads((out / MANIFEST).read_text())
    problem_type = exported.ensemble.config.problem_type
    assert manifest["ensemble"] == {"members": ["member-0", "member-1"], "problem_type": problem_type}
    assert manifest["int8"] is (problem_type == "single_label_classification")
    top = {p.name for p in out.iterdir()}
    assert {"config.json", "tokenizer_config.json", MANIFEST, "member-0", "member-1"} <= top
    assert not any(name.endswith(".onnx") for name in top)
    assert set(manifest["files"]) == {p.name for p in out.iterdir() if p.is_file()}
    assert json.loads((out / "config.json").read_text())["model_type"] == "awd_lstm_ensemble"
    for i, name in enumerate(manifest["ensemble"]["members"]):
        folder = out / name
        files = {p.name for p in folder.iterdir()}
        assert {"chunk_step.onnx", "head.onnx", "config.json", MANIFEST} <= files
        assert ("chunk_step.int8.onnx" in files) is manifest["int8"]
        assert set(json.loads((folder / MANIFEST).read_text())["files"]) == files
        assert json.loads((folder / "config.json").read_text())["backwards"] is (i == 1)
        # a member folder is an export of its own: it runs alone, with the member's logits
        ids, mask = pad_batch(random_docs([3, 20, 41], exported.ensemble.config.vocab_size, seed=5), "left")
        np.testing.assert_allclose(
            OnnxClassifier(folder)(ids.numpy(), mask.numpy()),
            torch_logits(exported.ensemble.members[i], ids, mask),
            rtol=0,
            atol=ATOL,
        )
    with pytest.raises(TypeError, match="ensemble's export"):
        exported.runner.encode_documents(torch.tensor([[3, 4]]), torch.tensor([2]))


def test_int8_export_agrees_with_pytorch(exports):
    exported = exports("single")  # exported with --int8
    for name in ("member-0", "member-1"):
        ops = [node.op_type for node in onnx.load(exported.out / name / "chunk_step.int8.onnx").graph.node]
        assert ops.count("DynamicQuantizeLSTM") == 3 and "LSTM" not in ops
    config = exported.ensemble.config
    docs = random_docs(LENGTHS * 3, config.vocab_size, seed=4)
    ids, mask = pad_batch(docs, "right")
    expected = torch_logits(exported.ensemble, ids, mask)
    int8 = OnnxClassifier(exported.out, int8=True, intra_op_num_threads=1)(ids.numpy(), mask.numpy())
    probs = np.exp(expected)  # the single-label ensemble's logits are log mean probabilities
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    diff = record("onnx-int8-vs-torch logits", np.abs(int8 - expected).max())
    assert diff <= 0.05 * np.abs(expected).max()
    record("onnx-int8-vs-torch probabilities", np.abs(np.exp(int8) - probs).max())
    assert np.abs(np.exp(int8) - probs).max() < 0.02
    top2 = np.sort(probs, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 0.05  # documents whose decision is not a near tie
    assert clear.sum() >= len(docs) // 2
    assert (int8.argmax(1)[clear] == expected.argmax(1)[clear]).all()


def test_cli_export_of_an_ensemble_folder_and_refusals(exports, tmp_path, capsys):
    exported = exports("regression")
    out = tmp_path / "cli"
    assert main(["export-onnx", str(exported.folder), "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    assert (out / "member-1" / "head.onnx").is_file() and (out / "tokenizer_config.json").is_file()
    ids = torch.randint(2, exported.ensemble.config.vocab_size, (3, 30))
    np.testing.assert_allclose(OnnxClassifier(out)(ids.numpy()), torch_logits(exported.ensemble, ids), atol=ATOL)
    before = snapshot(exported.folder)
    assert main(["export-onnx", str(exported.folder), "--out", str(exported.folder)]) == 2  # not an export
    assert "--out" in capsys.readouterr().err and snapshot(exported.folder) == before


# ----------------------------------------------------------------------------------------------------------------
# ONNX: re-exports, refusals, altered exports (the protections of one classifier's export)
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_ensemble() -> AwdLstmEnsembleForSequenceClassification:
    torch.manual_seed(0)
    members = [
        AwdLstmForSequenceClassification(small_config(id2label=LABELS)).eval(),
        AwdLstmForSequenceClassification(small_config(id2label=LABELS, backwards=True)).eval(),
    ]
    return AwdLstmEnsembleForSequenceClassification.from_members(members)


@pytest.fixture(scope="module")
def single(small_ensemble) -> AwdLstmForSequenceClassification:
    return small_ensemble.members[0]


def check_runs(out: Path, model, int8: bool = False) -> None:
    ids = torch.randint(2, 60, (2, 13))
    got = OnnxClassifier(out, int8=int8)(ids.numpy())
    tolerance = 0.05 * np.abs(torch_logits(model, ids)).max() if int8 else ATOL
    np.testing.assert_allclose(got, torch_logits(model, ids), rtol=0, atol=tolerance)


def test_reexports_replace_an_ensemble_export_and_a_single_export(small_ensemble, single, tmp_path):
    out = tmp_path / "out"
    export_onnx(small_ensemble, out, int8=True)
    check_runs(out, small_ensemble, int8=True)
    export_onnx(small_ensemble, out)  # the int8 graphs of every member go
    assert not list(out.rglob("*.int8.onnx"))
    check_runs(out, small_ensemble)
    export_onnx(single, out)  # one classifier over an ensemble's export: the member folders go
    assert not (out / "member-0").exists() and (out / "head.onnx").is_file()
    assert "ensemble" not in json.loads((out / MANIFEST).read_text())
    check_runs(out, single)
    export_onnx(small_ensemble, out, int8=True)  # and back: the top graphs go
    assert not (out / "head.onnx").exists() and (out / "member-1" / "head.int8.onnx").is_file()
    manifest = json.loads((out / MANIFEST).read_text())
    assert set(manifest["files"]) == {p.name for p in out.iterdir() if p.is_file()}
    assert not any(p.name.startswith(".") for p in out.rglob("*")) and sorted(os.listdir(tmp_path)) == ["out"]
    check_runs(out, small_ensemble, int8=True)


def test_an_existing_out_folder_is_updated_in_place(small_ensemble, tmp_path):
    out = tmp_path / "volume"
    out.mkdir()
    inode = out.stat().st_ino
    export_onnx(small_ensemble, out)
    members = {name: (out / name).stat().st_ino for name in ("member-0", "member-1")}
    export_onnx(small_ensemble, out, int8=True)
    assert out.stat().st_ino == inode
    assert {name: (out / name).stat().st_ino for name in members} == members  # updated file by file too
    check_runs(out, small_ensemble, int8=True)


@pytest.mark.parametrize(
    ("transition", "dies_at"),
    # ensemble -> ensemble with int8 (21 renames: top manifest listing both, 3 top files, member-0's manifest
    # listing both, its 6 files, its final manifest, the same for member-1, the final top manifest); ensemble ->
    # one classifier (6: the member folders are removed before the last); one classifier -> ensemble (7: 5 and 6
    # move the member folders in)
    [("int8", 1), ("int8", 3), ("int8", 5), ("int8", 9), ("int8", 12), ("int8", 20), ("int8", 21)]
    + [("to-single", 1), ("to-single", 3), ("to-single", 6), ("to-ensemble", 5), ("to-ensemble", 6)],
)
def test_a_killed_reexport_leaves_a_folder_the_next_export_accepts(
    small_ensemble, single, tmp_path, monkeypatch, transition, dies_at
):
    """An export replacing a previous one killed at its rename `dies_at`: the staging folder is gone, and the next
    export is accepted and works."""
    before, after, int8 = {
        "int8": (small_ensemble, small_ensemble, True),
        "to-single": (small_ensemble, single, False),
        "to-ensemble": (single, small_ensemble, False),
    }[transition]
    out = tmp_path / "out"
    export_onnx(before, out)
    real_replace, calls = os.replace, []

    def dies(src, dst):
        calls.append(dst)
        if len(calls) == dies_at:
            raise KeyboardInterrupt  # as a kill would stop it between two renames
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dies)
    with pytest.raises(KeyboardInterrupt):
        export_onnx(after, out, int8=int8)
    monkeypatch.setattr(os, "replace", real_replace)
    assert not any(p.name.startswith(".") for p in out.rglob("*"))  # the staging folder was removed
    export_onnx(after, out, int8=int8)
    check_runs(out, after, int8=int8)
    assert set(json.loads((out / MANIFEST).read_text())["files"]) == {p.name for p in out.iterdir() if p.is_file()}


@pytest.mark.parametrize("kill", ["unlink-1", "unlink-4", "rmdir"])
def test_a_reexport_killed_while_removing_a_member_folder(small_ensemble, single, tmp_path, monkeypatch, kill):
    """One classifier's export replacing an ensemble's, killed while it empties a member folder (its files, its
    manifest last, then the folder): the next export is accepted, either kind."""
    out = tmp_path / "out"
    export_onnx(small_ensemble, out)
    real_unlink, real_rmdir, calls = Path.unlink, Path.rmdir, []

    def unlink(path, *args, **kwargs):
        if path.parent.name.startswith("member-"):
            calls.append(path)
            if kill == f"unlink-{len(calls)}":
                raise KeyboardInterrupt
        return real_unlink(path, *args, **kwargs)

    def rmdir(path):
        if kill == "rmdir" and path.name.startswith("member-"):
            raise KeyboardInterrupt
        return real_rmdir(path)

    monkeypatch.setattr(Path, "unlink", unlink)
    monkeypatch.setattr(Path, "rmdir", rmdir)
    with pytest.raises(KeyboardInterrupt):
        export_onnx(single, out)
    monkeypatch.setattr(Path, "unlink", real_unlink)
    monkeypatch.setattr(Path, "rmdir", real_rmdir)
    if kill == "rmdir":
        assert (out / "member-0").is_dir() and not list((out / "member-0").iterdir())
    export_onnx(small_ensemble, out)
    check_runs(out, small_ensemble)
    export_onnx(single, out)
    assert not (out / "member-0").exists()
    check_runs(out, single)


def test_a_stale_staging_folder_with_member_folders_is_removed(small_ensemble, tmp_path):
    out = tmp_path / "out"
    export_onnx(small_ensemble, out)
    stale = out / f"{onnx_module.STAGING_PREFIX}x"  # as SIGKILL would leave it
    (stale / "member-0").mkdir(parents=True)
    (stale / "member-0" / "head.onnx").write_bytes(b"partial")
    (stale / "config.json").write_text("{}")
    export_onnx(small_ensemble, out)
    assert not stale.exists()


def forge(folder: Path, files: list[str] | None = None, members: list[str] | None = None) -> None:
    """Rewrite `folder`'s manifest (or write one): its files list and ensemble members replaced where given."""
    path = folder / MANIFEST
    manifest = json.loads(path.read_text()) if path.is_file() else {"format": 1, "opset": 17, "int8": False}
    manifest["files"] = manifest.get("files", []) if files is None else files
    if members is not None:
        manifest["ensemble"] = {"members": members, "problem_type": "single_label_classification"}
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "layout",
    [
        "user-files-in-member",
        "unlisted-member",
        "member-not-listed-in-manifest",
        "symlinked-member",
        "nested-member",
        "member-without-manifest",
        "bad-member-name",
        "member-as-file",
    ],
)
def test_a_forged_ensemble_manifest_cannot_make_the_export_delete_anything(small_ensemble, tmp_path, layout):
    out = tmp_path / "mine"
    export_onnx(small_ensemble, out)
    member_files = json.loads((out / "member-0" / MANIFEST).read_text())["files"]
    if layout == "user-files-in-member":
        (out / "member-0" / "thesis.docx").write_bytes(b"years of work")
        forge(out / "member-0", [*member_files, "thesis.docx"])
    elif layout == "unlisted-member":
        forge(out, members=["member-0"])
    elif layout == "member-not-listed-in-manifest":
        (out / "member-0" / "notes.onnx").write_bytes(b"my own graph")
    elif layout == "symlinked-member":
        (tmp_path / "elsewhere").mkdir()
        for name in member_files:
            (tmp_path / "elsewhere" / name).write_bytes((out / "member-0" / name).read_bytes())
        (out / "member-2").symlink_to(tmp_path / "elsewhere")
        forge(out, members=["member-0", "member-1", "member-2"])
    elif layout == "nested-member":
        (out / "member-0" / "member-0").mkdir()
        (out / "member-0" / "member-0" / "config.json").write_text("keep")
        manifest = json.loads((out / "member-0" / MANIFEST).read_text())
        manifest["ensemble"] = {"members": ["member-0"], "problem_type": "regression"}
        (out / "member-0" / MANIFEST).write_text(json.dumps(manifest))
    elif layout == "member-without-manifest":
        (out / "member-1" / MANIFEST).unlink()
    elif layout == "bad-member-name":
        (out / "data").mkdir()
        (out / "data" / "config.json").write_text("keep")
        forge(out, members=["data"])
    else:
        (out / "member-7").write_text("keep")
        forge(out, members=["member-0", "member-1", "member-7"])
    before, around = snapshot(out), snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"out_dir \(--out\)|not an export manifest"):
        export_onnx(small_ensemble, out)
    assert snapshot(out) == before and snapshot(tmp_path) == around


@pytest.mark.parametrize(
    "damage, error, match",
    [
        ("problem-type", ValueError, "gives the problem type"),
        ("member-missing", FileNotFoundError, "lacks its member folder member-1"),
        ("member-labels", ValueError, r"member-0/config\.json has the labels"),
        ("members-count", ValueError, "describes 2 members but .* lists 1"),
        ("member-name", ValueError, "not an export manifest"),
    ],
)
def test_an_altered_ensemble_export_is_refused(small_ensemble, tmp_path, damage, error, match):
    out = tmp_path / "out"
    export_onnx(small_ensemble, out)
    manifest = json.loads((out / MANIFEST).read_text())
    if damage == "problem-type":
        manifest["ensemble"]["problem_type"] = "regression"
    elif damage == "member-missing":
        (out / "member-1").rename(tmp_path / "gone")
    elif damage == "member-labels":
        config = json.loads((out / "member-0" / "config.json").read_text())
        config["id2label"] = {"0": "a", "1": "b", "2": "c"}
        (out / "member-0" / "config.json").write_text(json.dumps(config))
    elif damage == "members-count":
        manifest["ensemble"]["members"] = ["member-0"]
    else:
        manifest["ensemble"]["members"] = ["../member-0", "member-1"]
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(error, match=match):
        OnnxClassifier(out)


def test_int8_runner_of_an_export_without_int8_and_bad_inputs(small_ensemble, tmp_path):
    out = export_onnx(small_ensemble, tmp_path / "out")
    with pytest.raises(ValueError, match="exported without int8"):
        OnnxClassifier(out, int8=True)
    runner = OnnxClassifier(out)
    with pytest.raises(ValueError, match="vocab_size"):
        runner(np.array([[3, 10_000]]))
    with pytest.raises(TypeError, match="integer array"):
        runner(np.array([[3.0, 4.0]]))
    with pytest.raises(ValueError, match="no tokenizer"):
        runner.predict(["a text"])


def test_an_ensemble_folder_whose_member_has_no_head_is_refused(small_ensemble, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "ensemble"
    small_ensemble.save_pretrained(folder)
    weights = load_file(folder / "model.safetensors")
    save_file(
        {k: v for k, v in weights.items() if not k.startswith("members.1.classifier.")}, folder / "model.safetensors"
    )
    assert main(["export-onnx", str(folder), "--out", str(tmp_path / "out")]) == 2
    assert "member 1 has no classifier head" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------------------------------
# int8 in PyTorch: quantize_for_cpu(ensemble)
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(PROBLEM_TYPES))
def test_quantized_ensemble_close_to_float_with_the_same_rule(tokenizer, kind):
    ensemble = make_ensemble(len(tokenizer), PROBLEM_TYPES[kind], seed=20)
    quantized = hf_bpt3c.quantize_for_cpu(ensemble)
    assert type(quantized) is AwdLstmEnsembleForSequenceClassification
    docs = random_docs(LENGTHS * 3, ensemble.config.vocab_size, seed=1)
    for side in ("left", "right"):
        ids, mask = pad_batch(docs, side)
        expected = torch_logits(ensemble, ids, mask)
        with torch.no_grad():
            logits = quantized(ids, attention_mask=mask).logits
            members = [m(ids, attention_mask=mask).logits for m in quantized.members]
        # the mean rule is unchanged: the ensemble's int8 logits are its int8 members' through the same rule
        torch.testing.assert_close(logits, mean_prediction_logits(members, ensemble.config.problem_type))
        logits = logits.numpy()
        scale = np.abs(expected).max()
        diff = record(
            f"quantize_for_cpu-vs-float {kind} (relative to the logit scale)", np.abs(logits - expected).max() / scale
        )
        assert diff < 0.05
        if kind == "single":
            probs = np.exp(expected)
            top2 = np.sort(probs, axis=1)[:, -2:]
            clear = (top2[:, 1] - top2[:, 0]) > 0.05
            assert clear.sum() >= len(docs) // 2
            assert (logits.argmax(1)[clear] == expected.argmax(1)[clear]).all()


def test_quantize_for_cpu_of_an_ensemble_keeps_the_guarantees(small_ensemble, tmp_path):
    ensemble = AwdLstmEnsembleForSequenceClassification.from_members(list(small_ensemble.members)).train()
    state = {k: v.clone() for k, v in ensemble.state_dict().items()}
    quantized = hf_bpt3c.quantize_for_cpu(ensemble)
    # the original untouched
    assert ensemble.training and all(torch.equal(state[k], v) for k, v in ensemble.state_dict().items())
    assert not any(isinstance(m, (Int8LstmLayer, Int8Linear)) for m in ensemble.modules())
    # every member quantized, eval only
    assert not quantized.training
    for m in quantized.members:
        assert all(isinstance(layer, Int8LstmLayer) for layer in m.awd_lstm.layers)
        assert all(isinstance(block.linear, Int8Linear) for block in m.classifier.blocks)
    ids = torch.randint(2, 60, (2, 12))
    with torch.no_grad():
        before = quantized(ids).logits
    with pytest.raises(ValueError, match="inference only"):
        quantized.train()(ids)
    quantized.eval()
    # conversions refused, leaving it as it was
    for convert in (lambda m: m.half(), lambda m: m.bfloat16(), lambda m: m.to(torch.float64), lambda m: m.double()):
        with pytest.raises(TypeError, match="int8 model"):
            convert(quantized)
        with pytest.raises(TypeError, match="int8 model"):
            convert(quantized.members[1])
    assert all(p.dtype == torch.float32 for p in quantized.parameters())
    with torch.no_grad():
        assert torch.equal(quantized(ids).logits, before)
    # quantizing twice refused
    with pytest.raises(ValueError, match="already quantized"):
        hf_bpt3c.quantize_for_cpu(quantized)
    # save_pretrained writes the float weights: loading gives the float ensemble back
    quantized.save_pretrained(tmp_path / "saved")
    loaded = AwdLstmEnsembleForSequenceClassification.from_pretrained(tmp_path / "saved").eval()
    ensemble.eval()
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, ensemble(ids).logits)
    assert not any(isinstance(m, Int8LstmLayer) for m in loaded.modules())
