"""`ensemble_predict`: the mean of the models' probabilities, in the texts' order, checked against each model run
on one document at a time; and the ensemble saved as one model (`AwdLstmEnsembleForSequenceClassification`) loaded
as remote code without the package and round-tripped through the (fake) Hub."""

from __future__ import annotations

import json
import random
import textwrap

import numpy as np
import pytest
import torch
from conftest import run_without_hf_bpt3c, small_config
from fake_hub import FakeHub, fake_hub_fixture  # noqa: F401 (fake_hub_fixture: the `fake_hub` fixture)
from huggingface_hub import ModelCard
from test_core_boundary import CORE
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from hf_bpt3c import (
    AwdLstmConfig,
    AwdLstmEnsembleConfig,
    AwdLstmEnsembleForSequenceClassification,
    AwdLstmForCausalLM,
    AwdLstmForSequenceClassification,
    AwdLstmTokenizer,
    EnsemblePrediction,
    ensemble_predict,
)
from hf_bpt3c.model_card import MODEL_CARD_MARKER

WORDS = "the film was good bad long short plot actor music scene end very not quite fine".split()
LABELS = {0: "neg", 1: "mixed", 2: "pos"}


def texts_of_varied_lengths(n: int = 11) -> list[str]:
    """Documents of 1 to 60 words, shuffled so that the order is not the length order."""
    gen = random.Random(0)
    texts = [" ".join(gen.choice(WORDS) for _ in range(gen.randint(1, 60))) for _ in range(n)]
    gen.shuffle(texts)
    return texts


@pytest.fixture(scope="module")
def tokenizer() -> AwdLstmTokenizer:
    return AwdLstmTokenizer.from_texts([" ".join(WORDS)], min_freq=1)


def classifier(tokenizer, seed: int, **overrides) -> AwdLstmForSequenceClassification:
    torch.manual_seed(seed)
    config = small_config(vocab_size=len(tokenizer), id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    for key, value in overrides.items():
        setattr(config, key, value)
    return AwdLstmForSequenceClassification(config)


def one_at_a_time(model, tokenizer, texts: list[str], activation) -> np.ndarray:
    """Each document alone through the model in eval mode: `(len(texts), num_labels)`."""
    model.eval()
    rows = []
    with torch.no_grad():
        for text in texts:
            logits = model(**tokenizer(text, return_tensors="pt")).logits
            rows.append(activation(logits.double())[0].numpy())
    return np.stack(rows)


def test_mean_of_the_models_probabilities_in_input_order(tokenizer):
    texts = texts_of_varied_lengths()
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    assert lengths != sorted(lengths) and lengths != sorted(lengths, reverse=True)
    assert max(lengths) > 15  # several chunks (bptt 5) and longer than max_len
    models = [classifier(tokenizer, 0), classifier(tokenizer, 1, backwards=True), classifier(tokenizer, 2)]
    per_model = [one_at_a_time(m, tokenizer, texts, lambda x: x.softmax(-1)) for m in models]
    expected = np.mean(per_model, axis=0)
    models[2].train()  # left in training mode: predictions run in eval mode, and the mode is put back

    result = ensemble_predict(models, tokenizer, texts, batch_size=4)

    assert isinstance(result, EnsemblePrediction)
    assert result.probabilities.shape == (len(texts), 3)
    np.testing.assert_allclose(result.probabilities, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, rtol=1e-6)
    assert result.label_ids.tolist() == expected.argmax(axis=1).tolist()
    assert result.labels == [LABELS[i] for i in expected.argmax(axis=1)]
    assert models[2].training and not models[0].training
    single = ensemble_predict(models[:1], tokenizer, texts, batch_size=3)
    np.testing.assert_allclose(single.probabilities, per_model[0], rtol=1e-5, atol=1e-6)


def test_multi_label_models_average_sigmoids(tokenizer):
    texts = texts_of_varied_lengths(7)
    models = [classifier(tokenizer, seed, problem_type="multi_label_classification") for seed in (3, 4)]
    expected = np.mean([one_at_a_time(m, tokenizer, texts, torch.sigmoid) for m in models], axis=0)
    result = ensemble_predict(models, tokenizer, texts)
    np.testing.assert_allclose(result.probabilities, expected, rtol=1e-5, atol=1e-6)
    assert result.label_ids.tolist() == (expected >= 0.5).tolist()
    assert result.labels == [[LABELS[j] for j in range(3) if row[j] >= 0.5] for row in expected]


def test_no_texts(tokenizer):
    result = ensemble_predict([classifier(tokenizer, 0)], tokenizer, [])
    assert result.probabilities.shape == (0, 3) and result.labels == []


def test_errors_name_the_argument(tokenizer):
    model = classifier(tokenizer, 0)
    with pytest.raises(ValueError, match="models is empty"):
        ensemble_predict([], tokenizer, ["good"])
    with pytest.raises(TypeError, match="models must be a list"):
        ensemble_predict(model, tokenizer, ["good"])
    with pytest.raises(TypeError, match=r"models\[1\]"):
        ensemble_predict([model, "a model"], tokenizer, ["good"])
    two_labels = classifier(tokenizer, 1, num_labels=2)
    with pytest.raises(ValueError, match=r"models\[1\] predicts 2 labels"):
        ensemble_predict([model, two_labels], tokenizer, ["good"])
    renamed = classifier(tokenizer, 1, id2label={0: "a", 1: "b", 2: "c"})
    with pytest.raises(ValueError, match=r"models\[1\] has the labels"):
        ensemble_predict([model, renamed], tokenizer, ["good"])
    regression = classifier(tokenizer, 1, num_labels=1, problem_type="regression")
    with pytest.raises(ValueError, match=r"models\[0\] is a regression model"):
        ensemble_predict([regression], tokenizer, ["good"])
    language_model = AwdLstmForCausalLM(small_config(vocab_size=len(tokenizer), id2label=LABELS))  # num_labels 3
    with pytest.raises(ValueError, match=r"models\[1\] returned logits of shape \(1, \d+, \d+\)"):
        ensemble_predict([model, language_model], tokenizer, ["good"])
    with pytest.raises(TypeError, match=r"texts\[1\] must be a string"):
        ensemble_predict([model], tokenizer, ["good", 3])
    with pytest.raises(TypeError, match="texts must be a list"):
        ensemble_predict([model], tokenizer, "good film")
    with pytest.raises(ValueError, match=r"texts\[0\] is empty"):
        ensemble_predict([model], tokenizer, ["  "])
    with pytest.raises(ValueError, match="batch_size"):
        ensemble_predict([model], tokenizer, ["good"], batch_size=0)


# ----------------------------------------------------------------------------------------------------------------
# The ensemble as one model (`AwdLstmEnsembleForSequenceClassification`): remote code, the Hub
# ----------------------------------------------------------------------------------------------------------------

ENSEMBLE_LOADER = textwrap.dedent(
    """
    import json, sys

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder, texts = sys.argv[1], json.loads(sys.argv[2])
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    print(json.dumps({
        "ids": batch["input_ids"].tolist(),
        "logits": logits.tolist(),
        "model": f"{type(model).__module__}.{type(model).__name__}",
        "members": [type(m).__module__ for m in model.members],
    }))
    """
)


def ensemble_of(
    tokenizer, problem_type: str = "single_label_classification"
) -> AwdLstmEnsembleForSequenceClassification:
    """A forward and a backward member with non-trivial BatchNorm statistics."""
    members = [classifier(tokenizer, 5, problem_type=problem_type), classifier(tokenizer, 6, backwards=True)]
    members[1].config.problem_type = problem_type
    with torch.no_grad():
        for model in members:
            for block in model.classifier.blocks:
                block.batch_norm.running_mean.normal_(0, 0.3)
                block.batch_norm.running_var.uniform_(0.2, 2.0)
    return AwdLstmEnsembleForSequenceClassification.from_members(members)


@pytest.mark.parametrize("problem_type", ["single_label_classification", "multi_label_classification"])
def test_saved_ensemble_loads_as_remote_code_without_the_package(tokenizer, tmp_path, problem_type):
    ensemble = ensemble_of(tokenizer, problem_type)
    ensemble.save_pretrained(tmp_path / "ensemble")
    tokenizer.save_pretrained(tmp_path / "ensemble")
    texts = texts_of_varied_lengths(5)
    result = run_without_hf_bpt3c(ENSEMBLE_LOADER, str(tmp_path / "ensemble"), json.dumps(texts), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["model"].startswith("transformers_modules.")
    assert loaded["model"].endswith(".modeling_awd_lstm_ensemble.AwdLstmEnsembleForSequenceClassification")
    assert all(module.startswith("transformers_modules.") for module in loaded["members"])
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    assert loaded["ids"] == batch["input_ids"].tolist()
    with torch.no_grad():
        expected = ensemble(**batch).logits
    torch.testing.assert_close(torch.tensor(loaded["logits"]), expected, atol=1e-6, rtol=0)


@pytest.fixture
def without_local_ensemble(monkeypatch):
    """Hide hf_bpt3c's Auto registrations of the ensemble and its members, so that `trust_remote_code=True`
    imports the code stored on the Hub."""
    ours = (AwdLstmConfig.model_type, AwdLstmEnsembleConfig.model_type)
    extra = {k: v for k, v in CONFIG_MAPPING._extra_content.items() if k not in ours}
    monkeypatch.setattr(CONFIG_MAPPING, "_extra_content", extra)
    mapping = AutoModelForSequenceClassification._model_mapping
    kept = {k: v for k, v in mapping._extra_content.items() if k not in (AwdLstmConfig, AwdLstmEnsembleConfig)}
    monkeypatch.setattr(mapping, "_extra_content", kept)


def test_push_to_hub_uploads_one_repository_that_loads_back(tokenizer, fake_hub: FakeHub, request):
    ensemble = ensemble_of(tokenizer)
    ensemble.model_card_info = {
        "eval_results": {
            "accuracy": 0.84,
            "forward_accuracy": 0.81,
            "backward_accuracy": 0.79,
            "split": "validation",
            "task": "text-classification",
        },
        "training": "ULMFiT's forward + backward ensemble.",
    }
    tokenizer.push_to_hub("user/ensemble")
    ensemble.push_to_hub("user/ensemble")

    files = fake_hub.files("user/ensemble")
    core = {p.name for p in CORE.glob("*.py") if p.name != "__init__.py"}
    assert {"config.json", "model.safetensors", "tokenizer_config.json", "README.md"} <= set(files)
    assert {"modeling_awd_lstm_ensemble.py", "configuration_awd_lstm_ensemble.py", "modeling_awd_lstm.py"} <= set(files)
    assert {name for name in files if name.endswith(".py")} <= core
    assert [name for name in files if name.lower().endswith(".md")] == ["README.md"]  # one model card
    card = ModelCard(files["README.md"].decode())
    assert MODEL_CARD_MARKER in card.text and "AwdLstmEnsembleForSequenceClassification" in card.text
    metrics = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert metrics == {"accuracy": 0.84, "forward_accuracy": 0.81, "backward_accuracy": 0.79}
    assert "| 0 | forward |" in card.text and "| 1 | backward |" in card.text  # the members
    assert "ensemble" in card.data.tags and card.data.pipeline_tag == "text-classification"

    texts = texts_of_varied_lengths(4)
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = ensemble(**batch).logits
        loaded = AutoModelForSequenceClassification.from_pretrained("user/ensemble").eval()
        assert type(loaded) is AwdLstmEnsembleForSequenceClassification
        hub_tokenizer = AutoTokenizer.from_pretrained("user/ensemble")
        assert hub_tokenizer(texts)["input_ids"] == tokenizer(texts)["input_ids"]
        torch.testing.assert_close(loaded(**batch).logits, expected, atol=1e-6, rtol=0)
        request.getfixturevalue("without_local_ensemble")  # and as remote code, from the Hub's files
        remote = AutoModelForSequenceClassification.from_pretrained("user/ensemble", trust_remote_code=True).eval()
        assert type(remote).__module__.startswith("transformers_modules.")
        torch.testing.assert_close(remote(**batch).logits, expected, atol=1e-6, rtol=0)
