"""Training on transformers' Trainer the fastai way: ULMFiT's optimizers, schedules and gradual unfreezing
(`recipe`), the learning-rate finder (`lr_finder`) and language-model streams (`data`)."""

from .lr_finder import SUGGESTION_METHODS, LRFinderResult, lr_find  # noqa: F401  (also in recipe.__all__)
from .recipe import *  # noqa: F403
from .recipe import __all__ as _recipe_all

__all__ = [*_recipe_all]
