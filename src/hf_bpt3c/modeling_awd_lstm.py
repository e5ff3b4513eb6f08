"""PyTorch AWD-LSTM (ULMFiT): the encoder, its causal language model, and the BPT3C document classifier.

Reading guide:
- the regularisers are small functions (`locked_dropout`, `embed_with_dropout`, and for DropConnect `keep_mask` +
  `drop_connect`, drawn by `AwdLstmLayer.recurrent_mask`); none of them keeps a derived tensor on the module, so
  `copy.deepcopy` and `state_dict` are plain;
- `AwdLstmModel` embeds and runs the stacked layers, with or without padding (`attention_mask`);
- `AwdLstmForCausalLM` adds the tied decoder and the recurrent `state` that generation carries;
- `AwdLstmForSequenceClassification` implements BPT3C in `encode_documents`: each document is read in `bptt`-token
  chunks counted from its own first token, the state is carried and detached at every boundary, chunks before the
  last `max_len` tokens run without autograd, and the kept chunks are concat-pooled chunk by chunk.

State layout: a tuple with one `(h, c)` pair per layer, each of shape `(batch, layer_output_size)`.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import json
import math
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from .configuration_awd_lstm import AwdLstmConfig
from .hardware import (
    AUTOCAST_SOURCE,
    COMPUTE_DTYPE_SOURCE,
    bf16_is_native,
    cpu_bf16_allowed,
    float32_where_bf16_is_emulated,
)

LstmState = tuple[tuple[torch.Tensor, torch.Tensor], ...]

# In inference (no autograd, no dropout) chunk boundaries change nothing, so documents are read in longer
# chunks: fewer recurrent calls, larger input-projection matmuls, memory still bounded by the chunk.
INFERENCE_CHUNK_TOKENS = 1024


# ----------------------------------------------------------------------------------------------------------------
# Regularisers (AWD-LSTM, Merity et al. 2017), each a function of its input and a probability.
# ----------------------------------------------------------------------------------------------------------------


def locked_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Variational dropout: one mask per sequence and feature, shared by all time steps.

    x: `(batch, seq, features)` -> same shape, scaled by `1/(1-p)` where kept.
    """
    if not training or p == 0.0:
        return x
    mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1 - p).div_(1 - p)  # (batch, 1, features)
    return x * mask


def keep_mask(like: torch.Tensor, p: float) -> torch.Tensor:
    """A bool tensor shaped like `like`, each entry True with probability `1 - p` (p resolved to 1/65536).

    Three 16-bit uniform words come out of each 64-bit `random_()` draw (its top bit is always 0, so the top word
    is skipped): on CPU about 5x cheaper than `bernoulli_`, which draws once per element. DropConnect draws a
    mask of every recurrent weight for every chunk.
    """
    n = like.numel()
    draws = torch.empty((n + 2) // 3, dtype=torch.int64, device=like.device).random_()  # (n/3,) in [0, 2**63)
    low_words = slice(0, 3) if sys.byteorder == "little" else slice(1, 4)
    words = draws.view(torch.int16).view(-1, 4)[:, low_words].reshape(-1)[:n]  # (n,) uniform over int16
    return (words >= round(p * 65536) - 32768).view(like.shape)


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """A bool tensor as uint8 `(ceil(n/8),)`, eight entries per byte (entry 8k+j is bit j of byte k)."""
    flat = mask.reshape(-1)
    if flat.numel() % 8:
        flat = torch.cat([flat, flat.new_zeros(8 - flat.numel() % 8)])
    shifts = torch.arange(8, dtype=torch.uint8, device=mask.device)
    return (flat.view(-1, 8).view(torch.uint8) << shifts).sum(1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The bool tensor of `shape` that `pack_bits` packed."""
    shifts = torch.arange(8, dtype=torch.uint8, device=packed.device)
    bits = (packed.unsqueeze(1) >> shifts) & 1  # (ceil(n/8), 8) of 0/1
    return bits.view(torch.bool).reshape(-1)[: math.prod(shape)].view(shape)


def drop_connect(weight: torch.Tensor, keep: torch.Tensor | None, p: float) -> torch.Tensor:
    """`weight` zeroed where `keep` is False and the rest scaled by 1/(1-p); `weight` itself if `keep` is None."""
    if keep is None:
        return weight
    return torch.mul(weight, keep).mul_(1.0 / (1.0 - p))


def embed_with_dropout(
    input_ids: torch.Tensor, weight: torch.Tensor, p: float, training: bool, padding_idx: int | None
) -> torch.Tensor:
    """Embedding lookup that drops whole vocabulary rows (a word is dropped everywhere in the call).

    input_ids: `(batch, seq)` -> `(batch, seq, embedding_size)`. Equivalent to fastai's `EmbeddingDropout`
    (mask the weight's rows, then look up) but masks only the looked-up rows.
    """
    embeds = F.embedding(input_ids, weight, padding_idx)
    if not training or p == 0.0:
        return embeds
    row_mask = weight.new_empty(weight.size(0), 1).bernoulli_(1 - p).div_(1 - p)  # (vocab, 1)
    return embeds * F.embedding(input_ids, row_mask)  # (batch, seq, 1) broadcast


# ----------------------------------------------------------------------------------------------------------------
# Fused LSTM for bfloat16 compute on CPU: matrix products in bfloat16, gate arithmetic and state in float32.
# oneDNN's bfloat16 LSTM (what autocast runs) has a slow backward; this one's time loop computes only the
# recurrent term, and the input and weight gradients are single large matrix products after the loop.
# ----------------------------------------------------------------------------------------------------------------


def _cast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return x if x.dtype == dtype else x.to(dtype)


_FUSED_PARAM_DTYPES = (torch.float32, torch.float64)


def _lstm_compute_dtype(x: torch.Tensor, requested: torch.dtype | None) -> torch.dtype | None:
    """The dtype of the LSTM's matrix products: `requested`, else bfloat16 under a bfloat16 autocast (CPU or CUDA).

    The LSTM is then run on inputs cast to that dtype with autocast off: under a CUDA autocast PyTorch's wrapper
    of cuDNN's LSTM casts to float16 whatever dtype the autocast asks for. On a CPU without native bfloat16 a
    bfloat16 request becomes x's own dtype (a warning once; `hardware.cpu_bf16_allowed`)."""
    device = x.device.type
    source = COMPUTE_DTYPE_SOURCE
    if requested is None and device in ("cpu", "cuda") and torch.is_autocast_enabled(device):
        requested = torch.bfloat16 if torch.get_autocast_dtype(device) == torch.bfloat16 else None
        source = AUTOCAST_SOURCE
    if requested == torch.bfloat16 and device == "cpu" and not cpu_bf16_allowed(source):
        return x.dtype if x.dtype in _FUSED_PARAM_DTYPES else torch.float32
    return requested


def _use_fused(x: torch.Tensor, h0: torch.Tensor, weights: list[torch.Tensor]) -> bool:
    """The fused LSTM serves CPU training in a reduced compute dtype; without autograd oneDNN's bfloat16 LSTM
    (one call per chunk, what autocast runs) is faster."""
    if x.device.type != "cpu" or weights[0].dtype not in _FUSED_PARAM_DTYPES:
        return False
    return torch.is_grad_enabled() and any(t.requires_grad for t in (x, h0, *weights))


_CUDNN_WEIGHT_COPY_WARNING = "RNN module weights are not part of single contiguous chunk of memory"


def _run_lstm(
    lstm: Callable,
    x: torch.Tensor,
    h0: torch.Tensor,
    c0: torch.Tensor,
    weights: list[torch.Tensor],
    compute_dtype: torch.dtype | None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """`lstm(x, (h0, c0) with a layer dim, weights)` (a `torch.lstm` call) with x, state and weights cast to
    `compute_dtype` and autocast off, so that cuDNN/oneDNN run in that dtype (None: as they are, in the caller's
    context, e.g. a float16 CUDA autocast). Returns the output and `(h, c)` in the dtypes they came in.

    On CUDA, cuDNN copies the weights into its flat buffer and warns about it: DropConnect makes a new recurrent
    weight every call, so the copy is expected (fastai silences the same warning)."""
    tensors = [x, h0, c0, *weights]
    x_in, h_in, c_in, *weights_in = tensors if compute_dtype is None else [_cast(t, compute_dtype) for t in tensors]
    with contextlib.ExitStack() as stack:
        if compute_dtype is not None:
            stack.enter_context(torch.autocast(x.device.type, enabled=False))
        if x.device.type == "cuda":
            stack.enter_context(warnings.catch_warnings())
            warnings.filterwarnings("ignore", message=_CUDNN_WEIGHT_COPY_WARNING)
        out, h, c = lstm(x_in, (h_in.unsqueeze(0), c_in.unsqueeze(0)), weights_in)
    return _cast(out, x.dtype), (_cast(h[0], h0.dtype), _cast(c[0], c0.dtype))


def _views_of_one_block(device: torch.device, *specs: tuple[tuple[int, ...], torch.dtype]) -> list[torch.Tensor]:
    """Empty tensors of the given (shape, dtype), all views into one allocation. What a chunk keeps for the backward
    then comes and goes as one large block, which the C allocator returns to the OS when freed; several mid-sized
    tensors fragment its heap (about 400 MB more peak RSS over the speed benchmark's IMDb batches, ULMFiT sizes)."""
    nbytes = [math.prod(shape) * dtype.itemsize for shape, dtype in specs]
    starts = [0]
    for n in nbytes:
        starts.append(starts[-1] + -(-n // 64) * 64)  # each view 64-byte aligned
    block = torch.empty(starts[-1], dtype=torch.uint8, device=device)
    return [block[a : a + n].view(dtype).view(shape) for (shape, dtype), a, n in zip(specs, starts, nbytes)]


class _FusedLstm(torch.autograd.Function):
    """One LSTM layer over a whole chunk (gate order i, f, g, o), products in `compute_dtype`.

    Inputs: x `(batch, seq, input)`, h0 and c0 `(batch, hidden)`, weight_ih `(4*hidden, input)`, weight_hh
    `(4*hidden, hidden)`, bias `(4*hidden,)` (= bias_ih + bias_hh), keep: DropConnect's bool mask of weight_hh
    (or None), p: its drop probability, compute_dtype. Gates, state and outputs are in the state dtype: float64
    when x is float64 (tests), else float32.
    Returns output `(batch, seq, hidden)`, h and c `(batch, hidden)`.

    The dropped recurrent weight is made here from `weight_hh` and `keep`, and made again in the backward rather
    than saved: a chunk's saved tensors hold the mask packed eight weights per byte, not a copy of the weight.
    """

    @staticmethod
    def forward(ctx, x, h0, c0, weight_ih, weight_hh, bias, keep, p, compute_dtype):
        batch, seq, n_in = x.shape
        hidden = weight_hh.size(1)
        state_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        # kept for the backward: inputs, activated gates and previous h in the compute dtype, c as it is
        x_tm, saved_gates, cs, h_prev = _views_of_one_block(
            x.device,
            ((seq * batch, n_in), compute_dtype),  # inputs, time-major
            ((seq, batch, 4 * hidden), compute_dtype),
            ((seq + 1, batch, hidden), state_dtype),  # c_0 .. c_seq
            ((seq, batch, hidden), compute_dtype),  # h_0 .. h_seq-1
        )
        x_tm.view(seq, batch, n_in).copy_(x.transpose(0, 1))
        w_ih = _cast(weight_ih, compute_dtype)
        w_hh_t = _cast(drop_connect(weight_hh, keep, p), compute_dtype).t()
        gates = _cast(torch.mm(x_tm, w_ih.t()), state_dtype).add_(bias).view(seq, batch, 4 * hidden)
        hs = gates.new_empty(seq + 1, batch, hidden)  # h_0 .. h_seq
        cs[0], hs[0] = c0, h0
        for t in range(seq):
            g = gates[t]  # becomes the activated gates, kept for the backward
            g += torch.mm(_cast(hs[t], compute_dtype), w_hh_t)
            torch.sigmoid(g[:, : 2 * hidden], out=g[:, : 2 * hidden])
            torch.tanh(g[:, 2 * hidden : 3 * hidden], out=g[:, 2 * hidden : 3 * hidden])
            torch.sigmoid(g[:, 3 * hidden :], out=g[:, 3 * hidden :])
            i, f, g_, o = g.chunk(4, 1)
            torch.addcmul(f * cs[t], i, g_, out=cs[t + 1])
            torch.mul(o, torch.tanh(cs[t + 1]), out=hs[t + 1])
        saved_gates.copy_(gates)
        h_prev.copy_(hs[:-1])
        keep_bits = None if keep is None else pack_bits(keep)
        ctx.save_for_backward(x_tm, weight_ih, weight_hh, keep_bits, saved_gates, cs, h_prev)
        ctx.p = p
        return hs[1:].transpose(0, 1), hs[seq].clone(), cs[seq].clone()

    @staticmethod
    def backward(ctx, d_out, d_h, d_c):
        x_tm, weight_ih, weight_hh, keep_bits, gates, cs, h_prev = ctx.saved_tensors
        keep = None if keep_bits is None else unpack_bits(keep_bits, weight_hh.shape)
        seq, batch, hidden = h_prev.shape
        gates, w_ih = _cast(gates, cs.dtype), _cast(weight_ih, x_tm.dtype)
        w_hh = _cast(drop_connect(weight_hh, keep, ctx.p), x_tm.dtype)  # (4*hidden, hidden), as in the forward
        i, f, g, o = gates.chunk(4, 2)  # activated, each (seq, batch, hidden)
        tanh_c = torch.tanh(cs[1:])
        dc_from_dh = o * (1 - tanh_c * tanh_c)
        # d(pre-activation of i, f, g) = dc * these;  d(pre-activation of o) = dh * d_o_factor
        dc_factors = torch.stack([g * i * (1 - i), cs[:-1] * f * (1 - f), i * (1 - g * g)], dim=2)
        d_o_factor = tanh_c * o * (1 - o)
        d_out = _cast(d_out, gates.dtype).transpose(0, 1)  # (seq, batch, hidden)
        d_gates = gates.new_empty(seq, batch, 4 * hidden)
        d_h = gates.new_zeros(batch, hidden) if d_h is None else _cast(d_h, gates.dtype)
        d_c = gates.new_zeros(batch, hidden) if d_c is None else _cast(d_c, gates.dtype)
        for t in range(seq - 1, -1, -1):  # only the recurrent term is sequential
            d_h = d_h + d_out[t]
            d_c = torch.addcmul(d_c, d_h, dc_from_dh[t])
            torch.mul(dc_factors[t], d_c.unsqueeze(1), out=d_gates[t, :, : 3 * hidden].view(batch, 3, hidden))
            torch.mul(d_o_factor[t], d_h, out=d_gates[t, :, 3 * hidden :])
            d_c = d_c * f[t]
            d_h = _cast(torch.mm(_cast(d_gates[t], w_hh.dtype), w_hh), gates.dtype)
        d_flat = d_gates.view(seq * batch, 4 * hidden)
        d_flat_c = _cast(d_flat, x_tm.dtype)
        d_x = d_w_ih = d_w_hh = None
        if ctx.needs_input_grad[0]:
            d_x = _cast(torch.mm(d_flat_c, w_ih), gates.dtype).view(seq, batch, -1).transpose(0, 1)
        if ctx.needs_input_grad[3]:
            d_w_ih = _cast(torch.mm(d_flat_c.t(), x_tm), gates.dtype)
        if ctx.needs_input_grad[4]:
            h_prev = h_prev.reshape(seq * batch, hidden)
            d_w_hh = drop_connect(_cast(torch.mm(d_flat_c.t(), h_prev), gates.dtype), keep, ctx.p)
        d_bias = d_flat.sum(0) if ctx.needs_input_grad[5] else None
        return d_x, d_h, d_c, d_w_ih, d_w_hh, d_bias, None, None, None


def _float32_where_bf16_is_emulated(forward: Callable) -> Callable:
    """Run a model's `forward` with a CPU bfloat16 autocast turned off (a warning once) where the CPU has no native
    bfloat16: every matrix product, the decoder's and the head's too, then runs in float32
    (`hardware.float32_where_bf16_is_emulated`)."""

    @functools.wraps(forward)
    def run(self, *args, **kwargs):
        with float32_where_bf16_is_emulated(self.device):
            return forward(self, *args, **kwargs)

    return run


# ----------------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class AwdLstmOutput(ModelOutput):
    """Output of [`AwdLstmModel`].

    Args:
        last_hidden_state: `(batch, seq, embedding_size)` output of the last LSTM layer (zero at padding).
        state: per layer `(h, c)`, each `(batch, layer_size)`: the state after each row's last real token.
            Pass it back as `state=` to continue the stream. Returned when `use_cache` is on.
        hidden_states: the output of every layer, each `(batch, seq, layer_size)`, before inter-layer dropout.
    """

    last_hidden_state: torch.Tensor | None = None
    state: LstmState | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclass
class AwdLstmCausalLMOutput(ModelOutput):
    """Output of [`AwdLstmForCausalLM`].

    Args:
        loss: next-token cross-entropy when `labels` are given.
        logits: `(batch, seq, vocab_size)`.
        state: as in [`AwdLstmOutput`].
        hidden_states: as in [`AwdLstmOutput`].
        last_hidden_state: `(batch, seq, embedding_size)`, the raw last-layer output (fastai's TAR input).
        dropped_hidden_state: the same after output dropout, what the decoder saw (fastai's AR input).
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    state: LstmState | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    last_hidden_state: torch.Tensor | None = None
    dropped_hidden_state: torch.Tensor | None = None


# ----------------------------------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------------------------------


class AwdLstmLayer(nn.Module):
    """One LSTM layer with DropConnect on its hidden-to-hidden weight.

    The parameters are those of a one-layer `nn.LSTM` (gate order i, f, g, o). The dropped recurrent weight is
    computed inside the forward and handed to `torch.lstm`; nothing derived is stored on the module.
    """

    def __init__(self, input_size: int, hidden_size: int, weight_dropout: float):
        super().__init__()
        self.input_size, self.hidden_size, self.weight_dropout = input_size, hidden_size, weight_dropout
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size))

    def recurrent_mask(self) -> torch.Tensor | None:
        """A fresh DropConnect draw: bool `(4*hidden, hidden)`, True where `weight_hh` is kept (training), or None
        (eval, or `weight_dropout` 0). `keep_mask` draws it: p is resolved to 1/65536."""
        if not self.training or self.weight_dropout == 0.0:
            return None
        return keep_mask(self.weight_hh, self.weight_dropout)

    def recurrent_weight(self, keep: torch.Tensor | None = None) -> torch.Tensor:
        """The hidden-to-hidden weight under DropConnect mask `keep` (default: a fresh `recurrent_mask()`):
        `F.dropout(weight_hh, p)`'s values (zeroed where dropped, kept ones scaled by 1/(1-p)). Autograd keeps the
        bool mask (1 byte per weight, not a 4-byte float one): BPT3C keeps one per layer for every kept chunk."""
        keep = self.recurrent_mask() if keep is None else keep
        return drop_connect(self.weight_hh, keep, self.weight_dropout)

    def weights(self, keep: torch.Tensor | None = None) -> list[torch.Tensor]:
        return [self.weight_ih, self.recurrent_weight(keep), self.bias_ih, self.bias_hh]

    def forward(
        self,
        x: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor],
        keep: torch.Tensor | None = None,
        compute_dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x: `(batch, seq, input_size)`, state `(h, c)` each `(batch, hidden_size)`.

        Returns the output `(batch, seq, hidden_size)` and the final `(h, c)`. `keep` (a `recurrent_mask()`) lets
        a caller draw the masks of several layers up front (`AwdLstmModel.recurrent_masks`); by default each
        call draws its own. `compute_dtype=torch.bfloat16` (or a bfloat16 autocast, CPU or CUDA) runs the matrix
        products in bfloat16 (see `AwdLstmConfig.compute_dtype`).
        """
        h0, c0 = state
        keep = self.recurrent_mask() if keep is None else keep
        compute_dtype = _lstm_compute_dtype(x, compute_dtype)
        if compute_dtype == torch.bfloat16 and _use_fused(x, h0, list(self.parameters())):
            with torch.autocast("cpu", enabled=False):
                return self._forward_fused(x, h0, c0, keep, compute_dtype)

        def lstm(x, hx, weights):
            return torch.lstm(x, hx, weights, True, 1, 0.0, self.training, False, True)

        return _run_lstm(lstm, x, h0, c0, self.weights(keep), compute_dtype)

    def _forward_fused(
        self, x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor, keep: torch.Tensor | None, compute_dtype: torch.dtype
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        state_dtype = self.weight_ih.dtype
        out, h, c = _FusedLstm.apply(
            _cast(x, state_dtype), _cast(h0, state_dtype), _cast(c0, state_dtype), self.weight_ih, self.weight_hh,
            self.bias_ih + self.bias_hh, keep, self.weight_dropout, compute_dtype,
        )  # fmt: skip
        return out, (h, c)

    def forward_packed(
        self,
        data: torch.Tensor,
        batch_sizes: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor],
        keep: torch.Tensor | None = None,
        compute_dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The same on a packed sequence: `data` `(total_tokens, input_size)` in `PackedSequence` order
        (`compute_dtype`: the LSTM runs in that dtype)."""
        h0, c0 = state

        def lstm(data, hx, weights):
            return torch.lstm(data, batch_sizes, hx, weights, True, 1, 0.0, self.training, False)

        return _run_lstm(lstm, data, h0, c0, self.weights(keep), _lstm_compute_dtype(data, compute_dtype))

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, weight_dropout={self.weight_dropout}"


class AwdLstmHeadBlock(nn.Module):
    """fastai's `LinBnDrop`: BatchNorm1d -> Dropout -> Linear (no bias, BatchNorm precedes it) -> optional ReLU."""

    def __init__(self, in_features: int, out_features: int, dropout: float, relu: bool):
        super().__init__()
        self.batch_norm = nn.BatchNorm1d(in_features)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_features, out_features, bias=False)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: `(batch, in_features)` -> `(batch, out_features)`."""
        x = self.linear(self.dropout(self.batch_norm(x)))
        return F.relu(x) if self.relu else x


class AwdLstmClassificationHead(nn.Module):
    """fastai's `PoolingLinearClassifier` after the pooling: blocks `[3*emb] + classifier_hidden_sizes + [labels]`."""

    def __init__(self, config: AwdLstmConfig):
        super().__init__()
        sizes = [3 * config.embedding_size, *config.classifier_hidden_sizes, config.num_labels]
        dropouts = [config.output_dropout, *config.classifier_dropouts]
        n_blocks = len(sizes) - 1
        self.blocks = nn.ModuleList(
            AwdLstmHeadBlock(sizes[k], sizes[k + 1], dropouts[k], relu=k < n_blocks - 1) for k in range(n_blocks)
        )

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """pooled: `(batch, 3*embedding_size)` -> logits `(batch, num_labels)`."""
        for block in self.blocks:
            pooled = block(pooled)
        return pooled


# ----------------------------------------------------------------------------------------------------------------
# Input checks shared by the heads
# ----------------------------------------------------------------------------------------------------------------


def _check_input_ids(input_ids: torch.Tensor, vocab_size: int) -> None:
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"input_ids must be a torch.LongTensor of shape (batch, seq), got {type(input_ids).__name__}")
    if input_ids.is_floating_point() or input_ids.is_complex() or input_ids.dtype == torch.bool:
        raise TypeError(f"input_ids must hold integer token ids (torch.long), got dtype {input_ids.dtype}")
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must have shape (batch, seq), got {tuple(input_ids.shape)}")
    if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= vocab_size):
        raise ValueError(
            f"input_ids must lie in [0, vocab_size={vocab_size}), got values in "
            f"[{int(input_ids.min())}, {int(input_ids.max())}]"
        )


def _check_embeds(inputs_embeds: torch.Tensor, embedding_size: int) -> None:
    if not isinstance(inputs_embeds, torch.Tensor) or not inputs_embeds.is_floating_point():
        raise TypeError("inputs_embeds must be a floating-point tensor of shape (batch, seq, embedding_size)")
    if inputs_embeds.dim() != 3 or inputs_embeds.size(-1) != embedding_size:
        raise ValueError(
            f"inputs_embeds must have shape (batch, seq, {embedding_size}), got {tuple(inputs_embeds.shape)}"
        )


def _content_mask(attention_mask: torch.Tensor, batch: int, seq: int, allow_longer: bool = False) -> torch.Tensor:
    """Validate `attention_mask` and return it as bool `(batch, seq)`; each row's ones must be contiguous.

    With `allow_longer` a mask longer than the input is accepted and its last `seq` columns are used (generation
    passes the mask of the whole text while feeding only the new tokens).
    """
    if not isinstance(attention_mask, torch.Tensor):
        raise TypeError(f"attention_mask must be a tensor of shape ({batch}, {seq}), got {type(attention_mask)}")
    shape_ok = attention_mask.dim() == 2 and attention_mask.size(0) == batch
    shape_ok = shape_ok and (attention_mask.size(1) == seq or (allow_longer and attention_mask.size(1) > seq))
    if not shape_ok:
        raise ValueError(f"attention_mask must have shape ({batch}, {seq}), got {tuple(attention_mask.shape)}")
    mask = attention_mask[:, attention_mask.size(1) - seq :]
    if not ((mask == 0) | (mask == 1)).all():
        raise ValueError("attention_mask must contain only 0 (padding) and 1 (token)")
    mask = mask.bool()
    holes = _rows_with_holes(mask)
    if holes.any():
        row = int(holes.nonzero()[0, 0])
        raise ValueError(
            f"attention_mask row {row} has padding between tokens; each row's tokens must be contiguous "
            "(left or right padding only)"
        )
    return mask


def _rows_with_holes(mask: torch.Tensor) -> torch.Tensor:
    """bool `(batch,)`: rows whose tokens are not contiguous, i.e. with more than two 0/1 switches along the row
    (the borders counting as 0). mask: bool `(batch, seq)`."""
    return F.pad(mask.to(torch.int8), (1, 1)).diff(dim=1).abs().sum(dim=1) > 2


def _justify_order(mask: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """`(batch, seq)` gather index that puts each row's real tokens first, in order (or reversed, for a backward
    model), padding after them. mask: bool `(batch, seq)`."""
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # real positions first
    if reverse:
        lengths = mask.sum(dim=1, keepdim=True)  # (batch, 1)
        k = torch.arange(mask.size(1), device=mask.device).unsqueeze(0)
        order = order.gather(1, torch.where(k < lengths, lengths - 1 - k, k))
    return order


def _left_justify(tokens: torch.Tensor, mask: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """Move each row's real tokens to the front, keeping their order (or reversing it, for a backward model).
    tokens: `(batch, seq[, feat])`, mask: bool `(batch, seq)`."""
    if not reverse and bool(mask.all()):
        return tokens  # nothing to move (saves an O(batch*seq) sort on long unpadded documents)
    order = _justify_order(mask, reverse)
    if tokens.dim() == 3:
        order = order.unsqueeze(-1).expand(-1, -1, tokens.size(-1))
    return tokens.gather(1, order)


def _shift_right(tokens: torch.Tensor, shift: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Left-justified `tokens` `(batch, seq[, feat])` with row r moved right by `shift[r]` positions:
    `(batch, max(shift + lengths)[, feat])`. Positions outside a row's tokens hold id 0 (zero embeddings)."""
    if not bool(shift.any()):
        return tokens
    width = int((shift + lengths).max())
    source = torch.arange(width, device=tokens.device) - shift.unsqueeze(1)  # (batch, width)
    inside = (source >= 0) & (source < lengths.unsqueeze(1))
    source = source.clamp(0, tokens.size(1) - 1)
    if tokens.dim() == 3:
        moved = tokens.gather(1, source.unsqueeze(-1).expand(-1, -1, tokens.size(-1)))
        return moved * inside.unsqueeze(-1).to(moved.dtype)
    return tokens.gather(1, source).masked_fill(~inside, 0)


def _move_files_into(staging: Path, target: Path) -> None:
    """Move every file of `staging` into `target` with atomic renames, then drop weight files of an earlier save
    that the new one does not have (e.g. old shards)."""
    target.mkdir(parents=True, exist_ok=True)
    new_files = {path.name for path in staging.iterdir()}
    for name in sorted(new_files):
        os.replace(staging / name, target / name)
    for old in target.glob("model*.safetensors*"):
        if old.name not in new_files:
            old.unlink()


def _tokenizer_vocab_size(path: Path) -> int | None:
    """Largest id + 1 of a saved `tokenizer.json` (vocabulary and added tokens), or None if there is none."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    vocab = (data.get("model") or {}).get("vocab") or {}
    ids = list(vocab.values()) if isinstance(vocab, dict) else list(range(len(vocab)))
    ids += [token["id"] for token in data.get("added_tokens") or []]
    return max(ids) + 1 if ids else None


# ----------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------


class AwdLstmPreTrainedModel(PreTrainedModel):
    """Weight initialisation (fastai's) and the settings shared by every AWD-LSTM head."""

    config_class = AwdLstmConfig
    config: AwdLstmConfig
    base_model_prefix = "awd_lstm"
    main_input_name = "input_ids"
    _no_split_modules = ["AwdLstmLayer"]
    _is_stateful = True
    supports_gradient_checkpointing = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """fastai: embedding U(-0.1, 0.1) (pad row included), LSTM weights U(-1/sqrt(h), 1/sqrt(h)) as PyTorch,
        decoder bias 0, head Linear as PyTorch's default, BatchNorm (1, 0)."""
        if isinstance(module, nn.Embedding):
            init.uniform_(module.weight, -self.config.initializer_range, self.config.initializer_range)
        elif isinstance(module, AwdLstmLayer):
            bound = 1.0 / math.sqrt(module.hidden_size)
            for weight in (module.weight_ih, module.weight_hh, module.bias_ih, module.bias_hh):
                init.uniform_(weight, -bound, bound)
        elif isinstance(module, nn.Linear):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm1d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # the recurrent state travels as `state`, not as a key/value cache

    def save_pretrained(self, save_directory, *args, **kwargs):
        """transformers' `save_pretrained`, made safe to interrupt, plus a model card when hf_bpt3c is installed.

        Everything is first written to a hidden staging folder next to `save_directory`, then each file is moved
        into place with an atomic rename: a save killed at any moment leaves every file either as it was or
        complete. The card is written from the config and `self.model_card_info` (datasets, eval results,
        training recipe) and never replaces a README.md that hf_bpt3c did not write.
        """
        if not kwargs.get("is_main_process", True):
            return super().save_pretrained(save_directory, *args, **kwargs)
        target = Path(save_directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.saving-", dir=target.parent))
        try:
            result = super().save_pretrained(staging, *args, **kwargs)
            _move_files_into(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        try:  # the card templates ship with the package, not with the remote code
            from hf_bpt3c.model_card import write_model_card
        except ImportError:
            return result
        write_model_card(target, self)
        return result

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """transformers' `from_pretrained`, with load errors that name the file and what is wrong with it: a
        truncated or corrupted `model.safetensors`, and a tokenizer in the same folder whose ids do not fit the
        model's embedding."""
        from safetensors import SafetensorError

        try:
            model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except SafetensorError as error:
            raise OSError(
                f"the weights file in {pretrained_model_name_or_path} (model.safetensors) is truncated or "
                f"corrupted: {error}. Save the model again or download it again."
            ) from error
        tokenizer_size = _tokenizer_vocab_size(Path(str(pretrained_model_name_or_path)) / "tokenizer.json")
        if tokenizer_size is not None and tokenizer_size > model.config.vocab_size:
            raise ValueError(
                f"{pretrained_model_name_or_path}: tokenizer.json has ids up to {tokenizer_size - 1} but the model's "
                f"embedding (config.json vocab_size) has only {model.config.vocab_size} rows; the tokenizer and the "
                "weights do not belong together"
            )
        return model

    def push_to_hub(self, repo_id: str, **kwargs):
        """transformers' `push_to_hub`, then hf_bpt3c's model card unless the repository has a card of its own."""
        result = super().push_to_hub(repo_id, **kwargs)
        try:
            from hf_bpt3c.model_card import push_model_card
        except ImportError:
            return result
        push_model_card(repo_id, self, token=kwargs.get("token"), revision=kwargs.get("revision"))
        return result


class AwdLstmModel(AwdLstmPreTrainedModel):
    """The AWD-LSTM encoder: embedding (with whole-word dropout) -> stacked LSTMs with DropConnect and
    variational dropout between layers. Returns the last layer's output and the recurrent state."""

    _keys_to_ignore_on_load_unexpected = [r"decoder\.", r"classifier\."]

    def __init__(self, config: AwdLstmConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.layers = nn.ModuleList(
            AwdLstmLayer(n_in, n_out, config.weight_dropout) for n_in, n_out in config.layer_sizes
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings = value

    # -- building blocks, also used chunk by chunk by the BPT3C classifier -------------------------------------

    def initial_state(self, batch_size: int, like: torch.Tensor) -> LstmState:
        """Zero `(h, c)` per layer, each `(batch_size, layer_size)`, with `like`'s device and dtype."""
        return tuple(
            (like.new_zeros(batch_size, layer.hidden_size), like.new_zeros(batch_size, layer.hidden_size))
            for layer in self.layers
        )

    def embed(self, input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """`(batch, seq)` ids or `(batch, seq, emb)` embeddings -> `(batch, seq, emb)` with embedding dropout
        (ids only, as fastai's `from_embeds`) and input dropout."""
        if inputs_embeds is None:
            inputs_embeds = embed_with_dropout(
                input_ids,
                self.embeddings.weight,
                self.config.embedding_dropout,
                self.training,
                self.embeddings.padding_idx,
            )
        return locked_dropout(inputs_embeds, self.config.input_dropout, self.training)

    def lstm_compute_dtype(self) -> torch.dtype | None:
        """`torch.bfloat16` when `config.compute_dtype` asks for bfloat16 LSTM products (`"bfloat16"`, or `"auto"`
        where this device multiplies bfloat16 natively), else None (as the weights)."""
        requested = self.config.compute_dtype
        if requested == "bfloat16" or (requested == "auto" and bf16_is_native(self.device)):
            return torch.bfloat16
        return None

    def recurrent_masks(self) -> list[torch.Tensor | None]:
        """One DropConnect draw for every layer (`AwdLstmLayer.recurrent_mask`; None entries in eval)."""
        return [layer.recurrent_mask() for layer in self.layers]

    def run_layers(self, x: torch.Tensor, state: LstmState) -> tuple[torch.Tensor, LstmState, tuple[torch.Tensor, ...]]:
        """Run the stacked layers on unpadded input (one DropConnect draw per layer for the call).

        x: `(batch, seq, emb)` -> output `(batch, seq, emb)`, new state, and every layer's output.
        """
        keep_masks = self.recurrent_masks()
        compute_dtype = self.lstm_compute_dtype()
        new_state, layer_outputs = [], []
        for i, layer in enumerate(self.layers):
            x, layer_state = layer(x, state[i], keep_masks[i], compute_dtype)
            new_state.append(layer_state)
            layer_outputs.append(x)
            if i < len(self.layers) - 1:
                x = locked_dropout(x, self.config.hidden_dropout, self.training)
        return x, tuple(new_state), tuple(layer_outputs)

    def run_layers_masked(
        self, x: torch.Tensor, mask: torch.Tensor, state: LstmState
    ) -> tuple[torch.Tensor, LstmState, tuple[torch.Tensor, ...]]:
        """Run the layers on padded input, skipping padding (left or right), each row exactly as if alone.

        x: `(batch, seq, emb)`, mask: bool `(batch, seq)`. Outputs are zero at padding; each row's state is the
        one after its last real token (unchanged for a row with no token).
        """
        batch, seq, _ = x.shape
        lengths = mask.sum(dim=1)  # (batch,)
        rows = lengths.nonzero().squeeze(1)  # rows with at least one token
        if rows.numel() == 0:
            zeros = x.new_zeros(batch, seq, self.config.embedding_size)
            return zeros, state, tuple(x.new_zeros(batch, seq, layer.hidden_size) for layer in self.layers)
        order = _justify_order(mask)  # (batch, seq), computed once for packing and for every layer's unpacking
        justified = x.gather(1, order.unsqueeze(-1).expand_as(x))
        packed = nn.utils.rnn.pack_padded_sequence(
            justified[rows], lengths[rows].cpu(), batch_first=True, enforce_sorted=False
        )
        data, batch_sizes = packed.data, packed.batch_sizes
        # the (sorted) row of every packed element: time step t holds rows 0..batch_sizes[t]-1
        steps = batch_sizes.to(x.device)
        element_rows = torch.arange(int(steps.sum()), device=x.device) - torch.repeat_interleave(
            steps.cumsum(0) - steps, steps
        )
        to_sorted, to_original = packed.sorted_indices, packed.unsorted_indices
        keep_masks = self.recurrent_masks()
        compute_dtype = self.lstm_compute_dtype()
        new_state, layer_outputs = [], []
        for i, layer in enumerate(self.layers):
            h0, c0 = (s[rows][to_sorted] for s in state[i])
            data, (h, c) = layer.forward_packed(data, batch_sizes, (h0, c0), keep_masks[i], compute_dtype)
            h_all, c_all = state[i][0].clone(), state[i][1].clone()
            h_all[rows], c_all[rows] = h[to_original], c[to_original]
            new_state.append((h_all, c_all))
            layer_outputs.append(self._unpack(data, packed, rows, order))
            if i < len(self.layers) - 1 and self.training and self.config.hidden_dropout > 0:
                p = self.config.hidden_dropout
                row_masks = data.new_empty(len(rows), data.size(1)).bernoulli_(1 - p).div_(1 - p)
                data = data * row_masks[element_rows]
        return layer_outputs[-1], tuple(new_state), tuple(layer_outputs)

    @staticmethod
    def _unpack(
        data: torch.Tensor, packed: nn.utils.rnn.PackedSequence, rows: torch.Tensor, order: torch.Tensor
    ) -> torch.Tensor:
        """Packed layer output -> `(batch, seq, features)` at the original (possibly left-padded) positions;
        `order` is the `_justify_order` the input was packed with."""
        batch, seq = order.shape
        justified, _ = nn.utils.rnn.pad_packed_sequence(
            packed._replace(data=data), batch_first=True, total_length=seq
        )  # (n_rows, seq, feat), tokens first
        full = data.new_zeros(batch, seq, data.size(1))
        full[rows] = justified
        # justified position k of a row holds its k-th token: scatter it back to where that token was
        return torch.zeros_like(full).scatter_(1, order.unsqueeze(-1).expand_as(full), full)

    @can_return_tuple
    @_float32_where_bf16_is_emulated
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        state: LstmState | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> AwdLstmOutput:
        """Encode a batch left to right.

        Args:
            input_ids: `(batch, seq)` token ids (or give `inputs_embeds` `(batch, seq, embedding_size)`).
            attention_mask: `(batch, seq)`, 1 for tokens and 0 for padding (left or right). Padding is skipped:
                every row's outputs and state are those it would get alone. May be longer than the input, then
                its last `seq` columns apply (as in generation).
            state: per layer `(h, c)` to start from (zeros if None), e.g. the `state` of a previous call.
            use_cache: return the final `state` (default `config.use_cache`).
            output_hidden_states: also return every layer's output.
        """
        batch, mask = self._check_inputs(input_ids, inputs_embeds, attention_mask)
        x = self.embed(input_ids, inputs_embeds)  # (batch, seq, emb)
        state = self.initial_state(batch, x) if state is None else self._check_state(state, batch)
        if mask is None:
            output, new_state, layer_outputs = self.run_layers(x, state)
        else:
            output, new_state, layer_outputs = self.run_layers_masked(x, mask, state)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        return AwdLstmOutput(
            last_hidden_state=output,
            state=new_state if use_cache else None,
            hidden_states=layer_outputs if output_hidden_states else None,
        )

    def _check_inputs(
        self,
        input_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
    ) -> tuple[int, torch.Tensor | None]:
        """Validate the inputs; return the batch size and a bool `(batch, seq)` mask, or None without padding."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids (batch, seq) or inputs_embeds (batch, seq, emb)")
        if input_ids is not None:
            _check_input_ids(input_ids, self.config.vocab_size)
        else:
            _check_embeds(inputs_embeds, self.config.embedding_size)
        batch, seq = (input_ids if input_ids is not None else inputs_embeds).shape[:2]
        if batch == 0 or seq == 0:
            raise ValueError(f"the batch is empty: expected (batch >= 1, seq >= 1) tokens, got ({batch}, {seq})")
        if attention_mask is None:
            return batch, None
        mask = _content_mask(attention_mask, batch, seq, allow_longer=True)
        return batch, None if bool(mask.all()) else mask

    def _check_state(self, state: LstmState, batch: int) -> LstmState:
        if len(state) != len(self.layers):
            raise ValueError(f"state must hold one (h, c) pair per layer ({len(self.layers)}), got {len(state)}")
        for i, ((h, c), layer) in enumerate(zip(state, self.layers)):
            expected = (batch, layer.hidden_size)
            if tuple(h.shape) != expected or tuple(c.shape) != expected:
                raise ValueError(
                    f"state[{i}] must be (h, c) each of shape {expected}, got {tuple(h.shape)} and {tuple(c.shape)}"
                )
        return state


class AwdLstmForCausalLM(AwdLstmPreTrainedModel, GenerationMixin):
    """AWD-LSTM language model: the encoder, output dropout and a decoder tied to the embedding (with its own
    bias). Carries the recurrent state so a stream can be continued and `generate` runs one token per step."""

    _tied_weights_keys = {"decoder.weight": "awd_lstm.embeddings.weight"}
    _keys_to_ignore_on_load_unexpected = [r"classifier\."]

    def __init__(self, config: AwdLstmConfig):
        super().__init__(config)
        self.awd_lstm = AwdLstmModel(config)
        self.decoder = nn.Linear(config.embedding_size, config.vocab_size, bias=True)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.decoder = new_embeddings

    @can_return_tuple
    @_float32_where_bf16_is_emulated
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        state: LstmState | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        logits_to_keep: int = 0,
        **kwargs,
    ) -> AwdLstmCausalLMOutput:
        """Next-token logits for `(batch, seq)` ids.

        Args:
            labels: `(batch, seq)`, usually `input_ids`; positions set to -100 are ignored. The loss is the
                mean next-token cross-entropy (labels are shifted inside).
            state: the `state` of the previous call to continue a stream (see [`AwdLstmModel.forward`]).
            logits_to_keep: if > 0, compute logits for the last `logits_to_keep` positions only.
        Other arguments as in [`AwdLstmModel.forward`].
        """
        outputs = self.awd_lstm(
            input_ids=input_ids,
            attention_mask=attention_mask,
            state=state,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
        )
        hidden = outputs.last_hidden_state  # (batch, seq, emb)
        dropped = locked_dropout(hidden, self.config.output_dropout, self.training)
        logits = self.decoder(dropped[:, -logits_to_keep:] if logits_to_keep else dropped)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        _raise_if_nonfinite(self.config, loss, logits)
        return AwdLstmCausalLMOutput(
            loss=loss,
            logits=logits,
            state=outputs.state,
            hidden_states=outputs.hidden_states,
            last_hidden_state=hidden,
            dropped_hidden_state=dropped,
        )

    def _update_model_kwargs_for_generation(self, outputs, model_kwargs, is_encoder_decoder=False, num_new_tokens=1):
        # transformers >= 5.24 copies only `outputs.cache`; the LSTM state travels under its own name
        if "state" in outputs:
            model_kwargs["state"] = outputs.state
        return super()._update_model_kwargs_for_generation(outputs, model_kwargs, is_encoder_decoder, num_new_tokens)

    @staticmethod
    def _reorder_cache(state: LstmState | None, beam_idx: torch.LongTensor) -> LstmState | None:
        """Beam search: keep the state of the chosen beams (rows)."""
        if state is None:
            return None
        return tuple(
            (h.index_select(0, beam_idx.to(h.device)), c.index_select(0, beam_idx.to(c.device))) for h, c in state
        )


def _raise_if_nonfinite(config: AwdLstmConfig, loss: torch.Tensor | None, logits: torch.Tensor) -> None:
    if not config.raise_on_nonfinite:
        return
    for name, value in (("loss", loss), ("logits", logits)):
        if value is not None and not bool(torch.isfinite(value).all()):
            raise FloatingPointError(f"the {name} is not finite (config.raise_on_nonfinite=True)")


class _ConcatPool:
    """Running concat pooling over the kept tokens, updated chunk by chunk (no concatenated outputs).

    Holds, per document, the output at its last real token, the running max and the running sum/count.
    Updates are functional so that autograd can flow into every kept chunk.
    """

    def __init__(self, batch: int, features: int, like: torch.Tensor):
        self.last = like.new_zeros(batch, features)
        self.max = like.new_full((batch, features), float("-inf"))
        self.sum = like.new_zeros(batch, features)
        self.count = like.new_zeros(batch, 1)

    def update(self, out: torch.Tensor, kept: torch.Tensor, last_at: torch.Tensor) -> None:
        """out: `(n, chunk, feat)` for the first n documents; kept: bool `(n, chunk)`; last_at: `(n,)` the chunk
        position of each document's last token, or -1 if it is not in this chunk."""
        n_rest = self.sum.size(0) - out.size(0)

        def full(x: torch.Tensor, fill: float) -> torch.Tensor:  # (n, feat) -> (batch, feat)
            return torch.cat([x, x.new_full((n_rest, x.size(1)), fill)])

        kept3 = kept.unsqueeze(-1)
        self.sum = self.sum + full(out.masked_fill(~kept3, 0.0).sum(dim=1), 0.0)
        self.max = torch.maximum(self.max, full(out.masked_fill(~kept3, float("-inf")).amax(dim=1), float("-inf")))
        self.count = self.count + full(kept.sum(dim=1, keepdim=True).to(out.dtype), 0.0)
        has_last = last_at >= 0
        if bool(has_last.any()):
            at_last = out[torch.arange(out.size(0), device=out.device), last_at.clamp(min=0)]  # (n, feat)
            is_last_row = full(has_last.unsqueeze(1).to(out.dtype), 0.0).bool()
            self.last = torch.where(is_last_row, full(at_last, 0.0), self.last)

    def result(self) -> torch.Tensor:
        """`(batch, 3*feat)`: [last, max, mean], fastai's order."""
        return torch.cat([self.last, self.max, self.sum / self.count], dim=1)


class AwdLstmForSequenceClassification(AwdLstmPreTrainedModel):
    """BPT3C document classifier (ULMFiT): the AWD-LSTM encoder reads each whole document in `bptt` chunks,
    concat-pools the outputs of the chunks in its last `max_len` tokens, and fastai's head classifies them.

    Single-label, multi-label and regression follow `config.problem_type` as in every transformers model.
    """

    accepts_loss_kwargs = False  # Trainer must average over gradient-accumulation steps itself
    _keys_to_ignore_on_load_unexpected = [r"decoder\."]

    def __init__(self, config: AwdLstmConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.awd_lstm = AwdLstmModel(config)
        self.classifier = AwdLstmClassificationHead(config)
        self.post_init()

    @can_return_tuple
    @_float32_where_bf16_is_emulated
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        """Classify documents of any length.

        Args:
            input_ids: `(batch, seq)` token ids, padded left or right (or `inputs_embeds` `(batch, seq, emb)`).
            attention_mask: `(batch, seq)`, 1 for tokens, 0 for padding. If omitted, positions holding
                `config.pad_token_id` are padding (fastai's convention). Each row is classified exactly as if it
                were alone, whatever its padding or position in the batch.
            labels: `(batch,)` class ids (single-label), `(batch, num_labels)` floats (multi-label) or
                `(batch,)`/`(batch, 1)` floats (regression, `num_labels == 1`).
        Returns:
            `SequenceClassifierOutput` with `logits` `(batch, num_labels)` and `loss` when labels are given.
        """
        pooled = self.encode_documents(input_ids, attention_mask, inputs_embeds)  # (batch, 3*emb)
        logits = self.classifier(pooled)
        loss = None
        if labels is not None:
            labels = self._check_labels(labels, logits.size(0))
            loss = self.loss_function(labels=labels, pooled_logits=logits, config=self.config)
        _raise_if_nonfinite(self.config, loss, logits)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def encode_documents(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """BPT3C: read each document in `bptt`-token chunks from its own first token and return its concat-pooled
        features `(batch, 3*embedding_size)` = [output at the last token, max, mean over the kept tokens].

        The state is carried from chunk to chunk and detached at every boundary; chunks that begin before the
        document's last `max_len` tokens only warm up the state and run without autograd.
        """
        tokens, lengths = self._justified_documents(input_ids, attention_mask, inputs_embeds)
        order = torch.argsort(lengths, descending=True, stable=True)  # longest first
        tokens, lengths = tokens[order], lengths[order]
        bptt, max_len = self.config.bptt, self.config.max_len
        # document position where the kept window begins: the first chunk inside the last max_len tokens
        kept_start = torch.div((lengths - max_len).clamp(min=0) + bptt - 1, bptt, rounding_mode="floor") * bptt

        backbone = self.awd_lstm
        needs_grad = torch.is_grad_enabled() and (
            any(p.requires_grad for p in self.parameters()) or (tokens.is_floating_point() and tokens.requires_grad)
        )
        # With autograd, move each document right by whole chunks so that every kept window begins at the same
        # column: columns before it only warm up the state, columns from it on are kept for every row, and the
        # graph spans about max_len / bptt chunk columns whatever the mix of lengths (one dropped recurrent
        # weight per layer and column). Without autograd every document starts at column 0.
        kept_column = int(kept_start.max()) if needs_grad else 0  # where the autograd graph begins
        shift = kept_column - kept_start if needs_grad else torch.zeros_like(kept_start)  # (batch,)
        tokens = _shift_right(tokens, shift, lengths)
        ends, kept_from = shift + lengths, shift + kept_start  # (batch,) columns: after the last token, kept window
        first_list, end_list, kept_from_list = shift.tolist(), ends.tolist(), kept_from.tolist()

        batch = len(end_list)
        like = backbone.embeddings.weight if inputs_embeds is None else inputs_embeds
        state = backbone.initial_state(batch, like)
        pool = _ConcatPool(batch, self.config.embedding_size, like)
        for start, end in self._chunk_bounds(end_list, bptt, needs_grad or self.training):
            # rows that started by `start` are a prefix (shift grows down the rows); run up to the last unfinished
            # one (a finished row in between reads padding: its outputs are not pooled, its state not used)
            n_active = 1 + max(row for row in range(batch) if first_list[row] <= start < end_list[row])
            with torch.set_grad_enabled(needs_grad and start >= kept_column):
                x = self._embed_chunk(tokens[:n_active, start:end], inputs_embeds is not None)  # (n, chunk, emb)
                active_state = tuple((h[:n_active], c[:n_active]) for h, c in state)
                out, new_state, _ = backbone.run_layers(x, active_state)
                if min(kept_from_list[:n_active]) < end:
                    self._pool_chunk(pool, out, start, ends[:n_active], kept_from[:n_active])
            # carry the state to the next chunk, detached: no gradient crosses a chunk boundary
            state = tuple(
                (torch.cat([new_h, h[n_active:]]).detach(), torch.cat([new_c, c[n_active:]]).detach())
                for (new_h, new_c), (h, c) in zip(new_state, state)
            )
        pooled = pool.result()
        return pooled[torch.argsort(order)]  # back to the caller's row order

    @staticmethod
    def _chunk_bounds(ends: list[int], bptt: int, training: bool) -> list[tuple[int, int]]:
        """`(start, end)` columns of the chunks; `ends` is the column after each document's last token.

        Training: `bptt` chunks, BPT3C's unit of truncation and dropout. Inference: boundaries change nothing, so a
        chunk runs up to `INFERENCE_CHUNK_TOKENS` but also stops where a document ends (at least `bptt` tokens on):
        finished documents leave the batch and little padding is computed.
        """
        last = max(ends)
        if training:
            return [(start, start + bptt) for start in range(0, last, bptt)]
        longest = max(bptt, INFERENCE_CHUNK_TOKENS // bptt * bptt)
        stops = sorted(set(ends))
        bounds, start = [], 0
        while start < last:
            next_stop = stops[bisect.bisect_right(stops, start)]
            end = min(start + longest, max(next_stop, start + bptt))
            bounds.append((start, end))
            start = end
        return bounds

    def _embed_chunk(self, chunk: torch.Tensor, is_embeds: bool) -> torch.Tensor:
        return self.awd_lstm.embed(inputs_embeds=chunk) if is_embeds else self.awd_lstm.embed(input_ids=chunk)

    @staticmethod
    def _pool_chunk(pool: _ConcatPool, out: torch.Tensor, start: int, ends: torch.Tensor, kept_from: torch.Tensor):
        """Add the outputs `(n, chunk, emb)` of the chunk at column `start` for the first n documents to the running
        pooling; `ends`, `kept_from`: `(n,)` their columns after the last token and where the kept window begins."""
        columns = start + torch.arange(out.size(1), device=out.device)  # (chunk,)
        kept = (columns >= kept_from.unsqueeze(1)) & (columns < ends.unsqueeze(1))  # (n, chunk)
        last_at = ends - 1 - start
        last_at = torch.where(last_at < out.size(1), last_at, torch.full_like(last_at, -1))
        pool.update(out, kept, last_at)

    def _justified_documents(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Validate the batch; return it with each document's tokens first (`(batch, seq)` ids or
        `(batch, seq, emb)` embeddings) and the document lengths `(batch,)`."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids (batch, seq) or inputs_embeds (batch, seq, emb)")
        if input_ids is not None:
            _check_input_ids(input_ids, self.config.vocab_size)
            tokens = input_ids
        else:
            _check_embeds(inputs_embeds, self.config.embedding_size)
            tokens = inputs_embeds
        batch, seq = tokens.shape[:2]
        if batch == 0 or seq == 0:
            raise ValueError(f"the batch is empty: expected shape (batch >= 1, seq >= 1), got {tuple(tokens.shape)}")
        if attention_mask is not None:
            mask = _content_mask(attention_mask, batch, seq)
        elif input_ids is not None and self.config.pad_token_id is not None:
            mask = input_ids != self.config.pad_token_id
            if _rows_with_holes(mask).any():
                raise ValueError(
                    f"input_ids hold pad_token_id={self.config.pad_token_id} between tokens and no attention_mask "
                    "was given: pass attention_mask to say which positions are padding"
                )
        else:
            mask = torch.ones(batch, seq, dtype=torch.bool, device=tokens.device)
        lengths = mask.sum(dim=1)
        if bool((lengths == 0).any()):
            row = int((lengths == 0).nonzero()[0, 0])
            raise ValueError(
                f"document {row} has no token (its attention_mask row is all 0): an empty document cannot be "
                "classified; tokenize it (the tokenizer adds xxbos) or drop it"
            )
        return _left_justify(tokens, mask, reverse=self.config.backwards), lengths

    def _check_labels(self, labels: torch.Tensor, batch: int) -> torch.Tensor:
        """Validate `labels` against `config.problem_type` (inferring it as transformers does)."""
        if not isinstance(labels, torch.Tensor):
            raise TypeError(f"labels must be a tensor, got {type(labels).__name__}")
        if labels.size(0) != batch:
            raise ValueError(f"labels must have {batch} rows (one per document), got shape {tuple(labels.shape)}")
        problem = self.config.problem_type
        if problem is None:
            if self.num_labels == 1:
                problem = "regression"
            elif labels.dtype in (torch.long, torch.int):
                problem = "single_label_classification"
            else:
                problem = "multi_label_classification"
        if problem == "single_label_classification":
            if labels.is_floating_point() or labels.dtype == torch.bool:
                raise TypeError(f"labels must be integer class ids for single-label classification, got {labels.dtype}")
            labels = labels.view(-1) if labels.dim() == 2 and labels.size(1) == 1 else labels
            if labels.dim() != 1:
                raise ValueError(f"labels must have shape ({batch},) of class ids, got {tuple(labels.shape)}")
            if labels.min() < 0 or labels.max() >= self.num_labels:
                raise ValueError(
                    f"labels must be class ids in [0, num_labels={self.num_labels}), got values in "
                    f"[{int(labels.min())}, {int(labels.max())}]"
                )
        elif problem == "multi_label_classification":
            if tuple(labels.shape) != (batch, self.num_labels):
                raise ValueError(
                    f"labels must have shape ({batch}, {self.num_labels}) for multi-label classification, "
                    f"got {tuple(labels.shape)}"
                )
            labels = labels.float()
        else:  # regression
            if labels.numel() != batch * self.num_labels:
                raise ValueError(
                    f"labels must have {batch}x{self.num_labels} values for regression, got {tuple(labels.shape)}"
                )
            labels = labels.float()
        return labels


__all__ = [
    "AwdLstmPreTrainedModel",
    "AwdLstmModel",
    "AwdLstmForCausalLM",
    "AwdLstmForSequenceClassification",
    "AwdLstmOutput",
    "AwdLstmCausalLMOutput",
]
