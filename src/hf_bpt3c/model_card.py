"""Model cards (README.md) for AWD-LSTM / BPT3C checkpoints: built from the config and the training information,
written by `save_pretrained` and uploaded by `push_to_hub`.

`build_model_card(model, **info)` renders one of the templates in `model_cards/` (shipped inside the package) with
Hub metadata (`library_name: transformers`, `pipeline_tag`, tags, datasets, a `model-index` of evaluation results).
`info` is `model.model_card_info` (a dict that training scripts set) updated with the keyword arguments:

- `datasets`: list of dataset names or Hub ids the model was trained on;
- `eval_results`: `{metric: value, ...}` plus optional `dataset_name`, `dataset_type`, `split`, `task`
  (or a list of such dicts, one per dataset/split);
- `training`: the recipe, free text or a dict (epochs, learning rates, discriminative lr factor, gradual
  unfreezing, STLR / one-cycle, batch size, ...);
- `language`, `license`, `base_model`, `model_name`, `repo_id` (used in the loading example), `intended_use`,
  `limitations`;
- `source`: where the weights come from (free markdown, e.g. the fastai archive a checkpoint was converted from
  and a licence note), shown in a "Source" section.

A card written by hf_bpt3c carries `MODEL_CARD_MARKER`; a README.md without it belongs to the user and is never
replaced, neither in a saved folder nor on the Hub.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError
from transformers import PreTrainedModel

logger = logging.getLogger(__name__)

MODEL_CARD_MARKER = "<!-- hf_bpt3c model card -->"
# transformers' `create_and_tag_model_card` writes this when a repository has no card yet
TRANSFORMERS_GENERIC_CARD_TEXT = "This model card has been automatically generated"
TEMPLATE_DIR = Path(__file__).parent / "model_cards"

INFO_KEYS = frozenset(
    {
        "datasets",
        "eval_results",
        "training",
        "language",
        "license",
        "base_model",
        "model_name",
        "repo_id",
        "intended_use",
        "limitations",
        "source",
    }
)
EVAL_CONTEXT_KEYS = ("dataset_name", "dataset_type", "split", "task")


@dataclass(frozen=True)
class CardKind:
    """How one model class is described: its template, Hub pipeline tag, tags and Auto class."""

    template: str
    pipeline_tag: str
    tags: tuple[str, ...]
    auto_class: str
    default_name: str


CARD_KINDS = {
    "AwdLstmForSequenceClassification": CardKind(
        "bpt3c_classifier.md",
        "text-classification",
        ("awd-lstm", "ulmfit", "bpt3c", "text-classification"),
        "AutoModelForSequenceClassification",
        "awd-lstm-bpt3c-classifier",
    ),
    "AwdLstmEnsembleForSequenceClassification": CardKind(
        "bpt3c_ensemble.md",
        "text-classification",
        ("awd-lstm", "ulmfit", "bpt3c", "text-classification", "ensemble"),
        "AutoModelForSequenceClassification",
        "awd-lstm-bpt3c-ensemble",
    ),
    "AwdLstmForCausalLM": CardKind(
        "awd_lstm_lm.md",
        "text-generation",
        ("awd-lstm", "ulmfit", "bpt3c", "language-model"),
        "AutoModelForCausalLM",
        "awd-lstm-language-model",
    ),
    "AwdLstmModel": CardKind(
        "awd_lstm_model.md",
        "feature-extraction",
        ("awd-lstm", "ulmfit", "bpt3c", "feature-extraction"),
        "AutoModel",
        "awd-lstm-encoder",
    ),
}


def card_kind(model: PreTrainedModel) -> CardKind:
    """The `CardKind` of `model`'s class (or of the hf_bpt3c class it derives from; remote-code copies included)."""
    for cls in type(model).__mro__:
        if cls.__name__ in CARD_KINDS:
            return CARD_KINDS[cls.__name__]
    raise TypeError(f"no hf_bpt3c model card for {type(model).__name__}; expected one of {sorted(CARD_KINDS)}")


def is_generated_card(text: str) -> bool:
    """True if a README.md was written by hf_bpt3c or is transformers' generic template, so it may be replaced."""
    return MODEL_CARD_MARKER in text or TRANSFORMERS_GENERIC_CARD_TEXT in text


def build_model_card(model: PreTrainedModel, **info: Any) -> ModelCard:
    """The model card of `model`; `info` (keys in `INFO_KEYS`) overrides `model.model_card_info`."""
    info = {**(getattr(model, "model_card_info", None) or {}), **info}
    unknown = sorted(set(info) - INFO_KEYS)
    if unknown:
        raise ValueError(f"unknown model card info {unknown}; expected keys among {sorted(INFO_KEYS)}")
    kind = card_kind(model)
    model_name = info.get("model_name") or kind.default_name
    datasets = _as_list(info.get("datasets"))
    eval_results = _eval_results(info.get("eval_results"), datasets, kind.pipeline_tag)
    card_data = ModelCardData(
        model_name=model_name if eval_results else None,  # the model-index name
        library_name="transformers",
        pipeline_tag=kind.pipeline_tag,
        tags=list(dict.fromkeys([*kind.tags, *(getattr(model, "model_tags", None) or [])])),
        datasets=datasets or None,
        language=info.get("language"),
        license=info.get("license"),
        base_model=info.get("base_model"),
        eval_results=eval_results or None,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE_DIR / kind.template),
        **_template_vars(model, kind, info, model_name, eval_results),
    )


def write_model_card(save_directory: str | Path, model: PreTrainedModel) -> Path | None:
    """Write `save_directory/README.md` unless a README.md not written by hf_bpt3c is already there.

    Returns the path written, or None when the user's own README.md was left as it is.
    """
    path = Path(save_directory) / "README.md"
    if path.is_file() and MODEL_CARD_MARKER not in path.read_text(encoding="utf-8"):
        logger.info("kept the existing %s (not an hf_bpt3c model card)", path)
        return None
    build_model_card(model).save(path)
    return path


def push_model_card(
    repo_id: str, model: PreTrainedModel, token: str | None = None, revision: str | None = None
) -> bool:
    """Upload hf_bpt3c's card to `repo_id` if the card there is transformers' generic one, ours, or missing.

    A card the user wrote is kept. The tags of the card on the Hub (e.g. `push_to_hub(tags=...)`) are kept.
    Returns True if a card was uploaded.
    """
    current = _hub_card(repo_id, token, revision)
    if current is not None and not is_generated_card(current.text):
        logger.info("kept the model card of %s (not generated by hf_bpt3c or transformers)", repo_id)
        return False
    own = getattr(model, "model_card_info", None) or {}
    defaults = {"model_name": repo_id.split("/")[-1], "repo_id": repo_id}
    card = build_model_card(model, **{key: value for key, value in defaults.items() if key not in own})
    if current is not None:
        card.data.tags += [tag for tag in current.data.tags or [] if tag not in card.data.tags]
        if str(card) == str(current):
            return False
    card.push_to_hub(repo_id, token=token, revision=revision, commit_message="Add hf_bpt3c model card")
    return True


# --------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------


def _hub_card(repo_id: str, token: str | None, revision: str | None) -> ModelCard | None:
    """The model card now on the Hub at `revision`, None if the repository has no README.md."""
    try:
        path = hf_hub_download(repo_id, "README.md", revision=revision, token=token)
    except EntryNotFoundError:
        return None
    return ModelCard.load(path, ignore_metadata_errors=True)


def _as_list(value: Any) -> list:
    """`None` -> [], a string -> [string], any other iterable -> list."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _plain(value: Any) -> Any:
    """Numbers as plain Python floats/ints (numpy and torch scalars included), anything else unchanged."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def _eval_results(results: Mapping | list[Mapping] | None, datasets: list[str], task: str) -> list[EvalResult]:
    """`EvalResult`s from `{metric: value, dataset_name=..., dataset_type=..., split=..., task=...}` dict(s)."""
    evals = []
    for entry in _as_list([results] if isinstance(results, Mapping) else results):
        dataset_type = entry.get("dataset_type") or entry.get("dataset_name") or (datasets[:1] or ["custom"])[0]
        for metric, value in entry.items():
            if metric in EVAL_CONTEXT_KEYS:
                continue
            evals.append(
                EvalResult(
                    task_type=entry.get("task", task),
                    dataset_type=dataset_type,
                    dataset_name=entry.get("dataset_name") or dataset_type,
                    dataset_split=entry.get("split"),
                    metric_type=metric,
                    metric_value=_plain(value),
                )
            )
    return evals


def _format_training(training: str | Mapping | None) -> str:
    """The training recipe as markdown: free text as it is, a dict as a bullet list."""
    if not training:
        return ""
    if isinstance(training, str):
        return training.strip()
    lines = []
    for key, value in training.items():
        shown = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
        lines.append(f"- **{key}**: {shown}")
    return "\n".join(lines)


def _template_vars(
    model: PreTrainedModel, kind: CardKind, info: dict, model_name: str, eval_results: list[EvalResult]
) -> dict[str, Any]:
    """Everything the templates show besides the metadata."""
    config = model.config
    id2label = getattr(config, "id2label", None) or {}
    members = config.member_configs() if hasattr(config, "member_configs") else []
    if members:  # an ensemble: the chunking lines describe its first member; the members are listed
        config = members[0]
    return {
        "members": [{"config": m, "direction": "backward" if m.backwards else "forward"} for m in members],
        "model_name": model_name,
        "repo_id": info.get("repo_id") or f"your-username/{model_name}",
        "auto_class": kind.auto_class,
        "config": config,
        "num_parameters": f"{model.num_parameters():,}",
        "chunks_kept": math.ceil(config.max_len / config.bptt),
        "labels": [(int(i), id2label[i]) for i in sorted(id2label, key=int)],
        "problem_type": getattr(config, "problem_type", None) or "single_label_classification",
        "training": _format_training(info.get("training")),
        "eval_results": eval_results,
        "intended_use": (info.get("intended_use") or "").strip(),
        "extra_limitations": (info.get("limitations") or "").strip(),
        "source": (info.get("source") or "").strip(),
    }


__all__ = [
    "MODEL_CARD_MARKER",
    "build_model_card",
    "is_generated_card",
    "push_model_card",
    "write_model_card",
]
