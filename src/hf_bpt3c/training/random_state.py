"""The global random states (torch and CUDA, numpy, python), taken and put back: what lets evaluations during
training and the learning-rate finder leave training's random draws as they were."""

from __future__ import annotations

import random

import numpy as np
import torch


def rng_state() -> dict:
    """The torch (and CUDA), numpy and python random states."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Put back random states taken by `rng_state`."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


__all__ = ["rng_state", "set_rng_state"]
