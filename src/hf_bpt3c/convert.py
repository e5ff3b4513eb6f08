"""Map fastai AWD-LSTM state dicts (v2, v1 and 0.7 layouts) onto hf_bpt3c's parameter names.

fastai key layouts (see the project notes, bpt3c-reference §1.5):
- v2 LM:  `0.encoder.weight`, `0.encoder_dp.emb.weight` (alias), `0.rnns.{i}.weight_hh_l0_raw`,
  `0.rnns.{i}.module.{weight_ih_l0,bias_ih_l0,bias_hh_l0}`, `1.decoder.weight` (tied), `1.decoder.bias`;
- v2 classifier: the same encoder under `0.module.`, the head under `1.layers.{k}.0.*` (BatchNorm1d) and
  `1.layers.{k}.2.weight` (Linear without bias);
- v1: as v2 plus a duplicate `0.rnns.{i}.module.weight_hh_l0` (dropped);
- 0.7: the raw recurrent weight under `0.rnns.{i}.module.weight_hh_l0_raw`, `encoder_with_dropout.embed.weight`
  as the alias, and no decoder bias.
"""

from __future__ import annotations

import re

import torch

_LAYER_KEY = re.compile(r"^rnns\.(\d+)\.(?:module\.)?(weight_ih_l0|weight_hh_l0_raw|bias_ih_l0|bias_hh_l0)$")
_HEAD_KEY = re.compile(r"^layers\.(\d+)\.(0|2)\.(.+)$")
_LAYER_NAMES = {
    "weight_ih_l0": "weight_ih",
    "weight_hh_l0_raw": "weight_hh",
    "bias_ih_l0": "bias_ih",
    "bias_hh_l0": "bias_hh",
}
_ENCODER_ALIASES = ("encoder_dp.emb.weight", "encoder_with_dropout.embed.weight")


def is_fastai_classifier(state_dict: dict[str, torch.Tensor]) -> bool:
    """True for a fastai text classifier (`SequentialRNN(SentenceEncoder, PoolingLinearClassifier)`)."""
    return any(key.startswith("1.layers.") for key in state_dict)


def _encoder_key(key: str) -> str | None:
    """fastai encoder key (without the `0.`/`0.module.` prefix) -> hf key under `awd_lstm.`, None to drop."""
    if key == "encoder.weight":
        return "awd_lstm.embeddings.weight"
    if key in _ENCODER_ALIASES:
        return None
    match = _LAYER_KEY.match(key)
    if match:
        return f"awd_lstm.layers.{match.group(1)}.{_LAYER_NAMES[match.group(2)]}"
    if re.fullmatch(r"rnns\.\d+\.module\.weight_hh_l0", key):
        return None  # v1's dropped copy of the raw weight
    raise KeyError(f"unknown fastai encoder key {key!r}")


def fastai_to_hf_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a fastai LM or classifier state dict (v2, v1 or 0.7) to hf_bpt3c keys.

    LM keys become `awd_lstm.*` and `decoder.bias` (the tied `decoder.weight` is dropped); classifier head keys
    become `classifier.blocks.{k}.batch_norm.*` and `classifier.blocks.{k}.linear.weight`.
    """
    converted = {}
    for key, tensor in state_dict.items():
        head, _, rest = key.partition(".")
        if head == "0":
            new_key = _encoder_key(rest.removeprefix("module."))
        elif rest == "decoder.bias":
            new_key = "decoder.bias"
        elif rest == "decoder.weight":
            new_key = None  # tied to the embedding
        else:
            match = _HEAD_KEY.match(rest)
            if not match:
                raise KeyError(f"unknown fastai key {key!r}")
            block, part, name = match.groups()
            new_key = f"classifier.blocks.{block}.{'batch_norm' if part == '0' else 'linear'}.{name}"
        if new_key is not None:
            converted[new_key] = tensor
    return converted


def config_kwargs_from_fastai(state_dict: dict[str, torch.Tensor]) -> dict:
    """Sizes read from a fastai state dict: vocab, embedding, hidden size, layers, head sizes and labels."""
    hf = fastai_to_hf_state_dict(state_dict)
    vocab_size, embedding_size = hf["awd_lstm.embeddings.weight"].shape
    n_layers = 1 + max(int(k.split(".")[2]) for k in hf if k.startswith("awd_lstm.layers."))
    kwargs = dict(vocab_size=vocab_size, embedding_size=embedding_size, num_hidden_layers=n_layers)
    if n_layers > 1:
        kwargs["hidden_size"] = hf["awd_lstm.layers.0.weight_hh"].shape[1]
    head = sorted((k for k in hf if k.endswith(".linear.weight")), key=lambda k: int(k.split(".")[2]))
    if head:
        out_sizes = [hf[k].shape[0] for k in head]
        kwargs["classifier_hidden_sizes"] = out_sizes[:-1]
        kwargs["num_labels"] = out_sizes[-1]
        kwargs["classifier_dropouts"] = [0.1] * (len(out_sizes) - 1)
    return kwargs


__all__ = ["fastai_to_hf_state_dict", "config_kwargs_from_fastai", "is_fastai_classifier"]
