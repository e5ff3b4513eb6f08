"""Checks of what a model is given: one path for `input_ids` / `inputs_embeds` / `attention_mask` (the encoder, the
language model and the classifier), and the classifier's `labels`. Bad input raises a `ValueError` or `TypeError`
naming the argument and the expected form."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .bpt3c_plan import left_justify
from .configuration_awd_lstm import AwdLstmConfig


def checked_inputs(
    config: AwdLstmConfig,
    input_ids: torch.Tensor | None,
    inputs_embeds: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    *,
    allow_longer_mask: bool = False,
    pad_is_padding: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate a batch; return its tokens (`input_ids` `(batch, seq)` or `inputs_embeds` `(batch, seq, emb)`) and
    a bool `(batch, seq)` mask of the real tokens, or None when every position is one.

    allow_longer_mask: a mask longer than the input applies by its last `seq` columns (generation).
    pad_is_padding: without a mask, positions holding `config.pad_token_id` are padding (fastai's convention).
    """
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of input_ids (batch, seq) or inputs_embeds (batch, seq, emb)")
    if input_ids is not None:
        _check_input_ids(input_ids, config.vocab_size)
        tokens = input_ids
    else:
        _check_embeds(inputs_embeds, config.embedding_size)
        tokens = inputs_embeds
    batch, seq = tokens.shape[:2]
    if batch == 0 or seq == 0:
        raise ValueError(f"the batch is empty: expected shape (batch >= 1, seq >= 1), got {tuple(tokens.shape)}")
    if attention_mask is not None:
        mask = content_mask(attention_mask, batch, seq, allow_longer=allow_longer_mask)
    elif pad_is_padding and input_ids is not None and config.pad_token_id is not None:
        mask = input_ids != config.pad_token_id
        if rows_with_holes(mask).any():
            raise ValueError(
                f"input_ids hold pad_token_id={config.pad_token_id} between tokens and no attention_mask was given: "
                "pass attention_mask to say which positions are padding"
            )
    else:
        return tokens, None
    return tokens, None if bool(mask.all()) else mask


def _check_input_ids(input_ids: torch.Tensor, vocab_size: int) -> None:
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"input_ids must be a torch.LongTensor of shape (batch, seq), got {type(input_ids).__name__}")
    if input_ids.is_floating_point() or input_ids.is_complex() or input_ids.dtype == torch.bool:
        raise TypeError(f"input_ids must hold integer token ids (torch.long), got dtype {input_ids.dtype}")
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must have shape (batch, seq), got {tuple(input_ids.shape)}")
    if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= vocab_size):
        raise ValueError(
            f"input_ids must lie in [0, vocab_size={vocab_size}), got values in "
            f"[{int(input_ids.min())}, {int(input_ids.max())}]"
        )


def _check_embeds(inputs_embeds: torch.Tensor, embedding_size: int) -> None:
    if not isinstance(inputs_embeds, torch.Tensor) or not inputs_embeds.is_floating_point():
        raise TypeError("inputs_embeds must be a floating-point tensor of shape (batch, seq, embedding_size)")
    if inputs_embeds.dim() != 3 or inputs_embeds.size(-1) != embedding_size:
        raise ValueError(
            f"inputs_embeds must have shape (batch, seq, {embedding_size}), got {tuple(inputs_embeds.shape)}"
        )


def content_mask(attention_mask: torch.Tensor, batch: int, seq: int, allow_longer: bool = False) -> torch.Tensor:
    """Validate `attention_mask` and return it as bool `(batch, seq)`; each row's ones must be contiguous.

    With `allow_longer` a mask longer than the input is accepted and its last `seq` columns are used (generation
    passes the mask of the whole text while feeding only the new tokens).
    """
    if not isinstance(attention_mask, torch.Tensor):
        raise TypeError(f"attention_mask must be a tensor of shape ({batch}, {seq}), got {type(attention_mask)}")
    shape_ok = attention_mask.dim() == 2 and attention_mask.size(0) == batch
    shape_ok = shape_ok and (attention_mask.size(1) == seq or (allow_longer and attention_mask.size(1) > seq))
    if not shape_ok:
        raise ValueError(f"attention_mask must have shape ({batch}, {seq}), got {tuple(attention_mask.shape)}")
    mask = attention_mask[:, attention_mask.size(1) - seq :]
    if not ((mask == 0) | (mask == 1)).all():
        raise ValueError("attention_mask must contain only 0 (padding) and 1 (token)")
    mask = mask.bool()
    holes = rows_with_holes(mask)
    if holes.any():
        row = int(holes.nonzero()[0, 0])
        raise ValueError(
            f"attention_mask row {row} has padding between tokens; each row's tokens must be contiguous "
            "(left or right padding only)"
        )
    return mask


def rows_with_holes(mask: torch.Tensor) -> torch.Tensor:
    """bool `(batch,)`: rows whose tokens are not contiguous, i.e. with more than two 0/1 switches along the row
    (the borders counting as 0). mask: bool `(batch, seq)`."""
    return F.pad(mask.to(torch.int8), (1, 1)).diff(dim=1).abs().sum(dim=1) > 2


def justified_documents(
    config: AwdLstmConfig,
    input_ids: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    inputs_embeds: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a classifier's batch (`validation.checked_inputs`; without a mask, `pad_token_id` marks padding);
    return it with each document's tokens first, reversed for a backward model (`(batch, seq)` ids or
    `(batch, seq, emb)` embeddings), and the document lengths `(batch,)`."""
    tokens, mask = checked_inputs(config, input_ids, inputs_embeds, attention_mask, pad_is_padding=True)
    if mask is None:  # every position is a token: nothing to move
        lengths = torch.full(tokens.shape[:1], tokens.size(1), dtype=torch.long, device=tokens.device)
        return (tokens.flip(1) if config.backwards else tokens), lengths
    lengths = mask.sum(dim=1)
    if bool((lengths == 0).any()):
        row = int((lengths == 0).nonzero()[0, 0])
        raise ValueError(
            f"document {row} has no token (its attention_mask row is all 0): an empty document cannot be "
            "classified; tokenize it (the tokenizer adds xxbos) or drop it"
        )
    return left_justify(tokens, mask, reverse=config.backwards), lengths


def checked_state(state, sizes: list[int], batch: int):
    """A recurrent state given by the caller: one `(h, c)` pair per layer, each `(batch, size)` (ValueError else)."""
    if len(state) != len(sizes):
        raise ValueError(f"state must hold one (h, c) pair per layer ({len(sizes)}), got {len(state)}")
    for i, ((h, c), size) in enumerate(zip(state, sizes)):
        expected = (batch, size)
        if tuple(h.shape) != expected or tuple(c.shape) != expected:
            raise ValueError(
                f"state[{i}] must be (h, c) each of shape {expected}, got {tuple(h.shape)} and {tuple(c.shape)}"
            )
    return state


def checked_labels(labels: torch.Tensor, batch: int, config: AwdLstmConfig) -> torch.Tensor:
    """Validate a classifier's `labels` against `config.problem_type` (inferring it as transformers does) and
    return them as the loss wants them: `(batch,)` class ids, or floats for multi-label and regression."""
    num_labels = config.num_labels
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a tensor, got {type(labels).__name__}")
    if labels.size(0) != batch:
        raise ValueError(f"labels must have {batch} rows (one per document), got shape {tuple(labels.shape)}")
    problem = config.problem_type
    if problem is None:
        if num_labels == 1:
            problem = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem = "single_label_classification"
        else:
            problem = "multi_label_classification"
    if problem == "single_label_classification":
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise TypeError(f"labels must be integer class ids for single-label classification, got {labels.dtype}")
        labels = labels.view(-1) if labels.dim() == 2 and labels.size(1) == 1 else labels
        if labels.dim() != 1:
            raise ValueError(f"labels must have shape ({batch},) of class ids, got {tuple(labels.shape)}")
        if labels.min() < 0 or labels.max() >= num_labels:
            raise ValueError(
                f"labels must be class ids in [0, num_labels={num_labels}), got values in "
                f"[{int(labels.min())}, {int(labels.max())}]"
            )
    elif problem == "multi_label_classification":
        if tuple(labels.shape) != (batch, num_labels):
            raise ValueError(
                f"labels must have shape ({batch}, {num_labels}) for multi-label classification, "
                f"got {tuple(labels.shape)}"
            )
        labels = labels.float()
    else:  # regression
        if labels.numel() != batch * num_labels:
            raise ValueError(f"labels must have {batch}x{num_labels} values for regression, got {tuple(labels.shape)}")
        labels = labels.float()
    return labels
