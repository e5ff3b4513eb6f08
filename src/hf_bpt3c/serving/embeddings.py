"""Document embeddings for a corpus: one vector per text, whatever its length.

    vectors = embed(texts, model, tokenizer, batch_size=32)   # (len(texts), 3 * embedding_size), texts' order

For a language model (`AwdLstmForCausalLM`) or an encoder (`AwdLstmModel`) each vector is the concat pooling
[output at the last token, max, mean] of the last layer over the whole document (`AwdLstmModel.document_embeddings`,
read in `bptt` chunks, memory bounded at any length); for a classifier it is what its head sees
(`AwdLstmForSequenceClassification.document_embeddings`: the pooling of the kept window, fastai's rule).
`pipeline("feature-extraction")` keeps its token-level meaning (the last layer's output at every token).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..models.awd_lstm.modeling_awd_lstm import AwdLstmForSequenceClassification, AwdLstmPreTrainedModel
from .prediction import batched_rows


def embed(
    texts: Sequence[str], model: AwdLstmPreTrainedModel, tokenizer, batch_size: int = 32, progress: bool = True
) -> torch.Tensor:
    """Embed `texts` with `model` (any hf_bpt3c AWD-LSTM model): `(len(texts), 3 * embedding_size)` float32, row i
    the vector of `texts[i]`. Documents are batched longest first; a document's vector does not depend on its
    batch. `progress` shows a bar over the batches."""
    if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
        raise TypeError("texts must be a list of str")
    if not isinstance(model, AwdLstmPreTrainedModel):
        raise TypeError(f"model must be an hf_bpt3c AWD-LSTM model, got {type(model).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    reader = model if isinstance(model, AwdLstmForSequenceClassification) else model.base_model
    if not texts:
        return torch.zeros(0, 3 * model.config.embedding_size)
    input_ids = tokenizer(list(texts))["input_ids"]
    device = next(model.parameters()).device
    return batched_rows(reader.document_embeddings, tokenizer, input_ids, batch_size, device, progress, "embedding")


__all__ = ["embed"]
