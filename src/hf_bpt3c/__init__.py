"""hf_bpt3c: ULMFiT's AWD-LSTM and its BPT3C long-document classifier as Hugging Face Transformers models.

Importing the package registers every class with the transformers Auto classes. The modules of each concern load
on first use: `hf_bpt3c.training`, `hf_bpt3c.training.data`, `hf_bpt3c.convert`, `hf_bpt3c.interpret`, ...
"""

import importlib
from importlib.metadata import PackageNotFoundError, version

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)

from .models.awd_lstm import (
    AwdLstmCache,
    AwdLstmCausalLMOutput,
    AwdLstmConfig,
    AwdLstmEnsembleConfig,
    AwdLstmEnsembleForSequenceClassification,
    AwdLstmForCausalLM,
    AwdLstmForSequenceClassification,
    AwdLstmModel,
    AwdLstmOutput,
    AwdLstmPreTrainedModel,
    AwdLstmTokenizer,
    saving,
)
from .serving import EnsemblePrediction, embed, ensemble_predict, quantize_for_cpu

AutoConfig.register(AwdLstmConfig.model_type, AwdLstmConfig, exist_ok=True)
AutoModel.register(AwdLstmConfig, AwdLstmModel, exist_ok=True)
AutoModelForCausalLM.register(AwdLstmConfig, AwdLstmForCausalLM, exist_ok=True)
AutoModelForSequenceClassification.register(AwdLstmConfig, AwdLstmForSequenceClassification, exist_ok=True)
AutoTokenizer.register(AwdLstmConfig, tokenizer_class=AwdLstmTokenizer, exist_ok=True)
AutoConfig.register(AwdLstmEnsembleConfig.model_type, AwdLstmEnsembleConfig, exist_ok=True)
AutoModelForSequenceClassification.register(
    AwdLstmEnsembleConfig, AwdLstmEnsembleForSequenceClassification, exist_ok=True
)
AutoTokenizer.register(AwdLstmEnsembleConfig, tokenizer_class=AwdLstmTokenizer, exist_ok=True)


def _write_model_card(folder, model):
    from .model_card import write_model_card

    return write_model_card(folder, model)


def _push_model_card(repo_id, model, **kwargs):
    from .model_card import push_model_card

    return push_model_card(repo_id, model, **kwargs)


# every save_pretrained / push_to_hub of a model writes hf_bpt3c's model card (the templates live in this package)
saving.set_model_card_hooks(saving.ModelCardHooks(write=_write_model_card, push=_push_model_card))

# save_pretrained copies the configuration and modeling files next to the weights (remote code)
AwdLstmConfig.register_for_auto_class()
AwdLstmModel.register_for_auto_class("AutoModel")
AwdLstmForCausalLM.register_for_auto_class("AutoModelForCausalLM")
AwdLstmForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
AwdLstmEnsembleConfig.register_for_auto_class()
AwdLstmEnsembleForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")

try:
    __version__ = version("hf_bpt3c")  # pyproject.toml's, as installed
except PackageNotFoundError:  # a source tree on sys.path without installing it
    __version__ = "0+unknown"

_SUBPACKAGES = ("cli", "convert", "interpret", "model_card", "models", "plots", "serving", "training")
# module paths of the previous flat layout, still reachable as attributes (`hf_bpt3c.onnx`) for one release
_MOVED = {
    "bpt3c_plan": "models.awd_lstm.bpt3c_plan",
    "configuration_awd_lstm": "models.awd_lstm.configuration_awd_lstm",
    "hardware": "models.awd_lstm.hardware",
    "lstm_kernels": "models.awd_lstm.lstm_kernels",
    "modeling_awd_lstm": "models.awd_lstm.modeling_awd_lstm",
    "saving": "models.awd_lstm.saving",
    "tokenization_awd_lstm": "models.awd_lstm.tokenization_awd_lstm",
    "validation": "models.awd_lstm.validation",
    "data": "training.data",
    "lr_finder": "training.lr_finder",
    "ensemble": "serving.ensemble",
    "onnx": "serving.onnx",
    "quantization": "serving.quantization",
    "download": "convert.download",
    "transfer": "convert.transfer",
}


def __getattr__(name: str):
    """`hf_bpt3c.training` etc. after `import hf_bpt3c`, imported when first used."""
    if name in _SUBPACKAGES or name in _MOVED:
        return importlib.import_module(f".{_MOVED.get(name, name)}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AwdLstmConfig",
    "AwdLstmModel",
    "AwdLstmForCausalLM",
    "AwdLstmForSequenceClassification",
    "AwdLstmTokenizer",
    "AwdLstmPreTrainedModel",
    "AwdLstmOutput",
    "AwdLstmCausalLMOutput",
    "AwdLstmEnsembleConfig",
    "AwdLstmEnsembleForSequenceClassification",
    "AwdLstmCache",
    "EnsemblePrediction",
    "embed",
    "ensemble_predict",
    "quantize_for_cpu",
]
