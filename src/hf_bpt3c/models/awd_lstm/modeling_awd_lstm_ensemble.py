"""An ensemble of BPT3C classifiers as one model: ULMFiT's forward + backward ensemble behind
`AutoModelForSequenceClassification`, `pipeline("text-classification")` and `push_to_hub`.

Each member reads the documents as it was trained (a backward member reverses them itself); the ensemble's
probabilities are the mean of the members' (softmax for single-label, sigmoid for multi-label; the mean value
for regression), and its logits are the ones that give back exactly those probabilities: `log(mean)` for
single-label (softmax of it is the mean, which sums to 1), `logit(mean)` for multi-label.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils.generic import can_return_tuple

from .configuration_awd_lstm_ensemble import AwdLstmEnsembleConfig
from .modeling_awd_lstm import AwdLstmForSequenceClassification
from .saving import CheckedFilesMixin
from .validation import checked_labels


def problem_type_of(config) -> str:
    """The problem type, inferred as transformers does when unset (one label: regression)."""
    if config.problem_type:
        return config.problem_type
    return "regression" if config.num_labels == 1 else "single_label_classification"


def mean_prediction_logits(member_logits: list[torch.Tensor], problem_type: str) -> torch.Tensor:
    """Members' logits, each `(batch, num_labels)` -> the ensemble's `(batch, num_labels)` float32: the logits of
    the mean probability (single-label: log; multi-label: logit), or the mean value (regression)."""
    logits = torch.stack([x.float() for x in member_logits])  # (members, batch, labels)
    if problem_type == "regression":
        return logits.mean(0)
    tiny = torch.finfo(torch.float32).tiny
    if problem_type == "multi_label_classification":
        probs = logits.sigmoid().mean(0)
        return probs.clamp_min(tiny).log() - (1 - probs).clamp_min(tiny).log()
    return logits.softmax(-1).mean(0).clamp_min(tiny).log()


class AwdLstmEnsembleForSequenceClassification(CheckedFilesMixin, PreTrainedModel):
    """The members (`AwdLstmForSequenceClassification`s sharing a tokenizer and labels), evaluated as one model."""

    config_class = AwdLstmEnsembleConfig
    config: AwdLstmEnsembleConfig
    base_model_prefix = "ensemble"
    main_input_name = "input_ids"
    _no_split_modules = ["AwdLstmLayer"]

    def __init__(self, config: AwdLstmEnsembleConfig):
        super().__init__(config)
        self.members = nn.ModuleList(AwdLstmForSequenceClassification(c) for c in config.member_configs())
        self.post_init()

    @classmethod
    def from_members(cls, members: list[AwdLstmForSequenceClassification]) -> AwdLstmEnsembleForSequenceClassification:
        """An ensemble holding copies of `members`' weights (e.g. the forward and the backward classifier)."""
        if not members or not all(isinstance(m, AwdLstmForSequenceClassification) for m in members):
            raise TypeError("members must be a non-empty list of AwdLstmForSequenceClassification models")
        ensemble = cls(AwdLstmEnsembleConfig(members=[m.config for m in members]))
        for target, source in zip(ensemble.members, members):
            target.load_state_dict(source.state_dict())
        return ensemble.eval()

    def _init_weights(self, module: nn.Module) -> None:
        pass  # every member initialises its own modules

    def get_input_embeddings(self) -> nn.Embedding:
        return self.members[0].get_input_embeddings()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        """As [`AwdLstmForSequenceClassification.forward`]; `logits` `(batch, num_labels)` are the ensemble's (see
        the module docstring), `loss` their loss when labels are given."""
        member_logits = [m(input_ids, attention_mask, inputs_embeds).logits for m in self.members]
        logits = mean_prediction_logits(member_logits, problem_type_of(self.config))
        loss = None
        if labels is not None:
            labels = checked_labels(labels, logits.size(0), self.members[0].config)
            loss = self.loss_function(labels=labels, pooled_logits=logits, config=self.config)
        return SequenceClassifierOutput(loss=loss, logits=logits)


__all__ = ["AwdLstmEnsembleForSequenceClassification", "mean_prediction_logits"]
