"""Hostile config.json, data files, predictions files, HTML of user text and int8 conversions (RELIABILITY.md,
round 2), with hypothesis over config values and over the text rendered into attribution pages."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import small_config
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_bpt3c import AwdLstmConfig, AwdLstmForSequenceClassification, AwdLstmTokenizer, interpret, quantize_for_cpu
from hf_bpt3c.interpret.rendering import escape
from hf_bpt3c.training.scripts.predictions import write_predictions
from hf_bpt3c.training.scripts.texts import read_documents, read_records, read_test_texts, text_of

BASE = small_config().to_dict()

# ----------------------------------------------------------------------------------------------------------------
# Bug 6: config.json values of the wrong type or out of range (regressions)
# ----------------------------------------------------------------------------------------------------------------


def load_config(tmp_path: Path, **changes):
    (tmp_path / "config.json").write_text(json.dumps({**BASE, **changes}))
    return AwdLstmConfig.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(backwards="false"), r"backwards must be true or false \(a JSON boolean\), got str \('false'\)"),
        (dict(use_cache=1), r"use_cache must be true or false"),
        (dict(tie_word_embeddings="true"), r"tie_word_embeddings must be true or false"),
        (dict(raise_on_nonfinite=None), r"raise_on_nonfinite must be true or false"),
        (dict(classifier_hidden_sizes=[-5]), r"classifier_hidden_sizes\[0\] must be an int in \[1, 65,536\], got -5"),
        (dict(classifier_hidden_sizes=["a"]), r"classifier_hidden_sizes\[0\] must be an int .* got 'a'"),
        (dict(classifier_hidden_sizes="50"), r"classifier_hidden_sizes must be a list, got str"),
        (dict(classifier_dropouts=[2.0]), r"classifier_dropouts\[0\] must be a float in \[0, 1\), got 2\.0"),
        (dict(classifier_dropouts=[True]), r"classifier_dropouts\[0\] must be a float"),
        (dict(num_hidden_layers=100000), r"num_hidden_layers must be <= 64, got 100,000"),
        (dict(vocab_size=2**24, embedding_size=2**16), r"parameters .* implausible"),
        (dict(hidden_size=1.5), r"hidden_size must be an int"),
        (dict(output_dropout=float("nan")), r"output_dropout must be a float in \[0, 1\)"),
        (dict(pad_token_id=True), r"pad_token_id must be an int"),
        (dict(id2label={"0": "a", "5": "b"}), r"id2label must have the class ids 0\.\.1"),
        (dict(id2label={"a": "x"}), r"id2label must map the class ids"),
        (dict(id2label=["a", "b"]), r"id2label must map the class ids"),
        (dict(problem_type="ranking"), r"problem_type must be one of"),
        (dict(initializer_range=-1), r"initializer_range must be a number"),
        (dict(compute_dtype="float16"), r"compute_dtype must be one of"),
    ],
)
def test_config_fields_are_checked_on_load(tmp_path, changes, match):
    start = time.monotonic()
    with pytest.raises((TypeError, ValueError), match=match) as caught:
        load_config(tmp_path, **changes)
    assert "config.json" in str(caught.value) and time.monotonic() - start < 2


def test_model_loading_refuses_before_allocating(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({**BASE, "num_hidden_layers": 100000}))
    start = time.monotonic()
    with pytest.raises(ValueError, match="num_hidden_layers"):
        AwdLstmForSequenceClassification.from_pretrained(tmp_path)
    assert time.monotonic() - start < 2


def test_valid_configs_load_as_before(tmp_path):
    for config in (small_config(), AwdLstmConfig(), AwdLstmConfig.for_classification(num_labels=5, backwards=True)):
        config.save_pretrained(tmp_path)
        loaded = AwdLstmConfig.from_pretrained(tmp_path)
        assert {k: v for k, v in loaded.to_dict().items() if k != "_name_or_path"} == {
            k: v for k, v in config.to_dict().items() if k != "_name_or_path"
        }
    assert AwdLstmConfig(classifier_hidden_sizes=(50, 20), classifier_dropouts=(0.1, 0.0)).classifier_hidden_sizes == [
        50,
        20,
    ]


JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.lists(st.one_of(st.integers(-5, 100), st.floats(-1, 2), st.text(max_size=2)), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(0, 3), max_size=3),
)
FIELDS = [
    "vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "bptt", "max_len", "pad_token_id",
    "embedding_dropout", "weight_dropout", "input_dropout", "hidden_dropout", "output_dropout", "backwards",
    "classifier_hidden_sizes", "classifier_dropouts", "initializer_range", "raise_on_nonfinite", "use_cache",
    "compute_dtype", "tie_word_embeddings", "id2label", "problem_type",
]  # fmt: skip


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, min_size=1, max_size=3))
def test_random_config_values_load_or_name_the_field(changes):
    text = json.dumps({**BASE, **changes})
    start = time.monotonic()
    try:
        config = AwdLstmConfig.from_dict(json.loads(text))
    except (TypeError, ValueError) as err:
        assert "config.json" in str(err)
    else:
        assert config.parameter_count() <= 2**34
        for name in changes:
            if name in ("backwards", "use_cache", "raise_on_nonfinite", "tie_word_embeddings"):
                assert isinstance(getattr(config, name), bool)
    assert time.monotonic() - start < 1


# ----------------------------------------------------------------------------------------------------------------
# Bugs 7-8 and weak cases: data files, predictions files
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier():
    tokenizer = AwdLstmTokenizer.from_texts(["good bad film NA null 1"] * 3, min_freq=1)
    config = AwdLstmConfig(vocab_size=len(tokenizer), embedding_size=8, hidden_size=16, num_hidden_layers=2)
    config.id2label = {0: "neg", 1: "pos"}
    return AwdLstmForSequenceClassification(config).eval(), tokenizer


def test_predictions_never_overwrite_the_files_own_columns(classifier, tmp_path, caplog):
    model, tokenizer = classifier
    rows = "text,prob_pos,label,predicted_label\ngood film,my value,x,y\nbad,other,z,w\n"
    (tmp_path / "test.csv").write_text(rows)
    write_predictions(model, tokenizer, str(tmp_path / "test.csv"), "text", str(tmp_path / "p.csv"))
    header, first = (tmp_path / "p.csv").read_text().splitlines()[:2]
    assert header == "text,prob_pos,label,predicted_label,predicted_label_2,prob_neg,predicted_prob_pos"
    assert first.startswith("good film,my value,x,y,")
    assert "predicted_prob_pos (not prob_pos)" in caplog.text


def test_predictions_may_not_overwrite_the_test_file(classifier, tmp_path):
    model, tokenizer = classifier
    (tmp_path / "test.csv").write_text("text\ngood\n")
    with pytest.raises(ValueError, match="is --test_file itself"):
        write_predictions(model, tokenizer, str(tmp_path / "test.csv"), "text", str(tmp_path / "test.csv"))
    assert (tmp_path / "test.csv").read_text() == "text\ngood\n"


def test_reviews_that_read_na_null_or_1_are_texts(classifier, tmp_path):
    (tmp_path / "test.csv").write_text('text,score\nNA,NA\nnull,1\n1,\n"None",2\n')
    rows, texts = read_test_texts(str(tmp_path / "test.csv"), "text")
    assert texts == ["NA", "null", "1", "None"]
    assert rows["score"] == [None, 1.0, None, 2.0]  # the other columns as pandas reads them: NA is missing there
    model, tokenizer = classifier
    write_predictions(model, tokenizer, str(tmp_path / "test.csv"), "text", str(tmp_path / "p.csv"))
    assert [line.split(",")[0] for line in (tmp_path / "p.csv").read_text().splitlines()[1:]] == texts


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("missing.csv", None, "does not exist"),
        ("empty.csv", b"", "is empty"),
        ("header.csv", b"text,label\n", "has no rows"),
        ("latin1.csv", "text\ncaf\xe9 cr\xe8me\n".encode("latin-1"), "could not be read as CSV"),
        ("nulls.jsonl", b'{"text": "good"}\n{"text": null}\n', r"row 1 has no text in column 'text' \(nothing\)"),
        ("mixed.jsonl", b'{"text": "good"}\n{"text": 5}\n', "could not be read as JSON lines|row 1 has no text"),
        ("broken.jsonl", b'{"text": "good"}\n{"text": \n', "could not be read as JSON lines"),
        ("folder", "dir", "is not a file"),
    ],
)
def test_bad_test_files_are_named(tmp_path, name, content, match):
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as caught:
        read_test_texts(str(path), "text")
    assert name in str(caught.value)


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("review.jsonl", b'{"text": "good"}\n{"text": null}\n', r"review\.jsonl: row 2 has no text .*found null"),
        ("review.json", b'[{"text": "good"}, {"text": 3}]', r"row 2 has no text .*found int"),
        ("review.jsonl", b'{"text": "good"}\n[1, 2]\n', r"row 2 is not an object"),
        ("review.jsonl", b'{"text": "good"}\n{"text": \n', r"line 2 is not JSON"),
        ("review.json", b"[" * 100_000, "not valid JSON"),
        ("review.csv", b"", "is empty"),
        ("review.csv", b"text\n", "has no rows"),
        ("review.csv", b"body\nx\n", r"row 1 has no column 'text'"),
        ("review.txt", "caf\xe9".encode("latin-1"), r"is not UTF-8 text \(byte 3\)"),
        ("review.txt", b"  \n", "holds no text"),
        ("missing.txt", None, "does not exist"),
        ("review.xml", b"<a/>", "expected a .txt"),
    ],
)
def test_bad_documents_to_explain_are_named(tmp_path, name, content, match):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as caught:
        read_documents(str(path))
    assert name in str(caught.value)


def test_documents_to_explain_are_read_verbatim(tmp_path):
    (tmp_path / "r.csv").write_text('text,label\nNA,1\n"null",0\n')
    (tmp_path / "r.jsonl").write_text('{"text": "good"}\n\n{"text": "bad"}\n')
    (tmp_path / "r.txt").write_text("one document\nof two lines")
    assert read_documents(str(tmp_path / "r.csv")) == [("r-1", "NA"), ("r-2", "null")]
    assert read_documents(str(tmp_path / "r.jsonl")) == [("r-1", "good"), ("r-2", "bad")]
    assert read_documents(str(tmp_path / "r.txt")) == [("r", "one document\nof two lines")]


@pytest.mark.parametrize(
    "content, match",
    [
        (b'{"text": "good", "label": "pos"}\n{"text": "bad"}\n', r"row 2 has no column 'label'"),
        (b'{"text": "good", "label": "pos"}\n{"text": null, "label": "neg"}\n', r"row 2 has no text .*found null"),
        (b'{"text": "good", "label": "pos"}\n"text"\n', r"row 2 is not an object"),
    ],
)
def test_labelled_files_to_validate_are_named_by_row(tmp_path, content, match):
    """interpret's --validation_file: every row holds the text and the label."""
    path = tmp_path / "labelled.jsonl"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as caught:
        rows = read_records(str(path), "--validation_file", ["text", "label"])
        [text_of(row, "text", str(path), "--validation_file", i) for i, row in enumerate(rows, 1)]
    assert "--validation_file" in str(caught.value) and "labelled.jsonl" in str(caught.value)


def test_predict_documents_names_a_row_without_text(classifier):
    model, tokenizer = classifier
    with pytest.raises(TypeError, match=r"texts\[1\] is None \(a row without text\?\)"):
        interpret.predict_documents(model, tokenizer, ["good", None], [0, 1])
    with pytest.raises(ValueError, match="texts is empty"):
        interpret.predict_documents(model, tokenizer, [], [])
    with pytest.raises(ValueError, match=r"labels\[0\] = None is not a class id"):
        interpret.predict_documents(model, tokenizer, ["good"], [None])


# ----------------------------------------------------------------------------------------------------------------
# HTML of user text: bidirectional controls, markup, unpaired surrogates, page options
# ----------------------------------------------------------------------------------------------------------------

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"


def test_bidi_controls_are_shown_not_obeyed(tmp_path):
    tokens = ["xxbos", "the", "pay\u202etxt.exe", "was", "\u2067great\u2069"]
    page = interpret.html(tokens, [0.1, 0.2, 0.9, -0.1, 0.3], label="pos\u202e", path=tmp_path / "p.html")
    assert not any(c in page for c in BIDI)
    assert "pay[U+202E]txt.exe" in page and "[U+2067]great[U+2069]" in page and "pos[U+202E]" in page
    table = [{"row": 0, "text": "a\u202eb", "label": "x", "predicted": "y", "probability": 0.5, "loss": 1.0}]
    assert "a[U+202E]b" in interpret.losses_html(table)


def test_a_lone_surrogate_does_not_break_the_page(tmp_path):
    interpret.html(["bad", "\ud800", "text"], [0.1, 0.2, 0.3], path=tmp_path / "p.html")
    assert "[U+D800]" in (tmp_path / "p.html").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(max_strip_cells=0), "max_strip_cells must be an int >= 1"),
        (dict(strip_min_chunks=-1), "strip_min_chunks must be an int >= 0"),
        (dict(kept_span=(5, 2)), "kept_span must satisfy"),
        (dict(kept_span="ab"), "kept_span must be a"),
        (dict(probability="high"), "probability must be a number"),
        (dict(top_k=-1), "k must be an int"),
    ],
)
def test_bad_page_options_are_named(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        interpret.html(["a"] * 400, [0.1] * 400, chunk_starts=list(range(0, 400, 4)), **kwargs)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=12), st.text(max_size=10))
def test_any_text_renders_escaped_and_encodable(tokens, label):
    page = interpret.html(tokens, list(np.linspace(-1, 1, len(tokens))), label=label, title=label)
    page.encode("utf-8")  # no unpaired surrogate left
    assert not any(c in page for c in BIDI)
    body = page.split('<p class="doc">', 1)[1]
    for token in tokens:
        assert "<" not in escape(token) and '"' not in escape(token)
    assert body.count("<span") == body.count("</span>")


# ----------------------------------------------------------------------------------------------------------------
# Weak case: converting an int8 model
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("convert", ["half", "bfloat16", "double", "to-float16", "submodule-half"])
def test_an_int8_model_refuses_conversion_and_stays_as_it_was(convert):
    model = AwdLstmForSequenceClassification(small_config()).eval()
    quantized = quantize_for_cpu(model)
    ids = torch.randint(2, 60, (2, 11))
    before = quantized(ids).logits
    action = {
        "half": lambda m: m.half(),
        "bfloat16": lambda m: m.bfloat16(),
        "double": lambda m: m.double(),
        "to-float16": lambda m: m.to(torch.float16),
        "submodule-half": lambda m: m.classifier.half(),
    }[convert]
    with pytest.raises(TypeError, match=r"an int8 model \(quantize_for_cpu\) computes in float32 on the CPU"):
        action(quantized)
    assert {p.dtype for p in quantized.parameters()} == {torch.float32}
    assert torch.equal(quantized(ids).logits, before)
    quantized.float().cpu()  # conversions to what it already is are fine


def test_a_starting_checkpoint_is_checked_before_any_lookup(tmp_path):
    """--model_name_or_path: a missing local path (was: a Hub lookup for 29 s), a folder without config.json (was: a
    misleading "lacks sizes" message), a classifier as a language model start (was: used silently, random decoder)."""
    from hf_bpt3c.training.scripts import LanguageModelArguments, checked_start, prepare_model

    (tmp_path / "empty").mkdir()
    classifier = tmp_path / "classifier"
    AwdLstmForSequenceClassification(small_config()).save_pretrained(classifier)
    started = time.time()
    with pytest.raises(ValueError, match="--model_name_or_path .*missing does not exist"):
        checked_start(str(tmp_path / "missing"), "language model")
    with pytest.raises(ValueError, match="is not a saved model: it has no config.json"):
        checked_start(str(tmp_path / "empty"), "language model")
    with pytest.raises(ValueError, match="is a classifier: start a language model from a language model"):
        prepare_model(LanguageModelArguments(model_name_or_path=str(classifier)), None, None, "text")
    assert time.time() - started < 10
    assert checked_start(str(classifier), "language model or classifier") == str(classifier)
    assert checked_start("someone/some-model", "language model") == "someone/some-model"  # a Hub id: from_pretrained's
