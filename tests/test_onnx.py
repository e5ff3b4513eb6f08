"""ONNX export (`hf-bpt3c export-onnx`, `export_onnx`) and `OnnxClassifier`: the same logits as PyTorch's BPT3C."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from conftest import small_config  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_bpt3c import pad_batch, random_docs  # noqa: E402
from test_pipelines import TEXTS  # noqa: E402

from hf_bpt3c import AwdLstmForSequenceClassification, AwdLstmTokenizer  # noqa: E402
from hf_bpt3c.cli import main  # noqa: E402
from hf_bpt3c.serving.onnx import OnnxClassifier, export_onnx  # noqa: E402

MAX_LEN = 16
LENGTHS = [1, 2, 7, 8, 9, 16, 17, 33, 50, 5 * MAX_LEN]  # around bptt 8 and max_len 16, up to 5*max_len


def make_classifier(vocab_size: int, seed: int = 0, **overrides) -> AwdLstmForSequenceClassification:
    """A small classifier (emb 16, hidden 24, 3 layers, bptt 8, max_len 16) with non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    sizes = dict(embedding_size=16, hidden_size=24, bptt=8, max_len=MAX_LEN, id2label={0: "neg", 1: "mixed", 2: "pos"})
    model = AwdLstmForSequenceClassification(small_config(vocab_size=vocab_size, **sizes, **overrides))
    with torch.no_grad():
        for block in model.classifier.blocks:
            block.batch_norm.running_mean.normal_(0, 0.3)
            block.batch_norm.running_var.uniform_(0.2, 2.0)
            block.batch_norm.weight.uniform_(0.5, 1.5)
            block.batch_norm.bias.normal_(0, 0.1)
        model.classifier.blocks[-1].linear.weight.mul_(5)  # logits of order 1
    return model.eval()


@pytest.fixture(scope="module")
def tokenizer() -> AwdLstmTokenizer:
    return AwdLstmTokenizer.from_texts(TEXTS * 3, min_freq=1)


@pytest.fixture(scope="module")
def model(tokenizer) -> AwdLstmForSequenceClassification:
    return make_classifier(len(tokenizer))


@pytest.fixture(scope="module")
def exported(model, tokenizer, tmp_path_factory):
    """The model saved with its tokenizer, exported through the CLI with `--int8`."""
    model_dir, out = tmp_path_factory.mktemp("model"), tmp_path_factory.mktemp("onnx") / "export"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    assert main(["export-onnx", str(model_dir), "--out", str(out), "--int8"]) == 0
    return model_dir, out


@pytest.fixture(scope="module")
def runner(exported) -> OnnxClassifier:
    return OnnxClassifier(exported[1], intra_op_num_threads=1)


def torch_logits(model, ids: torch.Tensor, mask: torch.Tensor | None) -> np.ndarray:
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits.numpy()


def assert_matches_torch(runner, model, ids: torch.Tensor, mask: torch.Tensor | None, atol: float = 1e-4) -> None:
    got = runner(ids.numpy(), None if mask is None else mask.numpy())
    assert got.dtype == np.float32 and got.shape == (ids.size(0), model.config.num_labels)
    np.testing.assert_allclose(got, torch_logits(model, ids, mask), rtol=0, atol=atol)


@pytest.mark.parametrize("layout", ["right", "left", "pad_ids", "unpadded"])
def test_logits_equal_pytorch(runner, model, layout):
    docs = random_docs(LENGTHS if layout != "unpadded" else [37] * 4, model.config.vocab_size, seed=1)
    ids, mask = pad_batch(docs, "left" if layout == "left" else "right", pad_id=model.config.pad_token_id)
    assert_matches_torch(runner, model, ids, None if layout in ("pad_ids", "unpadded") else mask)


def test_backwards_model_and_no_tokenizer(tmp_path):
    model = make_classifier(50, seed=3, backwards=True)
    runner = OnnxClassifier(export_onnx(model, tmp_path / "bwd"))
    docs = random_docs(LENGTHS, 50, seed=2)
    for side in ("left", "right"):
        assert_matches_torch(runner, model, *pad_batch(docs, side))
    with pytest.raises(ValueError, match="no tokenizer"):
        runner.predict(["a text"])


def test_document_pooling_is_exported(tmp_path):
    """classifier_pooling="document" travels in the export's config and the runner pools every token."""
    model = make_classifier(50, seed=4, classifier_pooling="document")
    runner = OnnxClassifier(export_onnx(model, tmp_path / "document"))
    assert runner.config.classifier_pooling == "document"
    docs = random_docs(LENGTHS, 50, seed=5)
    for side in ("left", "right"):
        assert_matches_torch(runner, model, *pad_batch(docs, side))
    window = make_classifier(50, seed=4)  # the same weights, fastai's window: differs once a document is longer
    ids, mask = pad_batch(docs, "right")
    changed = np.abs(torch_logits(window, ids, mask) - runner(ids.numpy(), mask.numpy())).max(axis=1) > 1e-3
    assert changed.tolist() == [n > MAX_LEN for n in LENGTHS]


@settings(max_examples=15, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 5 * MAX_LEN), min_size=1, max_size=5),
    side=st.sampled_from(["left", "right"]),
    seed=st.integers(0, 2**16),
)
def test_a_documents_logits_do_not_depend_on_its_batch(runner, model, lengths, side, seed):
    docs = random_docs(lengths, model.config.vocab_size, seed)
    ids, mask = pad_batch(docs, side)
    batch_logits = runner(ids.numpy(), mask.numpy())
    for row, doc in enumerate(docs):
        np.testing.assert_allclose(batch_logits[row], runner(doc.numpy()[None])[0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(batch_logits, torch_logits(model, ids, mask), rtol=0, atol=1e-4)


def test_int8_graphs_are_quantized_and_close(runner, model, exported):
    out = exported[1]
    ops = [node.op_type for node in onnx.load(out / "chunk_step.int8.onnx").graph.node]
    assert ops.count("DynamicQuantizeLSTM") == 3 and "LSTM" not in ops
    assert [node.op_type for node in onnx.load(out / "chunk_step.onnx").graph.node].count("LSTM") == 3
    docs = random_docs(LENGTHS * 3, model.config.vocab_size, seed=4)
    ids, mask = (t.numpy() for t in pad_batch(docs, "right"))
    fp32, int8 = runner(ids, mask), OnnxClassifier(out, int8=True, intra_op_num_threads=1)(ids, mask)
    assert np.abs(int8 - fp32).max() <= 0.05 * np.abs(fp32).max()
    assert (int8.argmax(1) == fp32.argmax(1)).mean() >= 0.9


def test_predict_equals_pytorch_softmax(runner, model, tokenizer):
    ranked = runner.predict(TEXTS, top_k=None)
    best = runner.predict(TEXTS)
    for text, scores, top in zip(TEXTS, ranked, best):
        with torch.no_grad():
            probs = model(**tokenizer(text, return_tensors="pt")).logits.softmax(-1)[0]
        by_label = {d["label"]: d["score"] for d in scores}
        expected = {model.config.id2label[i]: p.item() for i, p in enumerate(probs)}
        assert by_label == pytest.approx(expected, abs=1e-5)
        assert top == scores[0] and top["label"] == model.config.id2label[int(probs.argmax())]


def test_cli_exports_files_and_reexports_over_a_previous_export(exported, capsys):
    model_dir, out = exported
    names = {p.name for p in out.iterdir()}
    assert {"chunk_step.onnx", "head.onnx", "chunk_step.int8.onnx", "head.int8.onnx", "config.json"} <= names
    assert "tokenizer_config.json" in names and "onnx_export.json" in names
    again = out.parent / "again"
    assert main(["export-onnx", str(model_dir), "--out", str(again), "--opset", "18"]) == 0
    assert main(["export-onnx", str(model_dir), "--out", str(again), "--opset", "18"]) == 0  # replaces its export
    assert not (again / "chunk_step.int8.onnx").exists()
    assert {o.version for o in onnx.load(again / "head.onnx").opset_import if o.domain in ("", "ai.onnx")} == {18}
    with pytest.raises(ValueError, match="int8"):
        OnnxClassifier(again, int8=True)
    capsys.readouterr()
    assert main(["export-onnx", str(model_dir), "--out", str(model_dir)]) == 2  # not an export: refused
    assert "--out" in capsys.readouterr().err and (model_dir / "model.safetensors").is_file()


def test_refuses_a_non_empty_folder_and_non_models(model, tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="out_dir.*not empty"):
        export_onnx(model, tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    with pytest.raises(TypeError, match="model_or_dir"):
        export_onnx(object(), tmp_path / "x")
    with pytest.raises(FileNotFoundError, match="not an ONNX export"):
        OnnxClassifier(tmp_path)


@pytest.mark.parametrize(
    ("ids", "mask", "error", "match"),
    [
        (np.array([3, 4, 5]), None, ValueError, "input_ids must have shape"),
        (np.array([[3.0, 4.0]]), None, TypeError, "input_ids must be an integer array"),
        (np.array([[3, 10_000]]), None, ValueError, "vocab_size"),
        (np.array([[-1, 3]]), None, ValueError, "vocab_size"),
        (np.zeros((0, 3), np.int64), None, ValueError, "empty"),
        (np.array([[3, 4]]), np.array([[1, 1, 1]]), ValueError, "attention_mask must have shape"),
        (np.array([[3, 4]]), np.array([[1, 2]]), ValueError, "only 0"),
        (np.array([[3, 4], [5, 6]]), np.array([[1, 1], [0, 0]]), ValueError, "document 1 has no token"),
        (np.array([[3, 1, 4]]), None, ValueError, "pad_token_id"),
    ],
)
def test_bad_inputs_are_refused(runner, ids, mask, error, match):
    with pytest.raises(error, match=match):
        runner(ids, mask)


def test_missing_onnxruntime_says_how_to_install(model, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'hf_bpt3c\[onnx\]'"):
        export_onnx(model, tmp_path / "x", int8=True)
    with pytest.raises(ImportError, match=r"pip install 'hf_bpt3c\[onnx\]'"):
        OnnxClassifier(tmp_path)
    assert not (tmp_path / "x").exists()
