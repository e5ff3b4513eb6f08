"""Model cards written by `save_pretrained`: Hub metadata that parses back, the BPT3C settings and the recipe in
the body, and a README.md the user wrote is never overwritten."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import small_config
from huggingface_hub import ModelCard

from hf_bpt3c import AwdLstmForCausalLM, AwdLstmForSequenceClassification, AwdLstmModel
from hf_bpt3c.model_card import MODEL_CARD_MARKER, build_model_card, is_generated_card, write_model_card

CORE_TAGS = {"awd-lstm", "ulmfit", "bpt3c"}
INFO = {
    "datasets": ["imdb"],
    "eval_results": {"accuracy": 0.875, "f1": torch.tensor(0.75), "split": "test", "dataset_name": "IMDb"},
    "training": {"epochs": 4, "discriminative lr factor": 2.6, "schedule": "one-cycle", "batch size": 16},
    "language": "en",
    "license": "apache-2.0",
    "model_name": "imdb-bpt3c",
}


def classifier(**config) -> AwdLstmForSequenceClassification:
    return AwdLstmForSequenceClassification(small_config(id2label={0: "neg", 1: "neu", 2: "pos"}, **config))


def test_save_pretrained_writes_a_card_that_parses_back(tmp_path: Path):
    model = classifier()
    model.model_card_info = INFO
    model.save_pretrained(tmp_path)

    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "text-classification"
    assert CORE_TAGS | {"text-classification"} <= set(card.data.tags)
    assert card.data.datasets == ["imdb"]
    assert (card.data.language, card.data.license) == ("en", "apache-2.0")
    assert card.data.model_name == "imdb-bpt3c"
    results = {
        (r.metric_type, r.metric_value, r.dataset_name, r.dataset_type, r.dataset_split) for r in card.data.eval_results
    }
    assert results == {("accuracy", 0.875, "IMDb", "IMDb", "test"), ("f1", 0.75, "IMDb", "IMDb", "test")}
    assert {r.task_type for r in card.data.eval_results} == {"text-classification"}

    body = card.text
    assert MODEL_CARD_MARKER in body
    assert "`bptt` = 5" in body and "`max_len` = 15" in body
    assert "- **discriminative lr factor**: 2.6" in body and "- **schedule**: one-cycle" in body
    assert "| 2 | pos |" in body
    assert f"{model.num_parameters():,}" in body
    assert "Howard" in body and "Merity" in body


@pytest.mark.parametrize(
    ("model_class", "pipeline_tag", "auto_class"),
    [
        (AwdLstmForSequenceClassification, "text-classification", "AutoModelForSequenceClassification"),
        (AwdLstmForCausalLM, "text-generation", "AutoModelForCausalLM"),
        (AwdLstmModel, "feature-extraction", "AutoModel"),
    ],
)
def test_each_class_gets_its_pipeline_tag_and_loading_example(model_class, pipeline_tag, auto_class):
    card = build_model_card(model_class(small_config(backwards=True)), repo_id="me/awd")
    assert card.data.pipeline_tag == pipeline_tag
    assert card.data.library_name == "transformers"
    assert CORE_TAGS <= set(card.data.tags)
    assert card.data.eval_results is None and card.data.datasets is None
    assert MODEL_CARD_MARKER in card.text
    assert f'{auto_class}.from_pretrained("me/awd", trust_remote_code=True)' in card.text
    assert "**backward**" in card.text
    assert "not recorded" in card.text


def test_explicit_info_overrides_model_card_info_and_free_text_recipe():
    model = AwdLstmForCausalLM(small_config())
    model.model_card_info = {"training": "ignored", "limitations": "Trained on 800 reviews only."}
    card = build_model_card(model, training="20 epochs of STLR at lr 3e-3.", eval_results={"perplexity": 41.5})
    assert "20 epochs of STLR at lr 3e-3." in card.text and "ignored" not in card.text
    assert "Trained on 800 reviews only." in card.text
    (result,) = card.data.eval_results
    assert (result.metric_type, result.metric_value, result.task_type) == ("perplexity", 41.5, "text-generation")
    assert card.data.model_name == "awd-lstm-language-model"


def test_model_tags_are_added():
    model = classifier()
    model.add_model_tags(["sentiment"])
    assert set(build_model_card(model).data.tags) == CORE_TAGS | {"text-classification", "sentiment"}


def test_unknown_info_keys_are_rejected():
    with pytest.raises(ValueError, match="epochs"):
        build_model_card(classifier(), epochs=3)


def test_a_user_readme_is_never_overwritten(tmp_path: Path):
    mine = "# My classifier\n\nHand-written notes.\n"
    (tmp_path / "README.md").write_text(mine, encoding="utf-8")
    model = classifier()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "README.md").read_text(encoding="utf-8") == mine
    assert write_model_card(tmp_path, model) is None
    assert (tmp_path / "config.json").is_file()


def test_resaving_updates_our_own_card(tmp_path: Path):
    model = classifier()
    model.model_card_info = {**INFO, "eval_results": {"accuracy": 0.5}}
    model.save_pretrained(tmp_path)
    model.model_card_info = {**INFO, "eval_results": {"accuracy": 0.625}}
    assert write_model_card(tmp_path, model) == tmp_path / "README.md"
    card = ModelCard.load(tmp_path / "README.md")
    assert [r.metric_value for r in card.data.eval_results] == [0.625]
    assert card.data.eval_results[0].dataset_type == "imdb"  # from `datasets` when no dataset is named


def test_generated_cards_are_recognised():
    assert is_generated_card(str(build_model_card(classifier())))
    assert is_generated_card("This model card has been automatically generated.")
    assert not is_generated_card("# My own card")


def test_backward_classifier_card_matches_what_the_model_does():
    """The card of a backward classifier says to pass documents in reading order (the model reverses them itself),
    and that is what the model does: its logits equal those of the same weights read forward on the reversed ids."""
    torch.manual_seed(0)
    backward = AwdLstmForSequenceClassification(small_config(backwards=True)).eval()
    text = " ".join(build_model_card(backward, repo_id="me/awd").text.split())
    assert "reverses each document itself" in text and "in reading order" in text
    assert "Reverse each document's token ids yourself" not in text
    forward = AwdLstmForSequenceClassification(small_config()).eval()
    forward.load_state_dict(backward.state_dict())
    ids = torch.randint(2, 60, (1, 37))
    with torch.no_grad():
        torch.testing.assert_close(backward(ids).logits, forward(ids.flip(1)).logits, atol=1e-6, rtol=0)
