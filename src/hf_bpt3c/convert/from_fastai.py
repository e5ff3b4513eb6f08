"""Convert fastai ULMFiT checkpoints (v2, v1 and 0.7 layouts) into `save_pretrained` folders of hf_bpt3c.

fastai key layouts:
- v2 LM:  `0.encoder.weight`, `0.encoder_dp.emb.weight` (alias), `0.rnns.{i}.weight_hh_l0_raw`,
  `0.rnns.{i}.module.{weight_ih_l0,bias_ih_l0,bias_hh_l0}`, `1.decoder.weight` (tied), `1.decoder.bias`;
- v2 classifier: the same encoder under `0.module.`, the head under `1.layers.{k}.0.*` (BatchNorm1d) and
  `1.layers.{k}.2.weight` (Linear without bias);
- encoder only (`save_encoder`, 0.7's `*_enc.h5`): the encoder keys without the `0.`/`0.module.` prefix;
- v1: as v2 plus a duplicate `0.rnns.{i}.module.weight_hh_l0` (dropped: it may hold a DropConnect-ed copy);
- 0.7: the raw recurrent weight under `0.rnns.{i}.module.weight_hh_l0_raw`, `encoder_with_dropout.embed.weight`
  as the alias, and no decoder bias.

Everything is read safely (`hf_bpt3c.convert.safe_load`): checkpoints with `torch.load(weights_only=True)` and
every shape checked before a model is built, vocabularies scanned opcode by opcode and built by an unpickler that
builds nothing but lists, tuples, dicts, strings and ints; archives are extracted within `ArchiveLimits`.

Two archive layouts are known (`fetch_fastai` tells them apart by their members):
- fastai's English WikiText-103 models (`wt103-fwd.tgz`): one folder with one `*.pth` and one `*.pkl`, a
  word-level vocabulary;
- the community models of fastai_ulmfit (github.com/floleuerer/fastai_ulmfit, 13 Wikipedia languages), where
  `fastai_ulmfit.pretrained` reads `fwd/` and `bwd/` (each `*model.pth`, `*vocab.pkl`, an optional
  `*encoder.pth` and `model.json`) and `spm/spm.model`, the SentencePiece model of fastai's
  `SentencePieceTokenizer`, possibly all under one top folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import tarfile
import tempfile
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..model_card import INFO_KEYS
from ..models.awd_lstm.configuration_awd_lstm import AwdLstmConfig
from ..models.awd_lstm.modeling_awd_lstm import AwdLstmForCausalLM, AwdLstmForSequenceClassification, AwdLstmModel
from ..models.awd_lstm.saving import save_atomically
from ..models.awd_lstm.sentencepiece_backend import read_model
from ..models.awd_lstm.tokenization_awd_lstm import AwdLstmTokenizer, is_english
from .download import (
    URL_SCHEMES,
    cached_download,
    check_url,
    extract_members,
    fastai_cache_dir,
    member_parts,
    select_members,
)
from .safe_load import check_weights, load_fastai_checkpoint, load_itos, vocab_arg
from .safety import ArchiveLimits, LimitExceeded, human, terminate_cleanly
from .transfer import append_mean_rows, last_id_wins, match_embeddings, with_fastai_specials

logger = logging.getLogger(__name__)

_LAYER_KEY = re.compile(r"^rnns\.(\d+)\.(?:module\.)?(weight_ih_l0|weight_hh_l0_raw|bias_ih_l0|bias_hh_l0)$")
_HEAD_KEY = re.compile(r"^layers\.(\d+)\.(0|2)\.(.+)$")
_LAYER_NAMES = {
    "weight_ih_l0": "weight_ih",
    "weight_hh_l0_raw": "weight_hh",
    "bias_ih_l0": "bias_ih",
    "bias_hh_l0": "bias_hh",
}
_ENCODER_ALIASES = ("encoder_dp.emb.weight", "encoder_with_dropout.embed.weight")


# ----------------------------------------------------------------------------------------------------------------
# Key mapping
# ----------------------------------------------------------------------------------------------------------------


def is_fastai_classifier(state_dict: dict[str, torch.Tensor]) -> bool:
    """True for a fastai text classifier (`SequentialRNN(SentenceEncoder, PoolingLinearClassifier)`)."""
    return any(key.startswith("1.layers.") for key in state_dict)


def _encoder_key(key: str) -> str | None:
    """fastai encoder key (without the `0.`/`0.module.` prefix) -> hf key under `awd_lstm.`, None to drop."""
    if key == "encoder.weight":
        return "awd_lstm.embeddings.weight"
    if key in _ENCODER_ALIASES:
        return None
    match = _LAYER_KEY.match(key)
    if match:
        return f"awd_lstm.layers.{match.group(1)}.{_LAYER_NAMES[match.group(2)]}"
    if re.fullmatch(r"rnns\.\d+\.module\.weight_hh_l0", key):
        return None  # v1's dropped copy of the raw weight
    raise KeyError(f"unknown fastai encoder key {key!r}")


def _hf_key(key: str) -> str | None:
    """The hf key of one fastai key (None: dropped); `KeyError` for a key of no supported layout."""
    head, _, rest = key.partition(".")
    if head == "0":
        return _encoder_key(rest.removeprefix("module."))
    if rest == "decoder.bias":
        return "decoder.bias"
    if rest == "decoder.weight":
        return None  # tied to the embedding
    match = _HEAD_KEY.match(rest)
    if not match:
        raise KeyError(f"unknown fastai key {key!r}")
    block, part, name = match.groups()
    return f"classifier.blocks.{block}.{'batch_norm' if part == '0' else 'linear'}.{name}"


def fastai_key_map(keys) -> dict[str, str]:
    """hf key -> the fastai key it comes from, for the keys of a fastai state dict (dropped keys omitted).
    `KeyError` for an unknown key, or for two keys that would both become the same hf key."""
    origin: dict[str, str] = {}
    for key in keys:
        new_key = _hf_key(key)
        if new_key is None:
            continue
        if new_key in origin:
            raise KeyError(f"fastai keys {origin[new_key]!r} and {key!r} would both become {new_key!r}")
        origin[new_key] = key
    return origin


def fastai_to_hf_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a fastai LM or classifier state dict (v2, v1 or 0.7) to hf_bpt3c keys.

    LM keys become `awd_lstm.*` and `decoder.bias` (the tied `decoder.weight` is dropped); classifier head keys
    become `classifier.blocks.{k}.batch_norm.*` and `classifier.blocks.{k}.linear.weight`.
    """
    return {new_key: state_dict[key] for new_key, key in fastai_key_map(state_dict).items()}


def config_kwargs_from_fastai(state_dict: dict[str, torch.Tensor]) -> dict:
    """Sizes read from a fastai state dict: vocab, embedding, hidden size, layers, head sizes and labels."""
    return _config_kwargs_from_hf(fastai_to_hf_state_dict(state_dict))


def _config_kwargs_from_hf(hf: dict[str, torch.Tensor]) -> dict:
    """The same sizes read from an hf-keyed state dict."""
    vocab_size, embedding_size = hf["awd_lstm.embeddings.weight"].shape
    n_layers = 1 + max(int(k.split(".")[2]) for k in hf if k.startswith("awd_lstm.layers."))
    kwargs = dict(vocab_size=vocab_size, embedding_size=embedding_size, num_hidden_layers=n_layers)
    if n_layers > 1:
        kwargs["hidden_size"] = hf["awd_lstm.layers.0.weight_hh"].shape[1]
    head = sorted((k for k in hf if k.endswith(".linear.weight")), key=lambda k: int(k.split(".")[2]))
    if head:
        out_sizes = [hf[k].shape[0] for k in head]
        kwargs["classifier_hidden_sizes"] = out_sizes[:-1]
        kwargs["num_labels"] = out_sizes[-1]
        kwargs["classifier_dropouts"] = [0.1] * (len(out_sizes) - 1)
    return kwargs


def checkpoint_kind(state_dict: dict[str, torch.Tensor]) -> str:
    """`"classifier"`, `"language_model"` or `"encoder"` (a `save_encoder` dict without the `0.` prefix)."""
    if is_fastai_classifier(state_dict):
        return "classifier"
    if "1.decoder.weight" in state_dict:
        return "language_model"
    if "encoder.weight" in state_dict:
        return "encoder"
    raise ValueError(
        "not a fastai AWD-LSTM state dict: neither a language model (`1.decoder.weight`), a classifier "
        "(`1.layers.*`) nor an encoder (`encoder.weight`)"
    )


def checkpoint_layout(state_dict: dict[str, torch.Tensor]) -> str:
    """`"0.7"` (raw weight on the wrapped LSTM), `"v1"` (duplicate `module.weight_hh_l0`) or `"v2"`."""
    if any(k.endswith("module.weight_hh_l0_raw") or "encoder_with_dropout." in k for k in state_dict):
        return "0.7"
    if any(k.endswith("module.weight_hh_l0") for k in state_dict):
        return "v1"
    return "v2"


# ----------------------------------------------------------------------------------------------------------------
# Conversion
# ----------------------------------------------------------------------------------------------------------------

_MODEL_CLASSES = {
    "classifier": AwdLstmForSequenceClassification,
    "language_model": AwdLstmForCausalLM,
    "encoder": AwdLstmModel,
}


@dataclass
class FastaiConversion:
    """What `convert_fastai` wrote: the model kind, the fastai layout, the output folder and notes for the user;
    `tokenizer` is `"word"` (fastai's English words) or `"sentencepiece"`, `lang` the language recorded."""

    kind: str
    layout: str
    out_dir: Path
    config: AwdLstmConfig
    notes: list[str] = field(default_factory=list)
    tokenizer: str = "word"
    lang: str | None = None


_LANG = re.compile(r"^[a-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})?$")
SP_MODEL_MAX_BYTES = 64 << 20  # fastai_ulmfit's 15k-piece spm.model is about 0.5 MB


def _check_lang(lang: str | None, name: str = "lang (--lang)") -> str | None:
    """A language code such as `de` or `pt-BR`, or None; `ValueError` naming the argument otherwise."""
    if lang is None:
        return None
    if not isinstance(lang, str) or not _LANG.match(lang):
        raise ValueError(f"{name} must be a language code such as 'de' or 'pt-BR', got {lang!r}")
    return lang


def _read_sp_model(sp_model: str | os.PathLike) -> bytes:
    """The bytes of a SentencePiece `.model` file, parsed once to check it: `FileNotFoundError` if it is missing,
    `ValueError` naming the file if it is too large, damaged or not a SentencePiece model."""
    path = Path(sp_model)
    if not path.is_file():
        raise FileNotFoundError(f"SP_MODEL file {path} does not exist (fastai's SentencePieceTokenizer's spm.model)")
    with open(path, "rb") as file:
        data = file.read(SP_MODEL_MAX_BYTES + 1)
    if len(data) > SP_MODEL_MAX_BYTES:
        raise ValueError(f"SP_MODEL file {path} refused: larger than {human(SP_MODEL_MAX_BYTES)}")
    try:
        read_model(data)
    except Exception as err:  # hostile bytes: whatever the protobuf reader stumbles on
        raise ValueError(
            f"SP_MODEL file {path} is damaged or not a usable SentencePiece model ({_short(err)}); expected the "
            "spm.model that fastai's SentencePieceTokenizer trained (fastai_ulmfit archives: spm/spm.model)"
        ) from None
    return data


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split())[:200]
    return text or type(err).__name__


def _sentencepiece_tokenizer(path: Path, data: bytes, itos: list[str], lang: str | None) -> AwdLstmTokenizer:
    """fastai's SentencePiece tokenization over the checkpoint's vocabulary; `ValueError` naming the file when the
    model cannot be used."""
    try:
        return AwdLstmTokenizer.from_sentencepiece(data, itos, lang=lang)
    except Exception as err:  # the tokenizers backend rejects some malformed models with a bare Exception
        raise ValueError(f"SP_MODEL file {path} cannot be used as a SentencePiece tokenizer: {_short(err)}") from None


def _check_options(bptt, max_len, backwards, labels=None) -> None:
    """The options of a conversion, checked before anything is read or downloaded (as `AwdLstmConfig` will)."""
    for name, value in (("bptt", bptt), ("max_len", max_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} (--{name.replace('_', '-')}) must be an int >= 1, got {value!r}")
    if max_len < bptt:
        raise ValueError(f"max_len (--max-len) must be >= bptt (--bptt): got {max_len} < {bptt}")
    if not isinstance(backwards, bool):
        raise TypeError(f"backwards must be True or False, got {backwards!r}")
    if labels is not None and (isinstance(labels, str) or not isinstance(labels, Sequence)):
        raise TypeError(f"labels must be a list of class names, got {type(labels).__name__}")


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ValueError(f"--out {out_dir} is not empty; pass overwrite=True (--overwrite) to write into it")


def _hf_weights(state_dict: dict[str, torch.Tensor], kind: str, weights: Path) -> dict[str, torch.Tensor]:
    """hf keys for any kind (an encoder dict is mapped as if it were the `0.` part of an LM), every shape checked
    (`safe_load.check_weights`): `ValueError` naming the file and the checkpoint's key."""
    prefixed = {f"0.{k}": v for k, v in state_dict.items()} if kind == "encoder" else state_dict
    try:
        origin = fastai_key_map(prefixed)
    except KeyError as err:
        raise ValueError(
            f"WEIGHTS file {weights}: {err.args[0]}; supported are fastai v2/v1/0.7 AWD-LSTM language models and "
            "encoders and fastai v2 classifiers"
        ) from None
    hf = {new_key: prefixed[key] for new_key, key in origin.items()}
    if kind == "encoder":
        origin = {new_key: key.removeprefix("0.") for new_key, key in origin.items()}
    prefix = "" if kind == "encoder" else "0.module." if any(k.startswith("0.module.") for k in state_dict) else "0."
    check_weights(hf, origin, weights, prefix)
    return hf


def _build_config(hf: dict[str, torch.Tensor], kind: str, tokenizer: AwdLstmTokenizer, **options) -> AwdLstmConfig:
    """AwdLstmConfig with the checkpoint's sizes, fastai's dropouts for the kind and the tokenizer's special ids."""
    kwargs = _config_kwargs_from_hf(hf)
    kwargs.update(options)
    kwargs.update(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id)
    kwargs.update(eos_token_id=tokenizer.eos_token_id)
    preset = AwdLstmConfig.for_classification if kind == "classifier" else AwdLstmConfig.for_language_model
    return preset(**kwargs)


def _check_labels(labels, kind: str, num_labels: int | None) -> list[str]:
    """The class names of a classifier checkpoint: distinct non-empty strings, one per output of its head."""
    if isinstance(labels, str) or not isinstance(labels, Sequence):
        raise TypeError(f"labels must be a list of class names, got {type(labels).__name__}")
    if kind != "classifier":
        raise ValueError(f"labels name a classifier's classes, but the checkpoint is a {kind.replace('_', ' ')}")
    for index, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip():
            raise ValueError(f"labels[{index}] must be a non-empty string, got {label!r}")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be distinct, got {list(labels)}")
    if len(labels) != num_labels:
        raise ValueError(
            f"labels has {len(labels)} names ({', '.join(labels)}) but the checkpoint's head has {num_labels} classes"
        )
    return list(labels)


def _build_model(config: AwdLstmConfig, hf: dict[str, torch.Tensor], kind: str):
    """The hf model of `kind` holding exactly the converted weights (the LM decoder tied to the embedding)."""
    model = _MODEL_CLASSES[kind](config)
    if kind == "encoder":
        hf = {k.removeprefix("awd_lstm."): v for k, v in hf.items()}
    try:
        missing, unexpected = model.load_state_dict(hf, strict=False)
    except RuntimeError as err:  # shapes are checked before (check_weights); this is a last line of defence
        raise ValueError(f"converted weights do not fit {type(model).__name__}: {str(err)[:500]}") from None
    if unexpected or set(missing) - {"decoder.weight"}:
        raise ValueError(
            f"converted weights do not fit {type(model).__name__}: missing {missing[:10]}, extra {unexpected[:10]}"
        )
    if kind == "language_model":
        model.tie_weights()
    return model.eval()


def _save_into(out_dir: Path, model, tokenizer: AwdLstmTokenizer) -> None:
    """Model and tokenizer moved into `out_dir` together (`saving.save_atomically`): a failure leaves `out_dir` as
    it was, and files of `out_dir` that the conversion does not produce are kept."""

    def save(staging: Path) -> None:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)

    save_atomically(out_dir, save)


def convert_fastai(
    weights: str | os.PathLike,
    vocab: str | os.PathLike | Sequence[str],
    out_dir: str | os.PathLike,
    *,
    target_vocab: str | os.PathLike | Sequence[str] | None = None,
    backwards: bool = False,
    bptt: int = 72,
    max_len: int = 1440,
    overwrite: bool = False,
    card_info: Mapping[str, Any] | Callable[[FastaiConversion], Mapping[str, Any]] | None = None,
    labels: Sequence[str] | None = None,
    sp_model: str | os.PathLike | None = None,
    lang: str | None = None,
) -> FastaiConversion:
    """Convert a fastai AWD-LSTM checkpoint into a `save_pretrained` folder (config, safetensors, tokenizer).

    Args:
        weights: `.pth`/`.h5` file: a state dict or `{'model': state_dict, 'opt': ...}` of a fastai v2/v1/0.7
            language model, an encoder (`save_encoder`, 0.7 `*_enc.h5`) or a fastai v2 classifier.
        vocab: the checkpoint's vocabulary: a pickled itos list, or the list itself. fastai 0.7 special tokens
            are renamed to their v2 names; v2 special tokens it lacks are appended (mean embedding row). A token
            listed twice maps to its last id, as in fastai (`transfer.last_id_wins`).
        out_dir: the folder to write; refused if it is not empty, unless `overwrite`.
        target_vocab: map the embedding (and decoder bias) onto this vocabulary by token string, like fastai's
            `match_embeds`: new tokens get the mean row and the mean bias.
        backwards: the checkpoint is a backward (right-to-left) model; recorded as `config.backwards`.
        bptt, max_len: BPT3C chunk length and kept window written to the config (fastai: 72 and 72*20).
        overwrite: write into a non-empty `out_dir` (files not produced by the conversion are kept).
        card_info: model card information for the README.md written with the model (keys of
            `hf_bpt3c.model_card.INFO_KEYS`), or a function of the `FastaiConversion` (kind, layout, config, notes)
            that returns it. Unknown keys raise `ValueError` before anything is written.
        labels: a classifier's class names in the order of its head's outputs (fastai's `dls.vocab[1]`), written
            as `config.id2label`/`label2id` so that `pipeline("text-classification")` returns them (default:
            `LABEL_0`, `LABEL_1`, ...). `ValueError` when the count is not the head's, for another kind of
            checkpoint, or for repeated or empty names.
        sp_model: the SentencePiece `.model` file of a checkpoint trained with fastai's `SentencePieceTokenizer`
            (fastai_ulmfit's `spm/spm.model`): the tokenizer is then `AwdLstmTokenizer.from_sentencepiece(sp_model,
            vocab)`, whose ids are fastai's `Numericalize(vocab)` of `Tokenizer(SentencePieceTokenizer(...))`.
            Without it the vocabulary is read as fastai's English word tokens. A damaged file, or one that is not a
            SentencePiece model, raises `ValueError` naming it, before the weights are read.
        lang: the language code recorded in the tokenizer and the model card (`language`), such as `"de"`; a
            language other than English needs `sp_model`.

    Sizes (vocabulary, embedding, hidden size, layers, head) come from the checkpoint; every shape is checked
    before a model is built (`safe_load.check_weights`: `ValueError` naming the checkpoint's key). The result loads with
    `AutoModelForCausalLM` (LM, encoder), `AutoModelForSequenceClassification` (classifier, encoder) or
    `AutoModel`, and `AutoTokenizer`.
    """
    weights, out_dir = Path(weights), Path(out_dir)
    _check_options(bptt, max_len, backwards, labels)
    lang = _check_lang(lang)
    if sp_model is None and not is_english(lang):
        raise ValueError(
            f"lang={lang!r} needs the SentencePiece model the checkpoint was trained with (sp_model / --sp-model "
            "spm.model): without one the vocabulary is read as fastai's English word tokens"
        )
    _check_out_dir(out_dir, overwrite)
    sp_bytes = None if sp_model is None else _read_sp_model(sp_model)
    state_dict = load_fastai_checkpoint(weights)
    try:
        kind, layout = checkpoint_kind(state_dict), checkpoint_layout(state_dict)
    except ValueError as err:
        raise ValueError(f"WEIGHTS file {weights}: {err}") from None
    itos = vocab_arg(vocab, "vocab")
    hf = _hf_weights(state_dict, kind, weights)
    n_rows = hf["awd_lstm.embeddings.weight"].shape[0]
    if n_rows != len(itos):
        raise ValueError(f"vocab has {len(itos)} tokens but the embedding in {weights} has {n_rows} rows")
    notes = []
    if kind == "language_model" and "decoder.bias" not in hf:
        hf["decoder.bias"] = torch.zeros(n_rows)
        notes.append("the checkpoint's decoder has no bias (fastai 0.7); the converted decoder bias is set to zero")
    itos, special_notes = with_fastai_specials(itos)
    notes += special_notes
    if len(itos) > n_rows:
        hf = append_mean_rows(hf, len(itos) - n_rows)
    if target_vocab is not None:
        new_itos = with_fastai_specials(vocab_arg(target_vocab, "target_vocab"))[0]
        hf = match_embeddings(hf, itos, new_itos)
        old_tokens = set(itos)
        found = sum(tok in old_tokens for tok in new_itos)
        notes.append(f"target vocabulary: {found}/{len(new_itos)} tokens found, the others got the mean row and bias")
        itos = new_itos
    names, duplicate_notes = last_id_wins(itos)
    notes += duplicate_notes
    if sp_bytes is not None:  # the SentencePiece backend names repeated entries itself (the last id wins as well)
        tokenizer = _sentencepiece_tokenizer(Path(sp_model), sp_bytes, itos, lang)
    else:
        tokenizer = AwdLstmTokenizer.from_fastai_vocab(names, lang=lang or "en")
    try:
        config = _build_config(hf, kind, tokenizer, backwards=backwards, bptt=bptt, max_len=max_len)
    except (TypeError, ValueError) as err:
        raise ValueError(f"WEIGHTS file {weights}: its sizes do not make a valid AWD-LSTM: {err}") from None
    if labels is not None:
        names = _check_labels(labels, kind, config.num_labels if kind == "classifier" else None)
        config.id2label = dict(enumerate(names))
        config.label2id = {name: i for i, name in enumerate(names)}
    result = FastaiConversion(
        kind=kind,
        layout=layout,
        out_dir=out_dir,
        config=config,
        notes=notes,
        tokenizer="word" if sp_bytes is None else "sentencepiece",
        lang=lang,
    )
    model = _build_model(config, hf, kind)
    info = _card_info(card_info, result) if card_info is not None else {}
    if lang is not None:
        info.setdefault("language", lang)
    if info:
        model.model_card_info = info
    _save_into(out_dir, model, tokenizer)
    for note in notes:
        logger.warning("%s: %s", weights.name, note)
    return result


def _card_info(card_info, result: FastaiConversion) -> dict[str, Any]:
    """`card_info` (a mapping, or a function of the conversion returning one) as a dict with known keys only."""
    info = card_info(result) if callable(card_info) else card_info
    if not isinstance(info, Mapping):
        raise TypeError(f"card_info must be a mapping or return one, got {type(info).__name__}")
    unknown = sorted(set(info) - INFO_KEYS)
    if unknown:
        raise ValueError(f"card_info has unknown keys {unknown}; expected keys among {sorted(INFO_KEYS)}")
    return dict(info)


# ----------------------------------------------------------------------------------------------------------------
# fastai's pretrained WikiText-103 language models, downloaded and converted in one call
# ----------------------------------------------------------------------------------------------------------------

# fastai's `URLs.S3_MODEL` (fastai/data/external.py); `language_model_learner(..., pretrained=True)` downloads
# `URLs.WT103_FWD` / `URLs.WT103_BWD` from there and loads the one `*.pth` and one `*.pkl` of the extracted folder.
FASTAI_MODEL_ZOO_URL = "https://s3.amazonaws.com/fast-ai-modelzoo/"
FASTAI_BASE_URL_ENV = "HF_BPT3C_FASTAI_BASE_URL"


@dataclass(frozen=True)
class FastaiPretrained:
    """One of fastai's published ULMFiT language models: the archive's file name in fastai's model zoo, fastai's
    name for its URL, and the reading direction."""

    filename: str
    fastai_name: str
    backwards: bool

    @property
    def url(self) -> str:
        """The archive's URL in fastai's model zoo."""
        return FASTAI_MODEL_ZOO_URL + self.filename


FASTAI_PRETRAINED = {
    "wt103-fwd": FastaiPretrained("wt103-fwd.tgz", "URLs.WT103_FWD", backwards=False),
    "wt103-bwd": FastaiPretrained("wt103-bwd.tgz", "URLs.WT103_BWD", backwards=True),
}


@dataclass
class FastaiFetch:
    """What `fetch_fastai` did: the conversion, the archive it read, and whether that was the cached copy.

    `url` is where the archive was (or, for a cached copy, would have been) downloaded from; None when the archive
    was given as a local file. `layout` is the archive layout found in it: `"wt103"` (fastai's English word-level
    WikiText-103 models) or `"fastai_ulmfit"` (fwd/, bwd/ and spm/, the SentencePiece models of fastai_ulmfit);
    `direction` is `"fwd"` or `"bwd"`, `lang` the language recorded (None if unknown) and `lang_source` where it
    came from (`"model.json"`, `"name"`, `"argument"`, `"wt103"`); `figures` the training figures shown from
    `model.json`.
    """

    conversion: FastaiConversion
    archive: Path
    from_cache: bool
    url: str | None
    layout: str = "wt103"
    direction: str = "fwd"
    lang: str | None = "en"
    lang_source: str | None = "wt103"
    figures: dict[str, Any] = field(default_factory=dict)


def _fastai_pretrained(name: str) -> FastaiPretrained:
    if name not in FASTAI_PRETRAINED:
        raise ValueError(
            f"name must be one of {sorted(FASTAI_PRETRAINED)} or the http:// or https:// URL of a fastai_ulmfit "
            f"archive, got {name!r}"
        )
    return FASTAI_PRETRAINED[name]


def _fastai_base_url(base_url: str | None) -> str:
    """The model zoo base URL: `base_url`, else `$HF_BPT3C_FASTAI_BASE_URL`, else fastai's; ends with `/`."""
    if base_url is not None:
        return check_url(base_url, "base_url (--base-url)").rstrip("/") + "/"
    from_env = os.environ.get(FASTAI_BASE_URL_ENV)
    if from_env:
        return check_url(from_env, FASTAI_BASE_URL_ENV).rstrip("/") + "/"
    return FASTAI_MODEL_ZOO_URL


def _offline_hint(spec: FastaiPretrained) -> str:
    return (
        f"Download {spec.url} elsewhere and pass the file with --archive PATH (Python: archive=PATH), "
        f"or point --base-url / {FASTAI_BASE_URL_ENV} to a mirror."
    )


def _local_archive(archive: str | os.PathLike) -> Path:
    path = Path(archive)
    if not path.exists():
        raise FileNotFoundError(f"ARCHIVE {path} does not exist")
    if not path.is_file():
        raise ValueError(f"ARCHIVE {path} is not a file; expected fastai's .tgz archive")
    return path


class MissingDirection(ValueError):
    """A fastai_ulmfit archive lacks the model of the requested direction (the archive itself is fine)."""


def _extract_checkpoint(
    archive: Path, dest: Path, origin: str, limits: ArchiveLimits | None, choose=None
) -> dict[str, Path]:
    """The archive's files, extracted safely into `dest` within `limits`: by default its `.pth` and `.pkl` (WT103),
    else those that `choose` picks (`extract_members`). `origin` is "download", "cache" or "local": a
    just-downloaded archive that is refused is removed from the cache (unless only a size limit was exceeded, or
    the archive merely lacks the requested direction: then it is kept); for a cached one the message says how to
    download it again."""
    try:
        if choose is None:
            choose = _wt103_chooser
        return extract_members(archive, dest, choose, limits=limits)
    except (LimitExceeded, MissingDirection) as err:
        if origin == "download":
            raise type(err)(f"{err} (the downloaded file is kept in the cache: {archive})") from None
        raise
    except ValueError as err:
        if origin == "download":
            archive.unlink(missing_ok=True)
            raise ValueError(f"{err} (the downloaded file was removed from the cache)") from None
        if origin == "cache":
            raise ValueError(f"{err} (this is the cached copy: delete it to download it again)") from None
        raise


def _wt103_chooser(archive: Path, members: Sequence[tarfile.TarInfo]) -> dict[str, tarfile.TarInfo]:
    """fastai's WT103 layout: exactly one `.pth` and one `.pkl` in at most one folder (`select_members`)."""
    return select_members(archive, members, (".pth", ".pkl"))


def _fastai_card_info(name: str, spec: FastaiPretrained, official: bool, conversion: FastaiConversion) -> dict:
    """Model card information for a converted fastai WT103 model: source, licence note, detected layout.
    `official`: the archive came from fastai's URL (not from a mirror or a local file)."""
    call = f"language_model_learner(dls, AWD_LSTM, pretrained=True{', backwards=True' if spec.backwards else ''})"
    source = [
        f"Converted from fastai's pretrained AWD-LSTM, the model zoo archive `{spec.filename}` "
        f"(`{spec.fastai_name}` = <{spec.url}>), which fastai's `{call}` downloads.",
        f"The checkpoint has fastai's **{conversion.layout}** layout; `hf-bpt3c fetch-fastai {name}` renamed its "
        "tensors for this model without changing their values.",
    ]
    if not official:
        source.append("This copy of the archive was read from a mirror or a local file, not from fastai's URL.")
    if conversion.notes:
        source.append("Conversion notes: " + "; ".join(conversion.notes) + ".")
    source.append(
        "**Licence note.** fast.ai publishes these weights for the fastai library, which is licensed under "
        "Apache-2.0; this card does not state a licence for the weights themselves. The training text, "
        "WikiText-103, is derived from Wikipedia articles under CC BY-SA 3.0. Check these terms before "
        "redistributing the weights."
    )
    direction = "backward (right-to-left)" if spec.backwards else "forward"
    return {
        "source": "\n\n".join(source),
        "training": f"Pre-trained by fast.ai as a {direction} language model on WikiText-103 (Wikipedia articles; "
        "Merity et al. 2016, arXiv:1609.07843). The recipe is fastai's and is not recorded here.",
        "datasets": ["Salesforce/wikitext"],
        "language": "en",
        "model_name": f"ulmfit-{name}",
        "limitations": "Pre-trained on Wikipedia text only: fine-tune it on the target corpus (ULMFiT's second "
        "stage) before using it on other kinds of text.",
    }


# ----------------------------------------------------------------------------------------------------------------
# The community models of fastai_ulmfit (SentencePiece, 13 Wikipedia languages)
# ----------------------------------------------------------------------------------------------------------------

FASTAI_ULMFIT_URL = "https://github.com/floleuerer/fastai_ulmfit"
# the languages of fastai_ulmfit's pretrained models (its README: https://bit.ly/ulmfit-<code>wiki)
FASTAI_ULMFIT_LANGUAGES = {
    "ar": "Arabic",
    "de": "German",
    "es": "Spanish",
    "he": "Hebrew",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "nl": "Dutch",
    "pt": "Portuguese",
    "ru": "Russian",
    "th": "Thai",
    "uk": "Ukrainian",
    "vi": "Vietnamese",
}
DIRECTIONS = {"fwd": "forward", "bwd": "backward (right-to-left)"}
MODEL_JSON_MAX_BYTES = 64 << 10
MAX_FIGURES = 40
_FIGURE_KEY = re.compile(r"^[A-Za-z0-9_\-]{1,40}$")
_FIGURE_TEXT = re.compile(r"^[\w .,:;+\-/()%#=@']{1,80}$")
_WIKI_NAME = re.compile(r"(?<![a-z])([a-z]{2,3})wiki(?![a-z])")
_SAFE_URL = re.compile(r"^https?://[A-Za-z0-9\-._~:/?#@!$&'()*+,;=%]{1,300}$")


def _ulmfit_chooser(direction: str, found: dict) -> Callable:
    """The chooser of `extract_members` for either layout. A member `.../fwd/*model.pth` or `.../bwd/*model.pth`
    makes the archive fastai_ulmfit's: the chosen files are the direction's `*model.pth`, `*vocab.pkl` and
    `model.json` (when there is one, of at most `MODEL_JSON_MAX_BYTES`) and `spm/spm.model`, next to `fwd/` and
    `bwd/`. Otherwise the archive is read as fastai's WT103 layout. What was found goes into `found`."""

    def choose(archive: Path, members: Sequence[tarfile.TarInfo]) -> dict[str, tarfile.TarInfo]:
        files: dict[tuple[str, ...], tarfile.TarInfo] = {}
        for member in members:
            parts = member_parts(archive, member)  # every member checked, as for WT103, before anything else
            if member.isreg() and parts:
                files.setdefault(parts, member)
        roots = {p[:-2] for p in files if len(p) >= 2 and p[-2] in DIRECTIONS and p[-1].endswith("model.pth")}
        if not roots:
            found["layout"] = "wt103"
            picked = _wt103_chooser(archive, members)
            return {"weights": picked[".pth"], "vocab": picked[".pkl"]}
        if len(roots) > 1:
            listed = sorted("/".join(root) or "." for root in roots)
            raise ValueError(f"ARCHIVE {archive} refused: fastai_ulmfit models in several folders {listed}, not one")
        root = roots.pop()
        seen: set[tuple[str, ...]] = set()
        for member in members:
            parts = member_parts(archive, member)
            if member.isreg() and parts in seen:
                raise ValueError(f"ARCHIVE {archive} refused: member {member.name!r} appears twice")
            seen.add(parts)
        folder = {d: {p[-1]: m for p, m in files.items() if p[:-1] == (*root, d)} for d in DIRECTIONS}
        have = [d for d in DIRECTIONS if any(name.endswith("model.pth") for name in folder[d])]
        found.update(layout="fastai_ulmfit", root=root, directions=have)
        where = "/".join((*root, direction))
        if direction not in have:
            other = have[0]
            raise MissingDirection(
                f"ARCHIVE {archive} holds no {DIRECTIONS[direction]} model (no {where}/*model.pth); it holds the "
                f"{' and '.join(DIRECTIONS[d] for d in have)} model ({', '.join(have)}): pass --direction {other} "
                f"(Python: direction={other!r})"
            )
        chosen = {}
        for key, ending in (("weights", "model.pth"), ("vocab", "vocab.pkl")):
            names = sorted(name for name in folder[direction] if name.endswith(ending))
            if len(names) != 1:
                raise ValueError(f"ARCHIVE {archive} must hold exactly one {where}/*{ending} file, found {names}")
            chosen[key] = folder[direction][names[0]]
        spm = files.get((*root, "spm", "spm.model"))
        if spm is None:
            raise ValueError(
                f"ARCHIVE {archive} has no {'/'.join((*root, 'spm', 'spm.model'))}: the SentencePiece model that "
                "fastai_ulmfit's archives carry next to fwd/ and bwd/ is missing"
            )
        chosen["sp_model"] = spm
        meta = folder[direction].get("model.json")
        if meta is not None and meta.size > MODEL_JSON_MAX_BYTES:
            limit = human(MODEL_JSON_MAX_BYTES)
            found["notes"] = [f"{where}/model.json ignored: {human(meta.size)}, more than {limit}"]
        elif meta is not None:
            chosen["model_json"] = meta
        return chosen

    return choose


def _read_model_json(path: Path) -> tuple[dict | None, str | None]:
    """model.json as a dict, or None and why not. The file is untrusted: at most `MODEL_JSON_MAX_BYTES`, UTF-8,
    valid JSON (NaN and Infinity read as null, nesting within the parser's recursion limit), a JSON object."""
    with open(path, "rb") as file:
        data = file.read(MODEL_JSON_MAX_BYTES + 1)
    if len(data) > MODEL_JSON_MAX_BYTES:
        return None, f"larger than {human(MODEL_JSON_MAX_BYTES)}"
    try:
        meta = json.loads(data.decode("utf-8-sig"), parse_constant=lambda constant: None)
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except (ValueError, RecursionError) as err:
        return None, f"not valid JSON ({_short(err)[:80]})"
    if not isinstance(meta, dict):
        return None, f"not a JSON object (a JSON {type(meta).__name__})"
    return meta, None


def _figures(meta: Mapping) -> tuple[dict[str, int | float | str], int]:
    """The entries of model.json worth showing, as `{dotted.key: value}` (nested objects flattened, 3 levels at
    most, `MAX_FIGURES` at most): finite numbers and short plain strings under plain keys. Returns them and how
    many other entries were left out (lists, long or odd strings, odd keys...). Booleans and nulls are left out
    silently."""
    shown: dict[str, int | float | str] = {}
    left_out = 0

    def walk(obj: Mapping, prefix: str, depth: int) -> None:
        nonlocal left_out
        for key, value in obj.items():
            if not _FIGURE_KEY.match(key):
                left_out += 1
                continue
            name = prefix + key
            if isinstance(value, dict) and depth < 3:
                walk(value, name + ".", depth + 1)
            elif value is None or isinstance(value, bool):
                continue
            elif len(shown) >= MAX_FIGURES:
                left_out += 1
            elif isinstance(value, int) and abs(value) < 10**15:
                shown[name] = value
            elif isinstance(value, float) and math.isfinite(value):
                shown[name] = value
            elif isinstance(value, str) and _FIGURE_TEXT.match(value):
                shown[name] = value
            else:
                left_out += 1

    walk(meta, "", 1)
    return shown, left_out


def _lang_from_meta(meta: Mapping | None) -> str | None:
    """The language model.json records (`lang`, `language`, or the tokenizer's `params.lang`), if it is a code."""
    if not meta:
        return None
    tokenizer = meta.get("tokenizer")
    params = tokenizer.get("params") if isinstance(tokenizer, dict) else None
    candidates = [meta.get("lang"), meta.get("language"), params.get("lang") if isinstance(params, dict) else None]
    for value in candidates:
        if isinstance(value, str) and _LANG.match(value):
            return value
    return None


def _lang_from_names(names: Sequence[str]) -> str | None:
    """The language of a fastai_ulmfit name such as `ulmfit-dewiki` or `dewiki` (Wikipedia's `<code>wiki`)."""
    for name in names:
        match = _WIKI_NAME.search(name.lower())
        if match:
            return match.group(1)
    return None


def _url_cache_name(url: str) -> str:
    """The cache file of an archive URL: its last path component made safe, and a hash of the whole URL
    (`ulmfit-dewiki-<12 hex>.tgz`), so that two URLs never share a file."""
    last = urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", last)
    for extension in (".tar.gz", ".tgz"):
        if stem.lower().endswith(extension):
            stem = stem[: -len(extension)]
    stem = stem.strip(".-")[:80] or "archive"
    return f"{stem}-{hashlib.sha256(url.encode('utf-8')).hexdigest()[:12]}.tgz"


def _url_hint(url: str) -> str:
    return (
        f"Download {url} elsewhere (a browser follows its short link; wget needs --content-disposition) and pass "
        "the file with --archive PATH (Python: archive=PATH)."
    )


def _markdown_source(url: str | None, archive: Path) -> str:
    """Where the archive came from, safe to put in the card: its URL, else the archive's file name."""
    if url is not None and _SAFE_URL.match(url):
        return f"<{url}>"
    text = url if url is not None else archive.name
    return "`" + text.replace("`", "'")[:300] + "`"


def _ulmfit_card_info(
    *,
    url: str | None,
    archive: Path,
    direction: str,
    lang: str | None,
    figures: Mapping[str, Any],
    notes: Sequence[str],
    conversion: FastaiConversion,
) -> dict:
    """Model card information for a converted fastai_ulmfit model: language, direction, source, the figures of
    model.json."""
    language = FASTAI_ULMFIT_LANGUAGES.get((lang or "").split("-")[0].split("_")[0], lang)
    wikipedia = f"{language} Wikipedia" if lang else "Wikipedia (language not recorded)"
    source = [
        f"Converted from an archive of [fastai_ulmfit]({FASTAI_ULMFIT_URL}) (pretrained ULMFiT models of "
        f"Wikipedia in 13 languages, trained with fastai's `SentencePieceTokenizer`): {_markdown_source(url, archive)}"
        f"{'' if url is None else f' (archive `{archive.name}`)'}, its **{DIRECTIONS[direction]}** model "
        f"(`{direction}/`) with the SentencePiece model `spm/spm.model`.",
        f"The checkpoint has fastai's **{conversion.layout}** layout; `hf-bpt3c fetch-fastai` renamed its tensors "
        "without changing their values, and the tokenizer gives the ids of fastai's `Numericalize` over "
        "`Tokenizer(SentencePieceTokenizer(sp_model=...))`.",
    ]
    all_notes = [*notes, *conversion.notes]
    if all_notes:
        source.append("Conversion notes: " + "; ".join(all_notes) + ".")
    source.append(
        "**Licence note.** Check the terms of the fastai_ulmfit project for the weights before redistributing "
        "them; this card does not state a licence for them. The training text is derived from Wikipedia "
        "articles, published under CC BY-SA."
    )
    training = (
        f"Pre-trained by the fastai_ulmfit project as a {DIRECTIONS[direction]} AWD-LSTM language model on "
        f"{wikipedia}, with fastai's `SentencePieceTokenizer` (vocabulary of {conversion.config.vocab_size} tokens)."
    )
    if figures:
        lines = [
            f"- `{key}`: {value if not isinstance(value, float) else f'{value:.6g}'}"
            if not isinstance(value, str)
            else f"- `{key}`: `{value}`"
            for key, value in figures.items()
        ]
        training += "\n\nFigures recorded in the archive's `model.json`:\n\n" + "\n".join(lines)
    else:
        training += " The archive records no training figures."
    info = {
        "source": "\n\n".join(source),
        "training": training,
        "model_name": f"ulmfit-{lang}wiki-{direction}" if lang else f"ulmfit-{direction}",
        "limitations": "Pre-trained on Wikipedia text only: fine-tune it on the target corpus (ULMFiT's second "
        "stage) before using it on other kinds of text.",
    }
    if lang:
        info["language"] = lang
    return info


def _resolve_source(
    name: str | None, direction: str | None, base_url: str | None, archive, cache_dir
) -> tuple[FastaiPretrained | None, str, str | None, Path, str | None]:
    """(WT103 spec or None, direction, URL or None, cache path or local archive, offline hint) for the arguments."""
    spec = None
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a string (a model name or a URL), got {type(name).__name__}")
    is_url = name is not None and "://" in name and urllib.parse.urlsplit(name).scheme in URL_SCHEMES
    if name is not None and not is_url:
        spec = _fastai_pretrained(name)
        implied = "bwd" if spec.backwards else "fwd"
        if direction is not None and direction != implied:
            raise ValueError(f"name {name!r} is the {DIRECTIONS[implied]} model, not direction={direction!r}")
        direction = implied
    direction = direction or "fwd"
    if archive is not None:
        if base_url is not None:
            raise ValueError("pass either archive (a local copy) or base_url (a mirror to download from), not both")
        if is_url:
            raise ValueError("pass either a URL to download or archive (a local copy), not both")
        return spec, direction, None, _local_archive(archive), None
    if name is None:
        raise ValueError(
            f"name is needed: one of {sorted(FASTAI_PRETRAINED)}, the URL of a fastai_ulmfit archive, or pass "
            "archive=PATH (--archive PATH) for a local copy"
        )
    if is_url and base_url is not None:
        raise ValueError(
            "base_url (--base-url) is a mirror of fastai's model zoo for the names wt103-fwd / wt103-bwd; with a URL, "
            "give the mirror's URL of the archive itself"
        )
    folder = Path(cache_dir) if cache_dir is not None else fastai_cache_dir()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"cache_dir (--cache-dir) {folder} is a file, not a folder")
    if is_url:
        return None, direction, check_url(name, "url"), folder / _url_cache_name(name), _url_hint(name)
    url = _fastai_base_url(base_url) + spec.filename
    return spec, direction, url, folder / spec.filename, _offline_hint(spec)


def fetch_fastai(
    name: str | None,
    out_dir: str | os.PathLike,
    *,
    base_url: str | None = None,
    archive: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    bptt: int = 72,
    max_len: int = 1440,
    limits: ArchiveLimits | None = None,
    direction: str | None = None,
    lang: str | None = None,
) -> FastaiFetch:
    """Download a pretrained ULMFiT language model archive of fastai or fastai_ulmfit and convert it into a
    Hub-ready folder (model, tokenizer, model card).

    Args:
        name: `"wt103-fwd"` (fastai's `URLs.WT103_FWD`), `"wt103-bwd"` (`URLs.WT103_BWD`, a backward model), or
            the http(s) URL of a fastai_ulmfit archive, such as `"https://bit.ly/ulmfit-dewiki"` (redirects are
            followed); None with `archive`.
        out_dir: the folder to write (model, tokenizer, model card); refused if not empty, unless `overwrite`.
        base_url: where a WT103 archive is downloaded from (a mirror of fastai's model zoo); default
            `$HF_BPT3C_FASTAI_BASE_URL`, else fastai's `https://s3.amazonaws.com/fast-ai-modelzoo/`.
        archive: a local copy of the `.tgz` archive; nothing is downloaded (exclusive with `base_url` and a URL).
            Its layout (WT103 or fastai_ulmfit) is read from its members.
        cache_dir: where downloaded archives are kept (default `<HF_HOME>/hf_bpt3c/fastai`). An archive already
            there is used without any request; a download is renamed into place only once complete. A URL's
            archive is cached as `<last part of the URL>-<hash of the URL>.tgz`.
        overwrite, bptt, max_len: as in `convert_fastai`.
        limits: how large the archive may expand (`ArchiveLimits`: total, per member, member count, compression
            ratio); default: the environment variables of `hf_bpt3c.convert.safety`, else 2 GiB, 1 GiB, 256, 100x.
        direction: `"fwd"` (default) or `"bwd"`: which model of a fastai_ulmfit archive (its `fwd/` or `bwd/`
            folder) to convert; `config.backwards` is set from it. A WT103 name implies it.
        lang: the language code when the archive does not say it: the language is read from the direction's
            `model.json` if it has one, else from a name such as `ulmfit-dewiki` (the URL, the archive file or its
            top folder), else this argument.

    A WT103 archive must be a gzip tar holding exactly one `.pth` and one `.pkl` (in at most one folder); a
    fastai_ulmfit archive holds `fwd/` and/or `bwd/` (each one `*model.pth` and one `*vocab.pkl`, optionally
    `model.json`) and `spm/spm.model`, possibly under one top folder; its tokenizer is built with
    `AwdLstmTokenizer.from_sentencepiece`, and the model card names the language, the direction, the source and
    the figures of `model.json` (read as untrusted data: size-bounded, only plain numbers and short strings shown).
    Members with absolute paths, `..`, links, devices or sparse data, and archives beyond `limits`, are refused
    before anything is extracted (the limits also hold while extracting). The checkpoint is read with
    `torch.load(weights_only=True)` and the vocabulary with a data-only unpickler. Download failures raise
    `hf_bpt3c.convert.download.DownloadError` (a `ValueError` and `OSError`) naming the URL; bad archives `ValueError`
    (`MissingDirection` when the archive lacks the requested direction: it names those it has). The temporary
    extraction folder is removed on every exit, SIGTERM included.
    """
    out_dir = Path(out_dir)
    if direction is not None and direction not in DIRECTIONS:
        raise ValueError(f"direction (--direction) must be 'fwd' or 'bwd', got {direction!r}")
    lang = _check_lang(lang)
    _check_options(bptt, max_len, False)
    limits = (limits or ArchiveLimits()).resolved()
    _check_out_dir(out_dir, overwrite)
    with terminate_cleanly():
        spec, direction, url, path, hint = _resolve_source(name, direction, base_url, archive, cache_dir)
        if url is None:
            origin = "local"
        else:
            origin = "cache" if cached_download(url, path, hint=hint) else "download"
        with tempfile.TemporaryDirectory(prefix="hf_bpt3c-fastai-") as tmp:
            found: dict[str, Any] = {}
            files = _extract_checkpoint(path, Path(tmp), origin, limits, _ulmfit_chooser(direction, found))
            try:
                options = dict(bptt=bptt, max_len=max_len, overwrite=overwrite)
                source = dict(direction=direction, lang=lang, url=url, path=path, origin=origin)
                if found["layout"] == "wt103":
                    return _convert_wt103(files, out_dir, spec, **source, **options)
                return _convert_ulmfit(files, out_dir, found, **source, **options)
            except ValueError as err:
                raise ValueError(f"{err} (extracted from ARCHIVE {path})") from None


def _convert_wt103(
    files, out_dir, spec, *, direction, lang, url, path, origin, bptt, max_len, overwrite
) -> FastaiFetch:
    """The WT103 layout: fastai's English word-level model, `spec` from the name or else from the direction."""
    if not is_english(lang):
        raise ValueError(
            f"this archive has the layout of fastai's English word-level WikiText-103 models, not fastai_ulmfit's; "
            f"lang={lang!r} does not apply to it"
        )
    spec = spec or FASTAI_PRETRAINED[f"wt103-{direction}"]
    key = next(k for k, v in FASTAI_PRETRAINED.items() if v == spec)
    conversion = convert_fastai(
        files["weights"],
        files["vocab"],
        out_dir,
        backwards=spec.backwards,
        bptt=bptt,
        max_len=max_len,
        overwrite=overwrite,
        card_info=lambda result: _fastai_card_info(key, spec, url == spec.url, result),
    )
    return FastaiFetch(conversion=conversion, archive=path, from_cache=origin == "cache", url=url, direction=direction)


def _convert_ulmfit(
    files, out_dir, found, *, direction, lang, url, path, origin, bptt, max_len, overwrite
) -> FastaiFetch:
    """The fastai_ulmfit layout: SentencePiece tokenizer, language from model.json, a name or `lang`."""
    notes = list(found.get("notes", []))
    meta, why = (None, None) if "model_json" not in files else _read_model_json(files["model_json"])
    if why:
        notes.append(f"{direction}/model.json ignored: {why}")
    figures, left_out = _figures(meta) if meta else ({}, 0)
    if left_out:
        notes.append(f"{left_out} entries of model.json not shown (only numbers and short plain strings are)")
    names = ["/".join(found["root"]), path.name] + ([urllib.parse.urlsplit(url).path] if url else [])
    detected = [(_lang_from_meta(meta), "model.json"), (_lang_from_names(names), "name"), (lang, "argument")]
    chosen, source = next(((code, where) for code, where in detected if code), (None, None))
    if lang is not None and chosen != lang:
        notes.append(f"the language {chosen!r} from the archive's {source} is used, not lang={lang!r}")
    if chosen is None:
        notes.append("the language is not recorded in the archive: pass lang= (--lang) to set it")
    conversion = convert_fastai(
        files["weights"],
        files["vocab"],
        out_dir,
        backwards=direction == "bwd",
        bptt=bptt,
        max_len=max_len,
        overwrite=overwrite,
        sp_model=files["sp_model"],
        lang=chosen,
        card_info=lambda result: _ulmfit_card_info(
            url=url,
            archive=path,
            direction=direction,
            lang=chosen,
            figures=figures,
            notes=notes,
            conversion=result,
        ),
    )
    conversion.notes[:0] = notes
    return FastaiFetch(
        conversion=conversion,
        archive=path,
        from_cache=origin == "cache",
        url=url,
        layout="fastai_ulmfit",
        direction=direction,
        lang=chosen,
        lang_source=source,
        figures=figures,
    )


__all__ = [
    "FASTAI_BASE_URL_ENV",
    "FASTAI_MODEL_ZOO_URL",
    "FASTAI_PRETRAINED",
    "FASTAI_ULMFIT_LANGUAGES",
    "FASTAI_ULMFIT_URL",
    "FastaiConversion",
    "FastaiFetch",
    "FastaiPretrained",
    "MissingDirection",
    "checkpoint_kind",
    "checkpoint_layout",
    "config_kwargs_from_fastai",
    "convert_fastai",
    "fastai_cache_dir",
    "fastai_to_hf_state_dict",
    "fetch_fastai",
    "is_fastai_classifier",
    "load_fastai_checkpoint",
    "load_itos",
]
