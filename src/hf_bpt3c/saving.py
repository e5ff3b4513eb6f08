"""Files and the Hub around transformers' `save_pretrained` / `from_pretrained` / `push_to_hub`: an atomic save
(staged in a hidden folder, moved in with renames), load errors that name the file and what is wrong with it, and
hf_bpt3c's model card where the package is installed (remote code loaded without it writes no card)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from safetensors import SafetensorError

try:  # the card templates ship with the package, not with the remote code
    from hf_bpt3c.model_card import push_model_card, write_model_card
except ImportError:
    push_model_card = write_model_card = None

T = TypeVar("T")


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
    if model is not None and write_model_card is not None:
        write_model_card(target, model)
    return result


def load_checked(load: Callable[[], T], pretrained_model_name_or_path) -> T:
    """`load()` (a `from_pretrained`), with a truncated or corrupted weights file reported as such, and a tokenizer
    in the same folder whose ids do not fit the model's embedding refused."""
    try:
        model = load()
    except SafetensorError as error:
        raise OSError(
            f"the weights file in {pretrained_model_name_or_path} (model.safetensors) is truncated or "
            f"corrupted: {error}. Save the model again or download it again."
        ) from error
    tokenizer_size = tokenizer_vocab_size(Path(str(pretrained_model_name_or_path)) / "tokenizer.json")
    if tokenizer_size is not None and tokenizer_size > model.config.vocab_size:
        raise ValueError(
            f"{pretrained_model_name_or_path}: tokenizer.json has ids up to {tokenizer_size - 1} but the model's "
            f"embedding (config.json vocab_size) has only {model.config.vocab_size} rows; the tokenizer and the "
            "weights do not belong together"
        )
    return model


def push_card(repo_id: str, model, **kwargs) -> None:
    """hf_bpt3c's model card to the Hub repository, unless it has a card of its own (or hf_bpt3c is absent)."""
    if push_model_card is not None:
        push_model_card(repo_id, model, token=kwargs.get("token"), revision=kwargs.get("revision"))


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
    """Largest id + 1 of a saved `tokenizer.json` (vocabulary and added tokens), or None if there is none."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    vocab = (data.get("model") or {}).get("vocab") or {}
    ids = list(vocab.values()) if isinstance(vocab, dict) else list(range(len(vocab)))
    ids += [token["id"] for token in data.get("added_tokens") or []]
    return max(ids) + 1 if ids else None
