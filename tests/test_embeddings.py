"""Document embeddings: the concat pooling of the last layer over the whole document, read in chunks."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import small_config
from hypothesis import given, settings
from hypothesis import strategies as st

import hf_bpt3c
from hf_bpt3c import AwdLstmForCausalLM, AwdLstmForSequenceClassification, AwdLstmModel, AwdLstmTokenizer


def encoder(**kw) -> AwdLstmModel:
    torch.manual_seed(0)
    return AwdLstmModel(small_config(bptt=7, max_len=15, **kw)).eval()


def one_pass_reference(model: AwdLstmModel, ids: torch.Tensor) -> torch.Tensor:
    """`(3*emb,)`: the whole document `(length,)` in one call (no chunks), pooled by hand."""
    ids = ids.flip(0) if model.config.backwards else ids
    with torch.no_grad():
        out = model(ids[None]).last_hidden_state[0]  # (length, emb)
    return torch.cat([out[-1], out.max(dim=0).values, out.mean(dim=0)])


@pytest.mark.parametrize("backwards", [False, True])
def test_embeddings_equal_a_one_pass_reference_over_the_whole_document(backwards):
    model = encoder(backwards=backwards)
    for length in (1, 6, 7, 40, 1500):  # 1500 spans several inference chunks
        ids = torch.randint(2, model.config.vocab_size, (length,), generator=torch.Generator().manual_seed(length))
        vector = model.document_embeddings(ids[None])[0]
        torch.testing.assert_close(vector, one_pass_reference(model, ids), atol=1e-5, rtol=0)


@settings(max_examples=20, deadline=None)
@given(lengths=st.lists(st.integers(1, 60), min_size=1, max_size=5), left=st.booleans())
def test_embeddings_do_not_depend_on_the_batch_or_the_padding(lengths, left):
    model = encoder()
    g = torch.Generator().manual_seed(sum(lengths))
    docs = [torch.randint(2, model.config.vocab_size, (n,), generator=g) for n in lengths]
    width = max(lengths)
    ids = torch.full((len(docs), width), model.config.pad_token_id)
    mask = torch.zeros(len(docs), width, dtype=torch.long)
    for row, doc in enumerate(docs):
        span = slice(width - len(doc), width) if left else slice(0, len(doc))
        ids[row, span], mask[row, span] = doc, 1
    batch = model.document_embeddings(ids, attention_mask=mask)
    for row, doc in enumerate(docs):
        torch.testing.assert_close(batch[row], model.document_embeddings(doc[None])[0], atol=1e-6, rtol=0)


def test_embeddings_run_in_eval_mode_without_autograd_and_restore_the_mode():
    model = encoder(embedding_dropout=0.5, input_dropout=0.5, hidden_dropout=0.5, weight_dropout=0.5).train()
    ids = torch.randint(2, 60, (2, 30))
    first, second = model.document_embeddings(ids), model.document_embeddings(ids)
    assert torch.equal(first, second) and not first.requires_grad
    assert model.training and all(m.training for m in model.modules())


def test_classifier_embeddings_are_what_its_head_sees():
    torch.manual_seed(1)
    model = AwdLstmForSequenceClassification(small_config(bptt=7, max_len=15)).eval()
    ids = torch.randint(2, 60, (3, 50))
    features = model.document_embeddings(ids)
    assert features.shape == (3, 3 * model.config.embedding_size)
    with torch.no_grad():
        torch.testing.assert_close(model.classifier(features), model(ids).logits, atol=0, rtol=0)
        # the window's pooling differs from the whole document's: the beginning is outside the kept window
        assert not torch.allclose(features, model.awd_lstm.document_embeddings(ids))


def test_embed_keeps_the_texts_order_for_any_model():
    texts = ["a good film.", "A bad, bad film!", "fine", "an excellent film, really excellent. " * 20]
    tokenizer = AwdLstmTokenizer.from_texts(texts, min_freq=1)
    torch.manual_seed(2)
    config = small_config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    for model in (AwdLstmForCausalLM(config), AwdLstmForSequenceClassification(config)):
        vectors = hf_bpt3c.embed(texts, model.eval(), tokenizer, batch_size=2, progress=False)
        assert vectors.shape == (len(texts), 3 * config.embedding_size)
        reader = model if isinstance(model, AwdLstmForSequenceClassification) else model.awd_lstm
        for i, text in enumerate(texts):
            alone = reader.document_embeddings(tokenizer([text], return_tensors="pt")["input_ids"])[0]
            torch.testing.assert_close(vectors[i], alone, atol=1e-6, rtol=0)
    assert hf_bpt3c.embed([], model, tokenizer).shape == (0, 3 * config.embedding_size)


def test_embed_rejects_bad_arguments():
    tokenizer = AwdLstmTokenizer.from_texts(["a film"], min_freq=1)
    model = AwdLstmModel(small_config(vocab_size=len(tokenizer)))
    with pytest.raises(TypeError, match="texts"):
        hf_bpt3c.embed("one text", model, tokenizer)
    with pytest.raises(TypeError, match="model"):
        hf_bpt3c.embed(["a"], torch.nn.Linear(2, 2), tokenizer)
    with pytest.raises(ValueError, match="batch_size"):
        hf_bpt3c.embed(["a"], model, tokenizer, batch_size=0)


PEAK_WORKER = textwrap.dedent(
    """
    import json, sys
    import torch
    from hf_bpt3c import AwdLstmConfig, AwdLstmModel

    def peak_mb():
        with open("/proc/self/status") as f:
            return int(next(line for line in f if line.startswith("VmHWM:")).split()[1]) / 1024

    torch.manual_seed(0)
    config = AwdLstmConfig(vocab_size=1000, embedding_size=64, hidden_size=256, num_hidden_layers=3)
    model = AwdLstmModel(config).eval()
    ids = torch.randint(2, 1000, (1, int(sys.argv[1])))
    model.document_embeddings(ids[:, :2000])  # warm up the allocator at the chunk's size
    vector = model.document_embeddings(ids)
    print(json.dumps({"peak_mb": peak_mb(), "finite": bool(torch.isfinite(vector).all())}))
    """
)


@pytest.mark.slow
def test_memory_is_bounded_by_the_chunk_not_the_document():
    def peak(tokens: int) -> dict:
        result = subprocess.run([sys.executable, "-c", PEAK_WORKER, str(tokens)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    short, long = peak(10_000), peak(100_000)
    assert short["finite"] and long["finite"]
    assert long["peak_mb"] <= 1.2 * short["peak_mb"], (short, long)


@pytest.mark.slow
def test_embeddings_example_runs_on_a_saved_model(tmp_path):
    import csv

    rows = [
        (f"a {'good' if i % 2 else 'bad'} film number {i}, " * (1 + i % 5), "pos" if i % 2 else "neg")
        for i in range(24)
    ]
    with open(tmp_path / "texts.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label", "is_valid"])
        writer.writerows((text, label, i >= 16) for i, (text, label) in enumerate(rows))
    tokenizer = AwdLstmTokenizer.from_texts([text for text, _ in rows], min_freq=1)
    torch.manual_seed(3)
    AwdLstmForCausalLM(small_config(vocab_size=len(tokenizer))).save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    script = Path(__file__).parents[1] / "examples" / "embeddings.py"
    command = [sys.executable, str(script), "--model_name_or_path", str(tmp_path / "lm")]
    command += ["--train_file", str(tmp_path / "texts.csv"), "--split_column", "is_valid"]
    command += ["--output_dir", str(tmp_path / "out")]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "embeddings_results.json").read_text())
    assert results["train_texts"] == 16 and results["validation_texts"] == 8
    assert 0 <= results["logistic_regression_accuracy"] <= 1 and 0 <= results["nearest_neighbour_accuracy"] <= 1
    assert "query [" in result.stdout
