"""Training on transformers' Trainer the fastai way.

- `recipe`: ULMFiT's optimizers and schedules (discriminative learning rates, STLR, one-cycle);
- `params`: fastai's layer groups and freezing by group;
- `callbacks`: gradual unfreezing, AR/TAR, evaluations that leave the random state alone, the LM's carried state,
  time estimates;
- `lr_finder`: fastai's learning-rate finder;
- `data`: language-model streams, fastai's sortish classifier order and fastai's IMDb sample;
- `random_state`: the global random states, taken and put back;
- `scripts`: what the example scripts are built from (their arguments, the language-model and classifier stages,
  predictions files), imported on its own: `from hf_bpt3c.training.scripts import train_classifier`.

Every public name of `recipe`, `params`, `callbacks`, `random_state` and `lr_find` is importable from here, as is
`plot_training_curves` (`hf_bpt3c.plots`).
"""

from ..plots import plot_training_curves
from . import data as data  # `hf_bpt3c.training.data.LMStreamDataset` after `import hf_bpt3c.training`
from .callbacks import (
    ActivationRegularizationCallback,
    EvaluationRandomStateCallback,
    GradualUnfreezingCallback,
    StreamStateCallback,
    TimeEstimateCallback,
    activation_penalty,
)
from .lr_finder import SUGGESTION_METHODS, LRFinderResult, lr_find
from .params import freeze_to, layer_groups
from .random_state import rng_state, set_rng_state
from .recipe import (
    FASTAI_ADAM,
    discriminative_param_groups,
    num_training_steps,
    one_cycle_schedule,
    slanted_triangular_schedule,
    ulmfit_optimizers,
)

__all__ = [
    "FASTAI_ADAM",
    "layer_groups",
    "discriminative_param_groups",
    "slanted_triangular_schedule",
    "one_cycle_schedule",
    "ulmfit_optimizers",
    "num_training_steps",
    "freeze_to",
    "GradualUnfreezingCallback",
    "activation_penalty",
    "ActivationRegularizationCallback",
    "EvaluationRandomStateCallback",
    "StreamStateCallback",
    "TimeEstimateCallback",
    "rng_state",
    "set_rng_state",
    "plot_training_curves",
    "SUGGESTION_METHODS",
    "LRFinderResult",
    "lr_find",
]
