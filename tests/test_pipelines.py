"""`pipeline("text-classification")` and `pipeline("text-generation")` on saved hf_bpt3c folders."""

from __future__ import annotations

import pytest
import torch
from conftest import small_config
from transformers import pipeline

from hf_bpt3c import AwdLstmForCausalLM, AwdLstmForSequenceClassification, AwdLstmTokenizer

TEXTS = [
    "This movie was wonderful, I loved every minute of it.",
    "A dull, boring film. I would NOT watch it again!",
    "The acting was fine but the story made no sense at all.",
    "Brilliant direction and a moving score.",
]


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    torch.manual_seed(0)
    tokenizer = AwdLstmTokenizer.from_texts(TEXTS * 3, min_freq=1)
    config = small_config(vocab_size=len(tokenizer), num_labels=2, id2label={0: "negative", 1: "positive"}, max_len=20)
    folder = tmp_path_factory.mktemp("clf")
    AwdLstmForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_text_classification_pipeline_single_list_and_labels(classifier_dir):
    classify = pipeline("text-classification", model=str(classifier_dir))
    assert isinstance(classify.model, AwdLstmForSequenceClassification)
    single = classify(TEXTS[0])
    assert single[0]["label"] in {"negative", "positive"}
    many = classify(TEXTS, top_k=None)
    assert len(many) == len(TEXTS) and all({d["label"] for d in scores} == {"negative", "positive"} for scores in many)
    batched = classify(TEXTS, top_k=None, batch_size=3)  # padded batches give the same scores
    for one, other in zip(many, batched):
        assert {d["label"]: round(d["score"], 5) for d in one} == {d["label"]: round(d["score"], 5) for d in other}


def test_pipeline_scores_equal_the_model(classifier_dir):
    classify = pipeline("text-classification", model=str(classifier_dir), top_k=None)
    model, tokenizer = classify.model, classify.tokenizer
    with torch.no_grad():
        probs = model(**tokenizer(TEXTS[1], return_tensors="pt")).logits.softmax(-1)[0]
    scores = {d["label"]: d["score"] for d in classify([TEXTS[1]])[0]}
    assert scores["negative"] == pytest.approx(probs[0].item(), abs=1e-6)
    assert scores["positive"] == pytest.approx(probs[1].item(), abs=1e-6)


def test_documents_far_longer_than_max_len_need_no_truncation(classifier_dir):
    classify = pipeline("text-classification", model=str(classifier_dir), top_k=None)
    long_text = " ".join(TEXTS * 60)  # about 1,500 tokens; max_len is 20
    assert len(classify.tokenizer(long_text)["input_ids"]) > 50 * classify.model.config.max_len
    scores = classify([long_text])[0]
    assert sum(d["score"] for d in scores) == pytest.approx(1.0, abs=1e-5)


def test_text_generation_pipeline(tmp_path):
    tokenizer = AwdLstmTokenizer.from_texts(TEXTS * 3, min_freq=1)
    lm = AwdLstmForCausalLM(small_config(vocab_size=len(tokenizer), eos_token_id=None))
    lm.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    generate = pipeline("text-generation", model=str(tmp_path))
    out = generate("this movie was", max_new_tokens=6, do_sample=False)
    assert isinstance(out[0]["generated_text"], str) and out[0]["generated_text"].startswith("this movie was")
    batch = generate(["this movie was", "a dull"], max_new_tokens=4, do_sample=False)
    assert len(batch) == 2
