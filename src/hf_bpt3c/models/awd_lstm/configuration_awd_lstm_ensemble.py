"""Configuration of an ensemble of BPT3C classifiers (ULMFiT's forward + backward ensemble) saved as one model."""

from __future__ import annotations

from transformers import PreTrainedConfig

from .configuration_awd_lstm import AwdLstmConfig

ENSEMBLE_AUTO_MAP = {
    "AutoConfig": "configuration_awd_lstm_ensemble.AwdLstmEnsembleConfig",
    "AutoModelForSequenceClassification": "modeling_awd_lstm_ensemble.AwdLstmEnsembleForSequenceClassification",
}


class AwdLstmEnsembleConfig(PreTrainedConfig):
    """The configurations of the members (`AwdLstmConfig`s of sequence classifiers with the same labels, in the
    same order, and the same problem type); the labels and problem type are theirs.

    Args:
        members: the members' configurations, as `AwdLstmConfig`s or their dictionaries (`to_dict()`).
    """

    model_type = "awd_lstm_ensemble"

    def __init__(self, members: list | None = None, **kwargs):
        self.members = [m.to_dict() if isinstance(m, PreTrainedConfig) else dict(m) for m in members or []]
        configs = self.member_configs()
        self.vocab_size = configs[0].vocab_size if configs else None  # the shared tokenizer's
        if configs:
            kwargs.setdefault("id2label", configs[0].id2label)
            kwargs.setdefault("problem_type", configs[0].problem_type)
            kwargs.setdefault("pad_token_id", configs[0].pad_token_id)
        kwargs["auto_map"] = {**ENSEMBLE_AUTO_MAP, **(kwargs.get("auto_map") or {})}
        super().__init__(**kwargs)
        self._check_members(configs)

    def member_configs(self) -> list[AwdLstmConfig]:
        """The members' `AwdLstmConfig`s."""
        return [AwdLstmConfig.from_dict(member) for member in self.members]

    def _check_members(self, configs: list[AwdLstmConfig]) -> None:
        for i, config in enumerate(configs):
            if dict(config.id2label) != dict(self.id2label):
                raise ValueError(
                    f"AwdLstmEnsembleConfig.members[{i}] has the labels {config.id2label}, not the ensemble's "
                    f"{self.id2label}: the members must share their labels, in the same order"
                )
            if config.problem_type != self.problem_type:
                raise ValueError(
                    f"AwdLstmEnsembleConfig.members[{i}] is {config.problem_type!r}, the ensemble "
                    f"{self.problem_type!r}: the members must share their problem type"
                )
            if config.vocab_size != configs[0].vocab_size:
                raise ValueError(
                    f"AwdLstmEnsembleConfig.members[{i}] has vocab_size {config.vocab_size}, members[0] "
                    f"{configs[0].vocab_size}: the members must share one tokenizer"
                )


__all__ = ["AwdLstmEnsembleConfig"]
