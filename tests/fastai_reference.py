"""Helpers shared by the tests that compare with fastai."""

from __future__ import annotations

import torch


def randomize_head_batchnorm(head: torch.nn.Module) -> None:
    """Give a fastai `PoolingLinearClassifier`'s BatchNorm layers non-trivial statistics and affine parameters,
    so that a name mapping that mixed them up would show in the logits."""
    with torch.no_grad():
        for name, tensor in head.named_buffers():
            if name.endswith("running_mean"):
                tensor.normal_(0, 0.2)
            elif name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
        for name, param in head.named_parameters():
            if ".0." in name:  # LinBnDrop's BatchNorm1d is its module 0
                param.normal_(1.0 if name.endswith("weight") else 0.0, 0.1)
