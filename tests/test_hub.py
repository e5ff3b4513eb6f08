"""push_to_hub / from_pretrained round trips through an in-process fake of the Hub (`fake_hub.py`): weights,
remote code, the tokenizer and hf_bpt3c's model card; a card the user put on the Hub is kept."""

from __future__ import annotations

import huggingface_hub
import pytest
import torch
from conftest import small_config
from fake_hub import FakeHub, fake_hub_fixture, installed  # noqa: F401 (fake_hub_fixture: the `fake_hub` fixture)
from huggingface_hub import ModelCard, constants
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    pipeline,
)
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from hf_bpt3c import AwdLstmConfig, AwdLstmForCausalLM, AwdLstmForSequenceClassification
from hf_bpt3c.model_card import MODEL_CARD_MARKER, TRANSFORMERS_GENERIC_CARD_TEXT, push_model_card
from hf_bpt3c.models.awd_lstm.tokenization_awd_lstm import AwdLstmTokenizer

UPLOADED = {"config.json", "model.safetensors", "modeling_awd_lstm.py", "configuration_awd_lstm.py", "README.md"}
TEXTS = [
    "The film was GREAT, really great!!!",
    "A dull, slow and overlong story.",
    "I'd watch it again... maybe.",
]


def classifier() -> AwdLstmForSequenceClassification:
    config = small_config(id2label={0: "neg", 1: "neu", 2: "pos"})
    return AwdLstmForSequenceClassification(config).eval()


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


def hub_card(hub: FakeHub, repo_id: str) -> ModelCard:
    return ModelCard(hub.files(repo_id)["README.md"].decode())


@pytest.fixture
def without_local_classes(monkeypatch):
    """Hide hf_bpt3c's Auto registrations, so that `trust_remote_code=True` imports the code stored on the Hub."""
    extra = {k: v for k, v in CONFIG_MAPPING._extra_content.items() if k != AwdLstmConfig.model_type}
    monkeypatch.setattr(CONFIG_MAPPING, "_extra_content", extra)
    for auto in (AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification):
        mapping = auto._model_mapping
        monkeypatch.setattr(
            mapping, "_extra_content", {k: v for k, v in mapping._extra_content.items() if k is not AwdLstmConfig}
        )


def test_classifier_round_trip_with_our_card(fake_hub: FakeHub):
    model = classifier()
    model.model_card_info = {"datasets": ["imdb"], "eval_results": {"accuracy": 0.8}, "training": "3 epochs."}
    model.push_to_hub("user/clf", tags=["my-tag"])

    assert UPLOADED <= set(fake_hub.files("user/clf"))
    ids = torch.randint(2, model.config.vocab_size, (2, 23))
    loaded = AutoModelForSequenceClassification.from_pretrained("user/clf").eval()
    assert type(loaded) is AwdLstmForSequenceClassification
    assert torch.equal(logits(loaded, ids), logits(model, ids))
    assert loaded.config.id2label == model.config.id2label

    card = hub_card(fake_hub, "user/clf")
    assert MODEL_CARD_MARKER in card.text
    assert card.data.pipeline_tag == "text-classification" and card.data.library_name == "transformers"
    assert {"awd-lstm", "ulmfit", "bpt3c", "my-tag"} <= set(card.data.tags)
    assert card.data.model_name == "clf" and card.data.eval_results[0].metric_value == 0.8
    assert 'from_pretrained("user/clf", trust_remote_code=True)' in card.text
    # transformers first uploaded its generic card, which ours then replaced
    readmes = [files["README.md"].decode() for files in fake_hub.repos["user/clf"].commits.values()]
    assert TRANSFORMERS_GENERIC_CARD_TEXT in readmes[0] and MODEL_CARD_MARKER in readmes[-1]


def test_language_model_round_trip(fake_hub: FakeHub):
    model = AwdLstmForCausalLM(small_config()).eval()
    model.push_to_hub("user/lm")

    assert UPLOADED <= set(fake_hub.files("user/lm"))
    ids = torch.randint(2, model.config.vocab_size, (2, 17))
    loaded = AutoModelForCausalLM.from_pretrained("user/lm").eval()
    assert torch.equal(logits(loaded, ids), logits(model, ids))
    assert hub_card(fake_hub, "user/lm").data.pipeline_tag == "text-generation"


@pytest.mark.usefixtures("without_local_classes")
@pytest.mark.parametrize(
    ("model_class", "auto_class"),
    [
        (AwdLstmForSequenceClassification, AutoModelForSequenceClassification),
        (AwdLstmForCausalLM, AutoModelForCausalLM),
    ],
)
def test_remote_code_from_the_hub(fake_hub: FakeHub, model_class, auto_class):
    model = model_class(small_config()).eval()
    model.push_to_hub("user/remote")

    loaded = auto_class.from_pretrained("user/remote", trust_remote_code=True).eval()
    assert type(loaded).__module__.startswith("transformers_modules."), type(loaded).__module__
    ids = torch.randint(2, model.config.vocab_size, (3, 12))
    assert torch.equal(logits(loaded, ids), logits(model, ids))


def test_a_user_card_on_the_hub_is_kept(fake_hub: FakeHub):
    mine = b"---\nlicense: mit\n---\n\n# My classifier\n\nWritten by hand.\n"
    fake_hub.put("user/mine", {"README.md": mine})
    model = classifier()
    model.push_to_hub("user/mine")

    assert UPLOADED <= set(fake_hub.files("user/mine"))
    card = hub_card(fake_hub, "user/mine")
    assert "Written by hand." in card.text and MODEL_CARD_MARKER not in card.text
    assert card.data.license == "mit"
    assert push_model_card("user/mine", model) is False


def test_pushing_again_updates_our_card(fake_hub: FakeHub):
    model = classifier()
    model.model_card_info = {"eval_results": {"accuracy": 0.5}}
    model.push_to_hub("user/again")
    model.model_card_info = {"eval_results": {"accuracy": 0.75}}
    model.push_to_hub("user/again")

    card = hub_card(fake_hub, "user/again")
    assert [r.metric_value for r in card.data.eval_results] == [0.75]
    assert push_model_card("user/again", model) is False  # unchanged: no empty commit


@pytest.mark.usefixtures("without_local_classes")
def test_tokenizer_and_pipeline_from_the_hub(fake_hub: FakeHub):
    tokenizer = AwdLstmTokenizer.from_texts(TEXTS, max_vocab=60, min_freq=1)
    model = classifier()
    tokenizer.push_to_hub("user/clf")
    model.push_to_hub("user/clf")

    expected = tokenizer(TEXTS)["input_ids"]
    assert AwdLstmTokenizer.from_pretrained("user/clf")(TEXTS)["input_ids"] == expected
    remote = AutoTokenizer.from_pretrained("user/clf", trust_remote_code=True)
    assert remote(TEXTS)["input_ids"] == expected

    classify = pipeline("text-classification", model="user/clf", trust_remote_code=True)  # as the card says
    assert type(classify.model).__module__.startswith("transformers_modules.")
    (prediction,) = classify(TEXTS[:1])
    expected_label = logits(model, torch.tensor(expected[:1])).argmax(-1).item()
    assert prediction["label"] == model.config.id2label[expected_label]


def test_installed_restores_the_client_and_offline_mode(tmp_path):
    offline = constants.HF_HUB_OFFLINE
    factory = huggingface_hub.utils._http._GLOBAL_CLIENT_FACTORY
    with installed(FakeHub(), tmp_path) as hub:
        assert constants.HF_HUB_OFFLINE is False
        assert constants.HF_HUB_CACHE == str(tmp_path / "hub")
        hub.put("user/x", {"a.txt": b"hello"})
        assert open(huggingface_hub.hf_hub_download("user/x", "a.txt"), "rb").read() == b"hello"
        with pytest.raises(huggingface_hub.errors.EntryNotFoundError):
            huggingface_hub.hf_hub_download("user/x", "missing.txt")
    assert constants.HF_HUB_OFFLINE == offline
    assert huggingface_hub.utils._http._GLOBAL_CLIENT_FACTORY is factory
