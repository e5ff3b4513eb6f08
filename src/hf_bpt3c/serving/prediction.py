"""Predictions of a sequence classifier on token-id lists, in the lists' order.

    logits = batched_logits(model, tokenizer, tokenizer(texts)["input_ids"], batch_size=32)  # (len(texts), labels)
    probs = probabilities(logits, problem_type_of(model.config))

Documents are batched longest first (little padding), and every result is written back to its row, so the output
follows the input order whatever the batching. BPT3C gives each document the same logits whatever batch it is in
and however it is padded, so batching changes nothing in the numbers.
"""

from __future__ import annotations

import torch

from ..models.awd_lstm.modeling_awd_lstm import eval_mode
from ..models.awd_lstm.modeling_awd_lstm_ensemble import problem_type_of

CLASSIFICATION_TYPES = ("single_label_classification", "multi_label_classification")
MULTI_LABEL_THRESHOLD = 0.5


def probabilities(logits: torch.Tensor, problem_type: str) -> torch.Tensor:
    """Logits `(batch, num_labels)` -> softmax probabilities (single-label) or per-label sigmoid probabilities
    (multi-label), `(batch, num_labels)` float32."""
    logits = logits.float()
    if problem_type == "single_label_classification":
        return logits.softmax(dim=-1)
    if problem_type == "multi_label_classification":
        return logits.sigmoid()
    raise ValueError(f"problem_type must be one of {CLASSIFICATION_TYPES}, got {problem_type!r}")


def length_order(input_ids: list[list[int]]) -> list[int]:
    """Row indices longest first (stable): batches of similar lengths."""
    return sorted(range(len(input_ids)), key=lambda i: -len(input_ids[i]))


@torch.inference_mode()
def batched_rows(
    compute, tokenizer, input_ids: list[list[int]], batch_size: int, device, progress: bool = False, desc: str = ""
) -> torch.Tensor:
    """`compute(input_ids, attention_mask)` -> `(batch, features)` over token-id lists, in batches longest first
    (`tokenizer.pad`), each result written back to its row: `(len(input_ids), features)` float32 in the lists' order.
    `progress` shows a bar over the batches (`desc` names it)."""
    order = length_order(input_ids)
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc=desc, unit=" batches")
    out = None
    for rows in batches:
        batch = tokenizer.pad({"input_ids": [input_ids[i] for i in rows]}, return_tensors="pt")
        values = compute(batch["input_ids"].to(device), batch["attention_mask"].to(device))
        if out is None:
            out = torch.zeros(len(input_ids), *values.shape[1:])
        out[rows] = values.float().cpu()
    return torch.zeros(0, 0) if out is None else out


def batched_logits(
    model, tokenizer, input_ids: list[list[int]], batch_size: int, name: str = "model", progress: bool = False
) -> torch.Tensor:
    """The model's logits `(len(input_ids), num_labels)` float32 for token-id lists, in eval mode, computed in
    batches longest first (`batched_rows`); `name` names the model in errors; `progress` shows a bar."""

    def logits_of(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = getattr(model(input_ids=ids, attention_mask=mask), "logits", None)
        if logits is None or tuple(logits.shape) != (ids.size(0), model.config.num_labels):
            shape = None if logits is None else tuple(logits.shape)
            raise ValueError(
                f"{name} returned logits of shape {shape}, not (batch, num_labels={model.config.num_labels}): "
                "predictions need sequence classifiers"
            )
        return logits

    if not input_ids:
        return torch.zeros(0, model.config.num_labels)
    device = next(model.parameters()).device
    with eval_mode(model):
        return batched_rows(logits_of, tokenizer, input_ids, batch_size, device, progress, desc="predicting")


__all__ = [
    "CLASSIFICATION_TYPES",
    "MULTI_LABEL_THRESHOLD",
    "batched_logits",
    "batched_rows",
    "eval_mode",
    "length_order",
    "probabilities",
    "problem_type_of",
]
