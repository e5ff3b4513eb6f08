"""Files and the Hub around transformers' `save_pretrained` / `from_pretrained` / `push_to_hub`: an atomic save
(staged in a hidden folder, moved in with renames), load errors that name the file and what is wrong with it, and
the model card hooks: the hf_bpt3c package registers its card writer on import (`set_model_card_hooks`); remote
code loaded without the package registers none and writes no card."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from safetensors import SafetensorError

T = TypeVar("T")


@dataclass(frozen=True)
class ModelCardHooks:
    """How a model card is made: `write(folder, model)` after every save, `push(repo_id, model, token=, revision=)`
    after every push to the Hub. The card templates live in the package, not in the shipped core."""

    write: Callable[[Path, Any], Any]
    push: Callable[..., Any]


_model_card_hooks: ModelCardHooks | None = None


def set_model_card_hooks(hooks: ModelCardHooks | None) -> None:
    """Register the model card writer (None: no card). hf_bpt3c's `__init__` registers its own."""
    global _model_card_hooks
    if hooks is not None and not isinstance(hooks, ModelCardHooks):
        raise TypeError(f"hooks must be a ModelCardHooks or None, got {type(hooks).__name__}")
    _model_card_hooks = hooks


def save_atomically(save_directory: str | os.PathLike, save: Callable[[Path], T], model=None) -> T:
    """`save(staging)` writes into a hidden staging folder next to `save_directory`; each file is then moved into
    place with an atomic rename, so that a save killed at any moment leaves every file either as it was or
    complete. Weight files of an earlier save that this one does not have are removed. With `model`, its model
    card is written (never replacing a README.md that hf_bpt3c did not write)."""
    target = Path(save_directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.saving-", dir=target.parent))
    try:
        result = save(staging)
        move_files_into(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if model is not None and _model_card_hooks is not None:
        _model_card_hooks.write(target, model)
    return result


def load_checked(load: Callable[[], T], pretrained_model_name_or_path) -> T:
    """`load()` (a `from_pretrained`), with a truncated or corrupted weights file reported as such, and a tokenizer
    in the same folder whose ids do not fit the model's embedding refused."""
    try:
        loaded = load()
    except SafetensorError as error:
        raise OSError(
            f"the weights file in {pretrained_model_name_or_path} (model.safetensors) is truncated or "
            f"corrupted: {error}. Save the model again or download it again."
        ) from error
    model = loaded[0] if isinstance(loaded, tuple) else loaded  # (model, loading_info) with output_loading_info
    tokenizer_size = tokenizer_vocab_size(Path(str(pretrained_model_name_or_path)) / "tokenizer.json")
    if tokenizer_size is not None and tokenizer_size > model.config.vocab_size:
        raise ValueError(
            f"{pretrained_model_name_or_path}: tokenizer.json has ids up to {tokenizer_size - 1} but the model's "
            f"embedding (config.json vocab_size) has only {model.config.vocab_size} rows; the tokenizer and the "
            "weights do not belong together"
        )
    return loaded


def push_card(repo_id: str, model, **kwargs) -> None:
    """The registered model card to the Hub repository (hf_bpt3c's keeps a card the repository has of its own)."""
    if _model_card_hooks is not None:
        _model_card_hooks.push(repo_id, model, token=kwargs.get("token"), revision=kwargs.get("revision"))


class CheckedFilesMixin:
    """transformers' `save_pretrained` made safe to interrupt (`save_atomically`) with the registered model card,
    `from_pretrained` with errors that name the file, `push_to_hub` followed by the model card: mixed into the
    core's `PreTrainedModel`s (before `PreTrainedModel` in their bases)."""

    def save_pretrained(self, save_directory, *args, **kwargs):
        if not kwargs.get("is_main_process", True):
            return super().save_pretrained(save_directory, *args, **kwargs)
        save = super().save_pretrained
        return save_atomically(save_directory, lambda staging: save(staging, *args, **kwargs), model=self)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        load = super().from_pretrained
        return load_checked(lambda: load(pretrained_model_name_or_path, *args, **kwargs), pretrained_model_name_or_path)

    def push_to_hub(self, repo_id: str, **kwargs):
        result = super().push_to_hub(repo_id, **kwargs)
        push_card(repo_id, self, **kwargs)
        return result


def move_files_into(staging: Path, target: Path) -> None:
    """Move every file of `staging` into `target` with atomic renames, then drop weight files of an earlier save
    that the new one does not have (e.g. old shards)."""
    target.mkdir(parents=True, exist_ok=True)
    new_files = {path.name for path in staging.iterdir()}
    for name in sorted(new_files):
        os.replace(staging / name, target / name)
    for old in target.glob("model*.safetensors*"):
        if old.name not in new_files:
            old.unlink()


def tokenizer_vocab_size(path: Path) -> int | None:
    """Largest id + 1 of a saved `tokenizer.json` (vocabulary and added tokens), or None if there is none. A
    SentencePiece tokenizer's ids are fastai's vocabulary (its `tokenizer_config.json`), the model's other pieces
    map to `xxunk`."""
    if not path.is_file():
        return None
    config = path.with_name("tokenizer_config.json")
    if config.is_file():
        settings = json.loads(config.read_text(encoding="utf-8")).get("sentencepiece")
        if isinstance(settings, dict) and type(settings.get("vocab_size")) is int:
            return settings["vocab_size"]
    data = json.loads(path.read_text(encoding="utf-8"))
    vocab = (data.get("model") or {}).get("vocab") or {}
    ids = list(vocab.values()) if isinstance(vocab, dict) else list(range(len(vocab)))
    ids += [token["id"] for token in data.get("added_tokens") or []]
    return max(ids) + 1 if ids else None
