"""hf_bpt3c: ULMFiT's AWD-LSTM and its BPT3C long-document classifier as Hugging Face Transformers models.

Importing the package registers every class with the transformers Auto classes. The modules of each concern load
on first use: `hf_bpt3c.training`, `hf_bpt3c.data`, `hf_bpt3c.convert`, `hf_bpt3c.interpret`, ...
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

from .configuration_awd_lstm import AwdLstmConfig
from .ensemble import EnsemblePrediction, ensemble_predict
from .modeling_awd_lstm import (
    AwdLstmCausalLMOutput,
    AwdLstmForCausalLM,
    AwdLstmForSequenceClassification,
    AwdLstmModel,
    AwdLstmOutput,
    AwdLstmPreTrainedModel,
)
from .quantization import quantize_for_cpu
from .tokenization_awd_lstm import AwdLstmTokenizer

AutoConfig.register(AwdLstmConfig.model_type, AwdLstmConfig, exist_ok=True)
AutoModel.register(AwdLstmConfig, AwdLstmModel, exist_ok=True)
AutoModelForCausalLM.register(AwdLstmConfig, AwdLstmForCausalLM, exist_ok=True)
AutoModelForSequenceClassification.register(AwdLstmConfig, AwdLstmForSequenceClassification, exist_ok=True)
AutoTokenizer.register(AwdLstmConfig, tokenizer_class=AwdLstmTokenizer, exist_ok=True)

# save_pretrained copies the configuration and modeling files next to the weights (remote code)
AwdLstmConfig.register_for_auto_class()
AwdLstmModel.register_for_auto_class("AutoModel")
AwdLstmForCausalLM.register_for_auto_class("AutoModelForCausalLM")
AwdLstmForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")

try:
    __version__ = version("hf_bpt3c")  # pyproject.toml's, as installed
except PackageNotFoundError:  # a source tree on sys.path without installing it
    __version__ = "0+unknown"

_SUBMODULES = (
    "bpt3c_plan", "cli", "convert", "data", "download", "ensemble", "hardware", "interpret", "lr_finder",
    "lstm_kernels", "model_card", "onnx", "plots", "quantization", "saving", "training", "transfer", "validation",
)  # fmt: skip


def __getattr__(name: str):
    """`hf_bpt3c.training` etc. after `import hf_bpt3c`, imported when first used."""
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
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
    "EnsemblePrediction",
    "ensemble_predict",
    "quantize_for_cpu",
]
