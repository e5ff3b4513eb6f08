"""hf_bpt3c: ULMFiT's AWD-LSTM and its BPT3C long-document classifier as Hugging Face Transformers models.

Importing the package registers every class with the transformers Auto classes.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)

from . import interpret  # noqa: F401  (hf_bpt3c.interpret after `import hf_bpt3c`)
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

__version__ = "0.1.0"
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
]
