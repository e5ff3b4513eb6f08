"""An independent, deliberately plain BPT3C reference for the tests (not the package's code path).

One document at a time, `nn.LSTM` layers loaded with the model's weights, a Python loop over `bptt` chunks that
detaches the state at every boundary, kept chunks concatenated, fastai's masked concat pooling, the head in eval.
"""

from __future__ import annotations

import torch
from torch import nn


def reference_lstms(model) -> list[nn.LSTM]:
    """`nn.LSTM` copies of the model's layers (eval weights, no dropout)."""
    lstms = []
    for layer in model.awd_lstm.layers:
        lstm = nn.LSTM(layer.input_size, layer.hidden_size, batch_first=True).to(layer.weight_ih.dtype)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(lstm, f"{name}_l0").copy_(getattr(layer, name))
        lstms.append(lstm)
    return lstms


def reference_bpt3c(model, embeds: torch.Tensor) -> torch.Tensor:
    """embeds: `(seq, emb)` of ONE document -> logits `(num_labels,)`; gradients flow as BPT3C defines. With
    `config.classifier_pooling == "document"` the chunks before the kept window are pooled too, run without
    autograd."""
    bptt, max_len = model.config.bptt, model.config.max_len
    pool_document = getattr(model.config, "classifier_pooling", "window") == "document"
    lstms = reference_lstms(model)
    seq = embeds.size(0)
    state = [None] * len(lstms)
    kept = []
    for start in range(0, seq, bptt):
        in_window = seq - start <= max_len  # fastai's rule: the chunk starts within the last max_len tokens
        with torch.set_grad_enabled(in_window and torch.is_grad_enabled()):
            x = embeds[start : start + bptt].unsqueeze(0)
            for i, lstm in enumerate(lstms):
                hidden = None if state[i] is None else tuple(s.detach() for s in state[i])
                x, state[i] = lstm(x, hidden)
        if in_window or pool_document:
            kept.append(x[0])
    outputs = torch.cat(kept)  # (kept_tokens, emb)
    pooled = torch.cat([outputs[-1], outputs.max(dim=0).values, outputs.mean(dim=0)])
    return model.classifier(pooled.unsqueeze(0))[0]
