"""hf_bpt3c.interpret against independent references: plain autograd through the whole document (no detach),
the plain BPT3C reference of tests/reference.py, integrated gradients' completeness, losses one document at a
time, and the HTML checked with html.parser."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html.parser import HTMLParser

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO_ROOT, no_dropout
from reference import reference_bpt3c, reference_lstms
from transformers import Trainer, TrainingArguments

import hf_bpt3c
from hf_bpt3c import AwdLstmForSequenceClassification, AwdLstmTokenizer, interpret

BPTT, MAX_LEN = 5, 15  # no_dropout()'s: the kept window is the chunks starting in the last 15 tokens
LENGTHS = [3, 5, 9, 14, 22, 30]  # 1 to 6 chunks of 5 tokens


def float64_model(**overrides) -> AwdLstmForSequenceClassification:
    return AwdLstmForSequenceClassification(no_dropout(**overrides)).double().eval()


def random_document(length: int, seed: int) -> torch.Tensor:
    return torch.randint(9, 60, (length,), generator=torch.Generator().manual_seed(seed))


def reference_full_logits(model, embeds: torch.Tensor) -> torch.Tensor:
    """embeds `(seq, emb)` of one document -> logits `(num_labels,)`, the state never detached: plain autograd
    reaches every token. The kept chunks and the pooling are BPT3C's."""
    x = embeds.unsqueeze(0)
    for lstm in reference_lstms(model):
        x, _ = lstm(x)
    seq = embeds.size(0)
    kept_start = next(start for start in range(0, seq, BPTT) if seq - start <= MAX_LEN)
    outputs = x[0] if model.config.classifier_pooling == "document" else x[0, kept_start:]
    pooled = torch.cat([outputs[-1], outputs.max(dim=0).values, outputs.mean(dim=0)])
    return model.classifier(pooled.unsqueeze(0))[0]


def reference_gradient(model, ids: torch.Tensor, forward, target: int | None = None):
    """(d logit[target] / d embeds `(seq, emb)`, embeds, logits) by plain autograd through `forward`."""
    embeds = model.awd_lstm.embeddings.weight[ids].detach().requires_grad_(True)
    logits = forward(model, embeds)
    target = int(logits.argmax()) if target is None else target
    (grad,) = torch.autograd.grad(logits[target], embeds)
    return grad, embeds.detach(), logits.detach()


def assert_close_to_reference(scores: torch.Tensor, expected: torch.Tensor, bound: float = 1e-8) -> None:
    scale = float(expected.abs().max())
    assert scale > 0
    assert float((scores - expected).abs().max()) <= bound * scale


# ---------------------------------------------------------------------------------------------- full scope


@pytest.mark.parametrize("pooling", ["window", "document"])
@pytest.mark.parametrize("length", LENGTHS)
def test_full_scope_equals_plain_autograd_through_the_whole_document(length, pooling):
    model = float64_model(classifier_pooling=pooling)
    ids = random_document(length, seed=length)
    grad, embeds, logits = reference_gradient(model, ids, reference_full_logits)
    for method, expected in (("gradient", grad.norm(dim=-1)), ("gradient_x_input", (grad * embeds).sum(-1))):
        result = interpret.token_attributions(model, ids, method=method, scope="full")
        assert_close_to_reference(result.scores[0], expected)
        torch.testing.assert_close(result.logits[0], logits, rtol=0, atol=1e-12)
        assert int(result.target[0]) == int(logits.argmax())
    if length > MAX_LEN:  # the full scope reaches tokens before the kept window
        assert float(grad[: length - MAX_LEN].abs().sum()) > 0


def test_full_scope_of_a_backward_model_is_in_document_order():
    model = float64_model(backwards=True)
    ids = random_document(22, seed=3)
    grad, embeds, _ = reference_gradient(model, ids.flip(0), reference_full_logits)  # the model reads it reversed
    result = interpret.token_attributions(model, ids, method="gradient_x_input", scope="full")
    assert_close_to_reference(result.scores[0], (grad * embeds).sum(-1).flip(0))
    assert result.kept_spans[0] == (0, 12)  # read from the end: chunks start at 0, 5, 10, ...; kept from 10 on


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_batch_rows_and_padding_do_not_change_a_documents_scores(padding_side):
    model = float64_model()
    docs = [random_document(n, seed=n) for n in (22, 4, 13)]
    alone = [interpret.token_attributions(model, d, scope="full").scores[0] for d in docs]
    width = 30
    ids = torch.zeros(len(docs), width, dtype=torch.long)  # pad id 1 would do as well; the mask decides
    mask = torch.zeros_like(ids)
    for row, doc in enumerate(docs):
        span = slice(width - doc.numel(), width) if padding_side == "left" else slice(0, doc.numel())
        ids[row, span], mask[row, span] = doc, 1
    batched = interpret.token_attributions(model, ids, attention_mask=mask, scope="full")
    for row, doc in enumerate(docs):
        assert batched.scores[row].shape == (doc.numel(),)
        torch.testing.assert_close(batched.scores[row], alone[row], rtol=0, atol=1e-12)
    as_lists = interpret.token_attributions(model, [d.tolist() for d in reversed(docs)], scope="full")
    for row, expected in enumerate(reversed(alone)):
        torch.testing.assert_close(as_lists.scores[row], expected, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------- kept scope


@pytest.mark.parametrize("pooling", ["window", "document"])
@pytest.mark.parametrize("length", [9, 22, 30])
def test_kept_scope_equals_the_gradient_of_bpt3c_itself(length, pooling):
    model = float64_model(classifier_pooling=pooling)
    ids = random_document(length, seed=length)
    grad, embeds, logits = reference_gradient(model, ids, reference_bpt3c)
    result = interpret.token_attributions(model, ids, method="gradient_x_input", scope="kept")
    assert_close_to_reference(result.scores[0], (grad * embeds).sum(-1))
    kept_start = result.kept_spans[0][0]
    assert kept_start == next(s for s in range(0, length, BPTT) if length - s <= MAX_LEN)
    assert torch.count_nonzero(result.scores[0][:kept_start]) == 0
    torch.testing.assert_close(result.logits[0], model(ids.unsqueeze(0)).logits[0].detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(result.logits[0], logits, rtol=0, atol=1e-12)


def test_explains_the_requested_class():
    model = float64_model()
    ids = random_document(22, seed=5)
    for target in range(3):
        grad, embeds, _ = reference_gradient(model, ids, reference_full_logits, target=target)
        result = interpret.token_attributions(model, ids, target=target, scope="full")
        assert int(result.target[0]) == target
        assert_close_to_reference(result.scores[0], (grad * embeds).sum(-1))


# ---------------------------------------------------------------------------------------------- integrated gradients


@pytest.mark.parametrize("length", [5, 14, 22, 30])
def test_integrated_gradients_are_complete(length):
    model = float64_model()
    with torch.no_grad():  # a wider range of logits than the initialisation's, so that f(x) - f(baseline) matters
        model.awd_lstm.embeddings.weight.mul_(3)
        for linear in (m for m in model.classifier.modules() if isinstance(m, torch.nn.Linear)):
            linear.weight.mul_(10)
    ids = random_document(length, seed=length + 100)
    result = interpret.token_attributions(model, ids, method="integrated_gradients", scope="full", steps=64)
    target = int(result.target[0])
    with torch.no_grad():  # f(x) - f(baseline), the baseline every position at the padding embedding
        pad_row = model.awd_lstm.embeddings.weight[model.config.pad_token_id]
        f_x = reference_full_logits(model, model.awd_lstm.embeddings.weight[ids])[target]
        f_base = reference_full_logits(model, pad_row.expand(length, -1))[target]
    total = float(result.scores[0].sum())
    assert abs(float(f_x - f_base)) > 1e-3
    assert abs(total - float(f_x - f_base)) <= 0.01 * abs(float(f_x - f_base))
    torch.testing.assert_close(result.baseline_logits[0, target], f_base, rtol=0, atol=1e-10)


def test_bad_arguments_name_themselves():
    model = float64_model()
    ids = random_document(9, seed=0)
    with pytest.raises(ValueError, match="method"):
        interpret.token_attributions(model, ids, method="saliency")
    with pytest.raises(ValueError, match="scope"):
        interpret.token_attributions(model, ids, scope="everything")
    with pytest.raises(ValueError, match="target"):
        interpret.token_attributions(model, ids, target=7)
    with pytest.raises(ValueError, match="steps"):
        interpret.token_attributions(model, ids, method="integrated_gradients", steps=0)
    with pytest.raises(TypeError, match="model"):
        interpret.token_attributions(torch.nn.Linear(2, 2), ids)


def test_the_models_training_mode_is_restored():
    model = AwdLstmForSequenceClassification(no_dropout()).train()
    interpret.token_attributions(model, random_document(9, seed=0))
    assert all(module.training for module in model.modules())


# ---------------------------------------------------------------------------------------------- memory


def peak_of(tokens: int, *extra: str) -> dict:
    command = [sys.executable, str(REPO_ROOT / "tests" / "interpret_memory_worker.py"), "--tokens", str(tokens)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([*command, "--threads", "1", *extra], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_full_scope_memory_is_bounded_by_the_chunk_not_the_document():
    short, long = peak_of(10_000), peak_of(100_000)
    assert long["peak_rss_mb"] <= 1.5 * short["peak_rss_mb"], (short, long)
    # 10x the tokens adds a few MB (ids, scores, one saved state per chunk); the whole graph would add ~800 MB
    naive = peak_of(100_000, "--naive")  # the same gradient by plain autograd, the whole graph held at once
    assert long["peak_rss_mb"] - short["peak_rss_mb"] < 64, (short, long)
    assert naive["peak_rss_mb"] - long["peak_rss_mb"] > 400, (long, naive)


# ---------------------------------------------------------------------------------------------- HTML and plots


HOSTILE = [
    "<script>alert('x')</script>",
    '"><img src=x onerror=alert(1)>',
    "AT&T &amp; &lt;b&gt;",
    "xxmaj <style>body{display:none}</style>",
]
ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "p", "b", "span", "a", "div", "ol", "li"}


class StrictParser(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.attributes, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += [name for name, _ in attrs]

    def handle_data(self, data):
        self.text.append(data)


def test_html_escapes_hostile_text_and_parses():
    tokens = " ".join(HOSTILE * 30).split()  # long enough for the chunk strip
    scores = torch.linspace(-1, 1, len(tokens))
    page = interpret.html(
        tokens, scores, label='<b onmouseover="x">pos</b>', probability=0.9, chunk_starts=range(0, len(tokens), 5)
    )
    parser = StrictParser()
    parser.feed(page)
    parser.close()
    assert set(parser.tags) <= ALLOWED_TAGS
    assert parser.tags.count("style") == 1 and parser.tags.count("b") == 1  # ours only: the label's <b> is text
    assert not {name for name in parser.attributes if name.startswith("on")}
    assert "script" not in parser.tags and "img" not in parser.tags
    shown = "".join(parser.text)
    for word in ("<script>alert('x')</script>", "onerror=alert(1)>", "AT&T", "&amp;", "&lt;b&gt;", "<style>body"):
        assert word in shown
    assert '<b onmouseover="x">pos</b>' in shown
    assert "Content-Security-Policy" in page and "http" not in page.replace("http-equiv", "")
    assert 'href="#chunk-' in page and 'href="#passage-1"' in page


def test_html_of_a_text_and_its_errors(tmp_path):
    text = "a <i>b</i> & c"
    page = interpret.html(text, [0.1, -0.2, 0.3, 0.0], path=tmp_path / "a.html")
    assert (tmp_path / "a.html").read_text(encoding="utf-8") == page
    assert "&lt;i&gt;b&lt;/i&gt;" in page and "<i>" not in page
    with pytest.raises(ValueError, match="one value per token"):
        interpret.html(text, [0.1, 0.2])
    with pytest.raises(TypeError, match="tokens_or_text"):
        interpret.html(3, [0.1])


def test_word_pieces_fold_fastai_case_markers():
    assert interpret.word_pieces(["xxbos", "xxmaj", "great", "xxup", "fun", "!"]) == [
        (0, 1, "xxbos"),
        (1, 3, "Great"),
        (3, 5, "FUN"),
        (5, 6, "!"),
    ]


def test_top_passages_are_the_best_disjoint_windows():
    scores = [0, 0, 5, 5, 0, 0, 0, 3, 0, 4, 4, 0]
    assert interpret.top_passages(scores, k=2, width=2) == [(2, 4, 10.0), (9, 11, 8.0)]
    assert interpret.top_passages(scores, k=3, width=2)[2] in {(6, 8, 3.0), (7, 9, 3.0)}


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    model = float64_model()
    ids = random_document(30, seed=1)
    result = interpret.token_attributions(model, ids, scope="full")
    path = tmp_path / "a.png"
    interpret.plot(
        result.scores[0],
        path,
        tokens=[f"w{i}" for i in ids.tolist()],
        chunk_starts=result.chunk_starts[0],
        kept_span=result.kept_spans[0],
        title="t",
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


# ---------------------------------------------------------------------------------------------- predictions


@pytest.fixture
def texts_and_labels():
    words = "good bad fine awful great boring film plot actor scene music long short".split()
    gen = torch.Generator().manual_seed(4)
    texts, labels = [], []
    for i in range(20):
        n = int(torch.randint(3, 40, (1,), generator=gen))
        picks = torch.randint(0, len(words), (n,), generator=gen).tolist()
        texts.append(" ".join(words[p] for p in picks))
        labels.append(i % 3)
    return texts, labels


def classifier_and_tokenizer(texts):
    tokenizer = AwdLstmTokenizer.from_texts(texts, min_freq=1)
    config = no_dropout(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    config.id2label, config.label2id = {0: "a", 1: "b", 2: "c"}, {"a": 0, "b": 1, "c": 2}
    return AwdLstmForSequenceClassification(config).eval(), tokenizer


def one_at_a_time_losses(model, tokenizer, texts, labels) -> torch.Tensor:
    losses = []
    with torch.no_grad():
        for text, label in zip(texts, labels):
            logits = model(torch.tensor([tokenizer(text)["input_ids"]])).logits[0]
            losses.append(float(F.cross_entropy(logits.double().unsqueeze(0), torch.tensor([label]))))
    return torch.tensor(losses, dtype=torch.float64)


def test_top_losses_are_the_largest_per_document_losses(texts_and_labels):
    texts, labels = texts_and_labels
    model, tokenizer = classifier_and_tokenizer(texts)
    expected = one_at_a_time_losses(model, tokenizer, texts, labels)
    table = interpret.top_losses(model=model, tokenizer=tokenizer, texts=texts, labels=labels, k=5, batch_size=4)
    worst = torch.argsort(expected, descending=True)[:5].tolist()
    assert [row["row"] for row in table] == worst
    for row in table:
        assert row["loss"] == pytest.approx(float(expected[row["row"]]), abs=1e-5)
        assert row["text"] == texts[row["row"]] and row["label"] == "abc"[labels[row["row"]]]
    matrix = interpret.confusion_matrix(model=model, tokenizer=tokenizer, texts=texts, labels=labels)
    assert matrix.counts.sum() == len(texts) and matrix.label_names == ["a", "b", "c"]
    names = ["abc"[y] for y in labels]  # class names work as labels too
    predictions = interpret.DocumentPredictions.from_model(model, tokenizer, texts, names, batch_size=4)
    assert interpret.top_losses(predictions, k=5) == table
    assert (interpret.confusion_matrix(predictions).counts == matrix.counts).all()
    with pytest.raises(TypeError, match="trainer.predict output"):
        interpret.confusion_matrix([0, 1])
    with pytest.raises(ValueError, match="give a trainer.predict output"):
        interpret.top_losses(model=model, texts=texts)


def test_trainer_predictions_are_paired_with_their_documents_under_group_by_length(texts_and_labels, tmp_path):
    pytest.importorskip("matplotlib")
    texts, labels = texts_and_labels
    model, tokenizer = classifier_and_tokenizer(texts)
    encoded = tokenizer(texts)["input_ids"]
    dataset = [{"input_ids": ids, "labels": label, "text": t} for ids, label, t in zip(encoded, labels, texts)]
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_eval_batch_size=4,
        train_sampling_strategy="group_by_length",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        remove_unused_columns=False,
        seed=3,
    )

    def collate(rows):
        batch = tokenizer.pad([{"input_ids": r["input_ids"]} for r in rows], return_tensors="pt")
        batch["labels"] = torch.tensor([r["labels"] for r in rows])
        return batch

    trainer = Trainer(model, args, data_collator=collate, processing_class=tokenizer)
    output = trainer.predict(dataset)
    order = interpret.prediction_order(trainer, dataset)
    assert order != list(range(len(dataset)))  # the trainer did reorder them
    expected = one_at_a_time_losses(model, tokenizer, texts, labels)
    table = interpret.top_losses(output, k=20, trainer=trainer, dataset=dataset)
    assert [row["row"] for row in table] == torch.argsort(expected, descending=True).tolist()
    for row in table:
        assert row["loss"] == pytest.approx(float(expected[row["row"]]), abs=1e-5)
        assert row["text"] == texts[row["row"]]
    with pytest.raises(ValueError, match="trainer= and dataset="):
        interpret.top_losses(output)
    matrix = interpret.confusion_matrix(output, path=tmp_path / "cm.png")
    assert (tmp_path / "cm.png").stat().st_size > 5000 and matrix.counts.sum() == len(texts)
    in_prediction_order = interpret.DocumentPredictions.from_output(output, model)
    assert in_prediction_order.rows is None and in_prediction_order.label_names == ["a", "b", "c"]
    assert (interpret.confusion_matrix(in_prediction_order).counts == matrix.counts).all()
    in_dataset_order = interpret.DocumentPredictions.from_trainer(trainer, dataset, output)
    assert in_dataset_order.labels.tolist() == labels and in_dataset_order.texts == texts
    torch.testing.assert_close(in_dataset_order.logits[order], in_prediction_order.logits)
    assert interpret.top_losses(in_dataset_order, k=20) == table


# ---------------------------------------------------------------------------------------------- the example


@pytest.mark.slow
def test_interpret_example_writes_its_files(tmp_path, texts_and_labels):
    pytest.importorskip("matplotlib")
    texts, labels = texts_and_labels
    model, tokenizer = classifier_and_tokenizer(texts)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    validation = tmp_path / "valid.jsonl"
    rows = [{"text": t, "label": "abc"[y]} for t, y in zip(texts, labels)]
    rows[0]["text"] = "<script>alert(1)</script> " + rows[0]["text"]
    validation.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    out = tmp_path / "why"
    command = [sys.executable, str(REPO_ROOT / "examples" / "interpret.py"), "--model_name_or_path"]
    command += [str(tmp_path / "model"), "--text", " ".join(texts[:3]), "--text", texts[4], "--output_dir", str(out)]
    command += ["--validation_file", str(validation), "--top_losses", "5"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for doc in ("doc-001", "doc-002"):
        record = json.loads((out / doc / "attributions.json").read_text())
        assert len(record["scores"]) == len(record["tokens"]) and record["scope"] == "full"
        assert (out / doc / "attributions.png").stat().st_size > 5000
        assert "<!DOCTYPE html>" in (out / doc / "attributions.html").read_text()
    assert (out / "confusion_matrix.png").stat().st_size > 5000
    losses = (out / "top_losses.html").read_text()
    assert "<script>" not in losses
    assert len(json.loads((out / "top_losses.json").read_text())) == 5


def test_interpret_is_reachable_from_the_package():
    assert hf_bpt3c.interpret is interpret and callable(interpret.token_attributions)
