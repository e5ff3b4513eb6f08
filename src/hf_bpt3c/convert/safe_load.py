"""Reading fastai's files without trusting them: checkpoints, vocabulary pickles, and the shapes of the weights.

- `load_fastai_checkpoint(path)`: `torch.load(weights_only=True)` (no code runs; fastai's optimizer state is
  replaced by an inert stand-in), then a dict of named tensors is required.
- `load_itos(path)`: a vocabulary pickle, read by the core's `safe_pickle` (also what a SentencePiece tokenizer
  reads its vocabulary with), first scanned opcode by opcode (`pickletools.genops`): only data opcodes
  (strings, numbers, lists, tuples, dicts, the memo) and at most `MAX_PICKLE_CONTAINERS` containers, so neither
  code, nor a deep or self-containing structure, nor a list of lists sharing one list (2^n leaves from n objects)
  gets past the scan; the file is bounded in size (`HF_BPT3C_MAX_VOCAB_BYTES`, 64 MiB); then an unpickler that
  refuses every global builds it, and one flat list of strings (or a str -> id dict) is required.
- `check_weights(hf, origin, weights)`: every shape of a converted (hf-keyed) state dict checked against the
  others before a model is built, with errors naming the fastai key and the shape expected.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from ..models.awd_lstm.safe_pickle import load_data_pickle
from .safety import DEFAULT_MAX_VOCAB_BYTES, MAX_VOCAB_BYTES_ENV, env_size, human, parse_size

# Objects fastai stores next to the weights in `learn.save` files (optimizer state: fastcore's `L`, numpy
# scalars, v1's `opt_func` partial). They are replaced by an inert stand-in; only the `model` entry is used.
_OPTIMIZER_STATE_GLOBALS = (
    "fastcore.foundation.L",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.dtype",
    "functools.partial",
    "torch.optim.adam.Adam",
    "torch.optim.adamw.AdamW",
    "torch.optim.sgd.SGD",
)


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------------------


class _DiscardedObject:
    """Inert stand-in for a non-tensor object of fastai's optimizer state: it never calls or keeps anything."""

    def __new__(cls, *args, **kwargs):
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state) -> None:
        pass


def _weights_only_reason(err: Exception) -> str:
    """The reason in torch's long weights_only error message (e.g. 'unsupported GLOBAL posix.system ...')."""
    text = str(err).split("Check the documentation")[0]
    text = text.split("WeightsUnpickler error:")[-1] if "WeightsUnpickler error:" in text else text
    return " ".join(text.split("trusted source.")[-1].split())[:500]


def _regular_file(path: Path, what: str) -> Path:
    """`path` if it is an existing regular file (not a folder, FIFO or device, which could block or never end)."""
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if not path.is_file():
        raise ValueError(f"{what} {path} is not a regular file")
    return path


def load_fastai_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a fastai `.pth`/`.h5` checkpoint with `torch.load(weights_only=True)`.

    Accepts a bare state dict or fastai's `learn.save` dict `{'model': state_dict, 'opt': ...}` (the optimizer
    state is discarded unread). Returns `{key: tensor}`; raises `ValueError` naming the file otherwise.
    """
    path = _regular_file(Path(path), "WEIGHTS file")
    stand_ins = [(_DiscardedObject, name) for name in _OPTIMIZER_STATE_GLOBALS]
    try:
        with torch.serialization.safe_globals(stand_ins):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"WEIGHTS file {path} refused by torch.load(weights_only=True): {_weights_only_reason(err)}"
        ) from None
    except (RuntimeError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError, OSError) as err:
        reason = " ".join(str(err).split())[:300] or type(err).__name__
        raise ValueError(f"WEIGHTS file {path} is not a readable PyTorch checkpoint: {reason}") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not obj:
        raise ValueError(f"WEIGHTS file {path} must hold a state dict or {{'model': state_dict, ...}}")
    bad = [k for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        raise ValueError(f"WEIGHTS file {path}: entries {[str(k)[:80] for k in bad[:5]]} are not named tensors")
    return dict(obj)


# ----------------------------------------------------------------------------------------------------------------
# Vocabulary pickles
# ----------------------------------------------------------------------------------------------------------------


def _itos_from(obj, source: str) -> list[str]:
    """A token list from a loaded vocabulary: `itos` as list/tuple of str, or `stoi` as dict str -> id (ids 0..n-1).
    Checks each entry once (a flat structure): `ValueError` naming `source` and the first bad entry."""
    expected = "a non-empty list of token strings (fastai's itos) or a str->id dict"
    if isinstance(obj, (list, tuple)):
        if not obj:
            raise ValueError(f"{source} is empty; it must hold {expected}")
        for index, token in enumerate(obj):
            if not isinstance(token, str):
                kind = type(token).__name__
                raise ValueError(f"{source}: entry {index} is a {kind}, not a token string; it must hold {expected}")
        return list(obj)
    if isinstance(obj, dict):
        if not obj:
            raise ValueError(f"{source} is empty; it must hold {expected}")
        for token, index in obj.items():
            if not isinstance(token, str) or isinstance(index, bool) or not isinstance(index, int):
                pair = f"{str(token)[:40]!r}: {str(index)[:40]}"
                raise ValueError(f"{source}: entry {pair} is not token -> id; it must hold {expected}")
        if sorted(obj.values()) != list(range(len(obj))):
            raise ValueError(f"{source}: the ids of the str->id dict must be 0..{len(obj) - 1}, each once")
        return sorted(obj, key=obj.__getitem__)
    raise ValueError(f"{source} must hold {expected}, got a {type(obj).__name__}")


def load_itos(path: str | os.PathLike, *, max_bytes: int | str | None = None) -> list[str]:
    """Read a pickled fastai vocabulary (`itos_wt103.pkl`, a language model's `dls.vocab`) without running code.

    Only a list or tuple of str, or a dict str -> id, is accepted; the pickle is scanned first (data opcodes only, a
    few containers) and must be at most `max_bytes` (default `$HF_BPT3C_MAX_VOCAB_BYTES`, else 64 MiB). Anything
    else raises `ValueError` naming the file. Returns the tokens in id order.
    """
    path = _regular_file(Path(path), "vocabulary file")
    limit = (
        parse_size(max_bytes, "max_bytes")
        if max_bytes is not None
        else env_size(MAX_VOCAB_BYTES_ENV, DEFAULT_MAX_VOCAB_BYTES)
    )
    with open(path, "rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise ValueError(
            f"vocabulary file {path} refused: larger than {human(limit)} (raise {MAX_VOCAB_BYTES_ENV} if it is genuine)"
        )
    try:
        obj = load_data_pickle(data)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, UnicodeError) as err:
        raise ValueError(f"vocabulary file {path} refused: {' '.join(str(err).split())[:300]}") from None
    except (RecursionError, MemoryError):
        raise ValueError(f"vocabulary file {path} refused: it is not a flat list of tokens") from None
    return _itos_from(obj, f"vocabulary file {path}")


def vocab_arg(vocab: str | os.PathLike | Sequence[str], name: str) -> list[str]:
    """A vocabulary given as a pickle path or as a token list."""
    if isinstance(vocab, (str, os.PathLike)):
        return load_itos(vocab)
    if isinstance(vocab, Sequence):
        return _itos_from(list(vocab), name)
    raise TypeError(f"{name} must be a path to a pickled itos or a list of tokens, got {type(vocab).__name__}")


# ----------------------------------------------------------------------------------------------------------------
# Shapes of the converted weights
# ----------------------------------------------------------------------------------------------------------------

_LAYER_PARTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
_NORM_PARTS = ("weight", "bias", "running_mean", "running_var")


class _Checker:
    """Shape checks of an hf-keyed state dict; errors name the checkpoint's own (fastai) key."""

    def __init__(self, hf: Mapping[str, torch.Tensor], origin: Mapping[str, str], weights: Path, prefix: str):
        self.hf, self.origin, self.weights, self.prefix = hf, origin, weights, prefix

    def name(self, key: str) -> str:
        """The checkpoint's key of hf `key`, or, for a missing one, the fastai v2 key expected."""
        return repr(self.origin[key] if key in self.origin else fastai_name(key, self.prefix))

    def fail(self, message: str) -> ValueError:
        return ValueError(f"WEIGHTS file {self.weights}: {message}")

    def get(self, key: str, what: str) -> torch.Tensor:
        if key not in self.hf:
            raise self.fail(f"{what} is missing ({self.name(key)})")
        return self.hf[key]

    def shape(self, key: str, expected: tuple[int, ...], what: str) -> torch.Tensor:
        tensor = self.get(key, what)
        if tuple(tensor.shape) != expected:
            raise self.fail(f"{self.name(key)} ({what}) has shape {tuple(tensor.shape)}, expected {expected}")
        return tensor


def fastai_name(key: str, prefix: str = "0.") -> str:
    """The fastai v2 key of hf `key` (the encoder's under `prefix`: `0.` for a language model, `0.module.` for a
    classifier, `` for an encoder)."""
    parts = key.split(".")
    if key == "awd_lstm.embeddings.weight":
        return prefix + "encoder.weight"
    if key.startswith("awd_lstm.layers."):
        layer, name = parts[2], parts[3]
        if name == "weight_hh":
            return f"{prefix}rnns.{layer}.weight_hh_l0_raw"
        return f"{prefix}rnns.{layer}.module.{name}_l0"
    if key == "decoder.bias":
        return "1.decoder.bias"
    if key.startswith("classifier.blocks."):
        block, part = parts[2], "0" if parts[3] == "batch_norm" else "2"
        return f"1.layers.{block}.{part}.{'.'.join(parts[4:])}"
    return key


def check_weights(hf: Mapping[str, torch.Tensor], origin: Mapping[str, str], weights: Path, prefix: str = "0.") -> None:
    """Check a converted state dict before any model is built: floating-point finite tensors; a 2-D embedding;
    LSTM layers 0..n-1, each with its four tensors, layer i's input the size of layer i-1's output, the hidden
    layers of one size and the last layer's output the embedding size; the decoder bias one per token; the head's
    blocks 0..k-1 chained from 3 x embedding size. `ValueError` naming the file, the fastai key and the shape
    expected. origin: hf key -> the checkpoint's key; prefix: the checkpoint's encoder prefix (`fastai_name`), for
    the keys it lacks."""
    check = _Checker(hf, origin, weights, prefix)
    for key, tensor in hf.items():
        if key.endswith("num_batches_tracked"):
            continue
        if not tensor.is_floating_point():
            raise check.fail(f"{check.name(key)} holds {tensor.dtype} values; weights are floating-point numbers")
        if not bool(torch.isfinite(tensor).all()):
            raise check.fail(f"{check.name(key)} holds NaN or infinite values")
    embedding = check.get("awd_lstm.embeddings.weight", "the token embedding")
    if embedding.dim() != 2 or min(embedding.shape) < 1:
        raise check.fail(
            f"{check.name('awd_lstm.embeddings.weight')} (the token embedding) has shape {tuple(embedding.shape)}, "
            "expected (vocab_size, embedding_size)"
        )
    vocab_size, embedding_size = embedding.shape
    layers = sorted({int(key.split(".")[2]) for key in hf if key.startswith("awd_lstm.layers.")})
    if not layers:
        raise check.fail("it holds no LSTM layer (fastai keys '0.rnns.<i>.*')")
    if layers != list(range(len(layers))):
        gap = min(set(range(len(layers))) - set(layers))
        raise check.fail(f"LSTM layer {gap} is missing (layers found: {layers[:10]})")
    n_in, hidden_sizes = embedding_size, []
    for i in layers:
        prefix = f"awd_lstm.layers.{i}."
        hh = check.get(prefix + "weight_hh", f"LSTM layer {i}'s recurrent weight")
        if hh.dim() != 2 or hh.shape[0] != 4 * hh.shape[1] or hh.shape[1] < 1:
            raise check.fail(f"{check.name(prefix + 'weight_hh')} has shape {tuple(hh.shape)}, expected (4*h, h)")
        size = hh.shape[1]
        check.shape(prefix + "weight_ih", (4 * size, n_in), f"LSTM layer {i}'s input weight")
        check.shape(prefix + "bias_ih", (4 * size,), f"LSTM layer {i}'s input bias")
        check.shape(prefix + "bias_hh", (4 * size,), f"LSTM layer {i}'s recurrent bias")
        hidden_sizes.append(size)
        n_in = size
    if hidden_sizes[-1] != embedding_size:
        raise check.fail(
            f"the last LSTM layer outputs {hidden_sizes[-1]} features but the embedding has {embedding_size}: the "
            "AWD-LSTM's last layer has the embedding size"
        )
    if len(set(hidden_sizes[:-1])) > 1:
        raise check.fail(f"the hidden LSTM layers have different sizes {hidden_sizes[:-1]}; AWD-LSTM's share one")
    if "decoder.bias" in hf:
        check.shape("decoder.bias", (vocab_size,), "the decoder bias, one per token")
    _check_head(check, 3 * embedding_size)


def _check_head(check: _Checker, n_in: int) -> None:
    blocks = sorted({int(key.split(".")[2]) for key in check.hf if key.startswith("classifier.blocks.")})
    if blocks != list(range(len(blocks))):
        gap = min(set(range(max(blocks) + 1)) - set(blocks))
        raise check.fail(f"classifier block {gap} is missing (blocks found: {blocks[:10]})")
    for k in blocks:
        prefix = f"classifier.blocks.{k}."
        for part in _NORM_PARTS:
            check.shape(prefix + "batch_norm." + part, (n_in,), f"block {k}'s BatchNorm {part}")
        linear = check.get(prefix + "linear.weight", f"block {k}'s linear weight")
        if linear.dim() != 2 or linear.shape[1] != n_in or linear.shape[0] < 1:
            raise check.fail(
                f"{check.name(prefix + 'linear.weight')} (block {k}'s linear weight) has shape {tuple(linear.shape)}, "
                f"expected (outputs, {n_in})"
            )
        n_in = linear.shape[0]


__all__ = ["check_weights", "load_fastai_checkpoint", "load_itos", "vocab_arg"]
