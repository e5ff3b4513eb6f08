"""fastai's layer groups of an AWD-LSTM model and freezing by group: what discriminative learning rates, gradual
unfreezing and the learning-rate finder work on."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..models.awd_lstm.modeling_awd_lstm import AwdLstmForCausalLM, AwdLstmForSequenceClassification, AwdLstmModel


def layer_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """fastai's layer groups, lowest first (the last group is unfrozen first and gets the highest lr).

    - classifier (`awd_lstm_clas_split`): [embedding], [LSTM 0], ..., [LSTM n-1], [head];
    - language model (`awd_lstm_lm_split`): [LSTM 0], ..., [LSTM n-1], [embedding + decoder];
    - encoder: [embedding], [LSTM 0], ..., [LSTM n-1].
    """
    if isinstance(model, AwdLstmForSequenceClassification):
        encoder = model.awd_lstm
        return [list(encoder.embeddings.parameters())] + _lstm_groups(encoder) + [list(model.classifier.parameters())]
    if isinstance(model, AwdLstmForCausalLM):
        encoder = model.awd_lstm
        top = _unique([*encoder.embeddings.parameters(), *model.decoder.parameters()])
        return _lstm_groups(encoder) + [top]
    if isinstance(model, AwdLstmModel):
        return [list(model.embeddings.parameters())] + _lstm_groups(model)
    raise TypeError(f"model must be an hf_bpt3c AWD-LSTM model, got {type(model).__name__}")


def _lstm_groups(encoder: AwdLstmModel) -> list[list[nn.Parameter]]:
    return [list(layer.parameters()) for layer in encoder.layers]


def _unique(params: Sequence[nn.Parameter]) -> list[nn.Parameter]:
    """Drop repeats (the decoder weight is tied to the embedding)."""
    seen, unique = set(), []
    for param in params:
        if id(param) not in seen:
            seen.add(id(param))
            unique.append(param)
    return unique


def freeze_to(groups: list[list[nn.Parameter]], n_trainable: int) -> None:
    """Make the last `n_trainable` groups trainable and freeze the others (fastai's `freeze_to(-n)`)."""
    first_trainable = max(0, len(groups) - n_trainable)
    for k, params in enumerate(groups):
        for param in params:
            param.requires_grad_(k >= first_trainable)


__all__ = ["layer_groups", "freeze_to"]
