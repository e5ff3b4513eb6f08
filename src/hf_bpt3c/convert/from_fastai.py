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
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..model_card import INFO_KEYS
from ..models.awd_lstm.configuration_awd_lstm import AwdLstmConfig
from ..models.awd_lstm.modeling_awd_lstm import AwdLstmForCausalLM, AwdLstmForSequenceClassification, AwdLstmModel
from ..models.awd_lstm.saving import save_atomically
from ..models.awd_lstm.tokenization_awd_lstm import AwdLstmTokenizer
from .download import cached_download, check_url, extract_files, fastai_cache_dir
from .safe_load import check_weights, load_fastai_checkpoint, load_itos, vocab_arg
from .safety import ArchiveLimits, LimitExceeded, terminate_cleanly
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
    """What `convert_fastai` wrote: the model kind, the fastai layout, the output folder and notes for the user."""

    kind: str
    layout: str
    out_dir: Path
    config: AwdLstmConfig
    notes: list[str] = field(default_factory=list)


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

    Sizes (vocabulary, embedding, hidden size, layers, head) come from the checkpoint; every shape is checked
    before a model is built (`safe_load.check_weights`: `ValueError` naming the checkpoint's key). The result loads with
    `AutoModelForCausalLM` (LM, encoder), `AutoModelForSequenceClassification` (classifier, encoder) or
    `AutoModel`, and `AutoTokenizer`.
    """
    weights, out_dir = Path(weights), Path(out_dir)
    _check_options(bptt, max_len, backwards, labels)
    _check_out_dir(out_dir, overwrite)
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
    tokenizer = AwdLstmTokenizer.from_fastai_vocab(names)
    try:
        config = _build_config(hf, kind, tokenizer, backwards=backwards, bptt=bptt, max_len=max_len)
    except (TypeError, ValueError) as err:
        raise ValueError(f"WEIGHTS file {weights}: its sizes do not make a valid AWD-LSTM: {err}") from None
    if labels is not None:
        names = _check_labels(labels, kind, config.num_labels if kind == "classifier" else None)
        config.id2label = dict(enumerate(names))
        config.label2id = {name: i for i, name in enumerate(names)}
    result = FastaiConversion(kind=kind, layout=layout, out_dir=out_dir, config=config, notes=notes)
    model = _build_model(config, hf, kind)
    if card_info is not None:
        model.model_card_info = _card_info(card_info, result)
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
    was given as a local file.
    """

    conversion: FastaiConversion
    archive: Path
    from_cache: bool
    url: str | None


def _fastai_pretrained(name: str) -> FastaiPretrained:
    if name not in FASTAI_PRETRAINED:
        raise ValueError(f"name must be one of {sorted(FASTAI_PRETRAINED)}, got {name!r}")
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


def _extract_checkpoint(archive: Path, dest: Path, origin: str, limits: ArchiveLimits | None) -> dict[str, Path]:
    """The archive's `.pth` and `.pkl`, extracted safely into `dest` within `limits`. `origin` is "download", "cache"
    or "local": a just-downloaded archive that is refused is removed from the cache (unless only a size limit was
    exceeded: then it is kept, for a rerun with a higher limit); for a cached one the message says how to download
    it again."""
    try:
        return extract_files(archive, dest, (".pth", ".pkl"), limits=limits)
    except LimitExceeded as err:
        if origin == "download":
            raise LimitExceeded(f"{err} (the downloaded file is kept in the cache: {archive})") from None
        if origin == "cache":
            raise LimitExceeded(f"{err} (this is the cached copy: delete it to download it again)") from None
        raise
    except ValueError as err:
        if origin == "download":
            archive.unlink(missing_ok=True)
            raise ValueError(f"{err} (the downloaded file was removed from the cache)") from None
        if origin == "cache":
            raise ValueError(f"{err} (this is the cached copy: delete it to download it again)") from None
        raise


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


def fetch_fastai(
    name: str,
    out_dir: str | os.PathLike,
    *,
    base_url: str | None = None,
    archive: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    bptt: int = 72,
    max_len: int = 1440,
    limits: ArchiveLimits | None = None,
) -> FastaiFetch:
    """Download fastai's pretrained WikiText-103 AWD-LSTM and convert it into a Hub-ready folder.

    Args:
        name: `"wt103-fwd"` (fastai's `URLs.WT103_FWD`) or `"wt103-bwd"` (`URLs.WT103_BWD`, a backward model).
        out_dir: the folder to write (model, tokenizer, model card); refused if not empty, unless `overwrite`.
        base_url: where the archive is downloaded from (a mirror of fastai's model zoo); default
            `$HF_BPT3C_FASTAI_BASE_URL`, else fastai's `https://s3.amazonaws.com/fast-ai-modelzoo/`.
        archive: a local copy of the `.tgz` archive; nothing is downloaded (exclusive with `base_url`).
        cache_dir: where downloaded archives are kept (default `<HF_HOME>/hf_bpt3c/fastai`). An archive already
            there is used without any request; a download is renamed into place only once complete.
        overwrite, bptt, max_len: as in `convert_fastai`.
        limits: how large the archive may expand (`ArchiveLimits`: total, per member, member count, compression
            ratio); default: the environment variables of `hf_bpt3c.convert.safety`, else 2 GiB, 1 GiB, 256, 100x.

    The archive must be a gzip tar holding exactly one `.pth` and one `.pkl` (in at most one folder); members
    with absolute paths, `..`, links, devices or sparse data, and archives beyond `limits`, are refused before
    anything is extracted (the limits also hold while extracting). The checkpoint is read with
    `torch.load(weights_only=True)` and the vocabulary with a data-only unpickler. Download failures raise
    `hf_bpt3c.convert.download.DownloadError` (a `ValueError` and `OSError`) naming the URL; bad archives `ValueError`.
    The temporary extraction folder is removed on every exit, SIGTERM included.
    """
    spec = _fastai_pretrained(name)
    out_dir = Path(out_dir)
    _check_options(bptt, max_len, spec.backwards)
    limits = (limits or ArchiveLimits()).resolved()
    _check_out_dir(out_dir, overwrite)
    with terminate_cleanly():
        if archive is not None:
            if base_url is not None:
                raise ValueError("pass either archive (a local copy) or base_url (a mirror to download from), not both")
            path, url, origin = _local_archive(archive), None, "local"
        else:
            url = _fastai_base_url(base_url) + spec.filename
            folder = Path(cache_dir) if cache_dir is not None else fastai_cache_dir()
            if folder.exists() and not folder.is_dir():
                raise ValueError(f"cache_dir (--cache-dir) {folder} is a file, not a folder")
            path = folder / spec.filename
            origin = "cache" if cached_download(url, path, hint=_offline_hint(spec)) else "download"
        with tempfile.TemporaryDirectory(prefix="hf_bpt3c-fastai-") as tmp:
            files = _extract_checkpoint(path, Path(tmp), origin, limits)
            try:
                conversion = convert_fastai(
                    files[".pth"],
                    files[".pkl"],
                    out_dir,
                    backwards=spec.backwards,
                    bptt=bptt,
                    max_len=max_len,
                    overwrite=overwrite,
                    card_info=lambda result: _fastai_card_info(name, spec, url == spec.url, result),
                )
            except ValueError as err:
                raise ValueError(f"{err} (extracted from ARCHIVE {path})") from None
    return FastaiFetch(conversion=conversion, archive=path, from_cache=origin == "cache", url=url)


__all__ = [
    "FASTAI_BASE_URL_ENV",
    "FASTAI_MODEL_ZOO_URL",
    "FASTAI_PRETRAINED",
    "FastaiConversion",
    "FastaiFetch",
    "FastaiPretrained",
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
