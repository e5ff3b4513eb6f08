"""The LSTM compute kernels behind one dispatcher, `lstm_forward`: one AWD-LSTM layer over a chunk.

- `torch.lstm` (oneDNN on CPU, cuDNN on CUDA) on padded or packed input, in the weights' dtype or a requested
  compute dtype (`_run_lstm`: inputs, state and weights cast, autocast off, results cast back);
- `_FusedLstm`, for CPU training in bfloat16: matrix products in bfloat16, gate arithmetic and state in float32, a
  backward whose time loop computes only the recurrent term, the chunk's saved tensors in one allocation and the
  DropConnect mask packed eight weights per byte (`pack_bits`);

`lstm_compute_dtype` decides the dtype of the products: the model's request or a bfloat16 autocast, float32 where
the CPU has no native bfloat16 (`hardware.cpu_bf16_allowed`). DropConnect's mask is drawn by `keep_mask` and
applied by `drop_connect`, here because the fused kernel re-applies it in its backward.
"""

from __future__ import annotations

import contextlib
import math
import sys
import warnings
from collections.abc import Callable

import torch

from .hardware import AUTOCAST_SOURCE, COMPUTE_DTYPE_SOURCE, cpu_bf16_allowed

LstmWeights = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # weight_ih, weight_hh, bias_ih, bias_hh


def lstm_forward(
    x: torch.Tensor,
    state: tuple[torch.Tensor, torch.Tensor],
    weights: LstmWeights,
    keep: torch.Tensor | None,
    weight_dropout: float,
    training: bool,
    compute_dtype: torch.dtype | None = None,
    batch_sizes: torch.Tensor | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """One LSTM layer (gate order i, f, g, o) with DropConnect on its recurrent weight: the kernels' one entry.

    x: `(batch, seq, input)`, or `(total_tokens, input)` in `PackedSequence` order with its `batch_sizes`;
    state: `(h, c)` each `(batch, hidden)`; weights: `(weight_ih (4h, in), weight_hh (4h, h), bias_ih, bias_hh)`;
    keep: DropConnect's bool mask of `weight_hh` (None: no dropout); compute_dtype: dtype of the matrix products
    (None: the weights', or bfloat16 under a bfloat16 autocast). Returns the output (x's layout, `hidden`
    features) and the final `(h, c)`.

    CPU training in bfloat16 runs the fused kernel; everything else one `torch.lstm` call.
    """
    h0, c0 = state
    weight_ih, weight_hh, bias_ih, bias_hh = weights
    compute_dtype = lstm_compute_dtype(x, compute_dtype)
    if batch_sizes is None and compute_dtype == torch.bfloat16 and _use_fused(x, h0, list(weights)):
        with torch.autocast("cpu", enabled=False):
            state_dtype = weight_ih.dtype
            out, h, c = _FusedLstm.apply(
                _cast(x, state_dtype), _cast(h0, state_dtype), _cast(c0, state_dtype), weight_ih, weight_hh,
                bias_ih + bias_hh, keep, weight_dropout, compute_dtype,
            )  # fmt: skip
            return out, (h, c)
    dropped = [weight_ih, drop_connect(weight_hh, keep, weight_dropout), bias_ih, bias_hh]
    if batch_sizes is None:

        def lstm(x, hx, weights):
            return torch.lstm(x, hx, weights, True, 1, 0.0, training, False, True)

    else:

        def lstm(data, hx, weights):
            return torch.lstm(data, batch_sizes, hx, weights, True, 1, 0.0, training, False)

    return _run_lstm(lstm, x, h0, c0, dropped, compute_dtype)


def keep_mask(like: torch.Tensor, p: float) -> torch.Tensor:
    """A bool tensor shaped like `like`, each entry True with probability `1 - p` (p resolved to 1/65536).

    Three 16-bit uniform words come out of each 64-bit `random_()` draw (its top bit is always 0, so the top word
    is skipped): on CPU cheaper than `bernoulli_`, which draws once per element (docs/benchmarks.md).
    DropConnect draws a mask of every recurrent weight for every chunk.
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


# ----------------------------------------------------------------------------------------------------------------
# Fused LSTM for bfloat16 compute on CPU: matrix products in bfloat16, gate arithmetic and state in float32.
# oneDNN's bfloat16 LSTM (what autocast runs) has a slow backward; this one's time loop computes only the
# recurrent term, and the input and weight gradients are single large matrix products after the loop.
# ----------------------------------------------------------------------------------------------------------------


def _cast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return x if x.dtype == dtype else x.to(dtype)


_FUSED_PARAM_DTYPES = (torch.float32, torch.float64)


def lstm_compute_dtype(x: torch.Tensor, requested: torch.dtype | None) -> torch.dtype | None:
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
    tensors fragment its heap and raise the peak RSS of long runs."""
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
