"""The AWD-LSTM core: exactly the files that `save_pretrained` ships next to every model as remote code.

Every module here imports only the standard library, torch, the Hugging Face stack and its siblings (relatively),
so that a saved model and tokenizer load with `trust_remote_code=True` where hf_bpt3c is not installed
(tests/test_core_boundary.py walks the imports). Everything else of the package (training, serving, conversion,
interpretation) builds on top of this folder and is never shipped with a model.

- `configuration_awd_lstm`: `AwdLstmConfig`;
- `modeling_awd_lstm`: the encoder, the causal LM and the BPT3C classifier;
- `configuration_awd_lstm_ensemble`, `modeling_awd_lstm_ensemble`: classifiers (forward + backward) as one model;
- `tokenization_awd_lstm` (+ `fastai_rules`, `sentencepiece_backend`, `spacy_english_exceptions`): fastai's
  tokenization, word level or SentencePiece; `safe_pickle`: vocabulary pickles read without running code;
- `lstm_kernels`: one LSTM layer over a chunk, behind `lstm_forward`;
- `bpt3c_plan`: how a batch of documents is read (chunks, rows, kept tokens) and the loop that reads it;
- `validation`, `saving`, `hardware`: inputs and labels, files and the Hub, where bfloat16 is native.
"""

from .configuration_awd_lstm import AwdLstmConfig
from .configuration_awd_lstm_ensemble import AwdLstmEnsembleConfig
from .modeling_awd_lstm import (
    AwdLstmCache,
    AwdLstmCausalLMOutput,
    AwdLstmForCausalLM,
    AwdLstmForSequenceClassification,
    AwdLstmModel,
    AwdLstmOutput,
    AwdLstmPreTrainedModel,
)
from .modeling_awd_lstm_ensemble import AwdLstmEnsembleForSequenceClassification
from .tokenization_awd_lstm import AwdLstmTokenizer

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
]
