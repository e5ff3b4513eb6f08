"""The fused LSTM (`_FusedLstm`, the bfloat16 compute path) against `torch.lstm`: forward and gradients.

Tolerances: float64 with float64 products must match `torch.lstm` to rounding (1e-12) and pass `gradcheck`; float32
products to 1e-5; bfloat16 products (gates and state in float32) stay within 3e-2 absolute of float32 on outputs and
within 5% relative (norm) on gradients, for unit-scale inputs and PyTorch's default weight scale.

These tests exercise the bfloat16 kernels themselves, so they run with `HF_BPT3C_FORCE_BF16=1`: on a CPU without
native bfloat16 (AVX2) a bfloat16 request would otherwise compute in float32 (`tests/test_hardware.py`). Results
that two code paths compute with different kernels (oneDNN's padded LSTM, PyTorch's packed one, which differ on
AVX2 in the last bfloat16 bits) are compared within bfloat16's precision, never bitwise; a path is compared bitwise
only with what this CPU computes for the same call.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import small_config
from hypothesis import given
from hypothesis import strategies as st

from hf_bpt3c import AwdLstmConfig, AwdLstmForSequenceClassification
from hf_bpt3c.models.awd_lstm.hardware import FORCE_BF16_ENV
from hf_bpt3c.models.awd_lstm.lstm_kernels import _FusedLstm, drop_connect, keep_mask, pack_bits, unpack_bits
from hf_bpt3c.models.awd_lstm.modeling_awd_lstm import AwdLstmLayer

BATCH, SEQ, N_IN, HIDDEN = 3, 7, 5, 6
# one bfloat16 rounding of a value of magnitude 1 (8 significant bits); an LSTM output accumulates a few of them
BF16_EPS = torch.finfo(torch.bfloat16).eps


@pytest.fixture(autouse=True)
def bfloat16_on_any_cpu(monkeypatch):
    monkeypatch.setenv(FORCE_BF16_ENV, "1")


def lstm_inputs(dtype: torch.dtype, seed: int = 0, hidden: int = HIDDEN, n_in: int = N_IN) -> list[torch.Tensor]:
    """x `(batch, seq, in)`, h0, c0 `(batch, hidden)`, weight_ih, weight_hh, bias_ih, bias_hh, all requiring grad."""
    gen = torch.Generator().manual_seed(seed)
    bound = hidden**-0.5
    shapes = [(BATCH, SEQ, n_in), (BATCH, hidden), (BATCH, hidden)]
    tensors = [torch.randn(shape, generator=gen, dtype=dtype) for shape in shapes]
    weight_shapes = [(4 * hidden, n_in), (4 * hidden, hidden), (4 * hidden,), (4 * hidden,)]
    tensors += [(torch.rand(shape, generator=gen, dtype=dtype) * 2 - 1) * bound for shape in weight_shapes]
    return [t.requires_grad_(True) for t in tensors]


def reference(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh):
    out, h, c = torch.lstm(
        x, (h0[None], c0[None]), [weight_ih, weight_hh, bias_ih, bias_hh], True, 1, 0.0, False, False, True
    )
    return out, h[0], c[0]


def fused(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, compute_dtype=None, keep=None, p=0.0):
    return _FusedLstm.apply(x, h0, c0, weight_ih, weight_hh, bias_ih + bias_hh, keep, p, compute_dtype or x.dtype)


def reference_dropconnect(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, keep=None, p=0.0):
    return reference(x, h0, c0, weight_ih, drop_connect(weight_hh, keep, p), bias_ih, bias_hh)


def seeded_layer(n_in: int, hidden: int, weight_dropout: float, bound: float) -> AwdLstmLayer:
    """An `AwdLstmLayer` with U(-bound, bound) parameters, the global seed set to 0 first (inputs drawn after it
    follow from that seed)."""
    torch.manual_seed(0)
    layer = AwdLstmLayer(n_in, hidden, weight_dropout=weight_dropout)
    with torch.no_grad():
        for param in layer.parameters():
            param.uniform_(-bound, bound)
    return layer


def outputs_and_grads(fn, inputs: list[torch.Tensor], **kwargs) -> list[torch.Tensor]:
    """The three outputs and the gradients of a fixed random projection of them w.r.t. all seven inputs."""
    outs = fn(*inputs, **kwargs)
    gen = torch.Generator().manual_seed(123)
    loss = sum((o * torch.randn(o.shape, generator=gen, dtype=o.dtype)).sum() for o in outs)
    grads = torch.autograd.grad(loss, inputs)
    return [o.detach() for o in outs] + list(grads)


def test_gradcheck_float64():
    inputs = lstm_inputs(torch.float64)
    assert torch.autograd.gradcheck(lambda *a: fused(*a), inputs)


def test_dropconnect_inside_the_fused_lstm():
    """The fused LSTM applies the DropConnect mask itself (and rebuilds the dropped weight in its backward): equal
    to `torch.lstm` on the dropped weight, gradients included, and it passes gradcheck."""
    inputs = lstm_inputs(torch.float64, seed=3)
    keep = keep_mask(inputs[4], 0.4)
    assert 0 < int(keep.sum()) < keep.numel()
    ours = outputs_and_grads(fused, inputs, keep=keep, p=0.4)
    ref = outputs_and_grads(reference_dropconnect, inputs, keep=keep, p=0.4)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
    assert torch.all(ours[3 + 4][~keep] == 0)  # no gradient reaches a dropped recurrent weight
    assert torch.autograd.gradcheck(lambda *a: fused(*a, keep=keep, p=0.4), inputs)


@given(shape=st.tuples(st.integers(1, 13), st.integers(1, 11)), seed=st.integers(0, 2**16))
def test_pack_bits_round_trip(shape, seed):
    mask = torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < 0.5
    packed = pack_bits(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == -(-mask.numel() // 8)
    assert torch.equal(unpack_bits(packed, mask.shape), mask)


def test_fused_training_saves_the_packed_mask_not_a_weight_copy():
    """What autograd keeps for one bfloat16 chunk: of the recurrent weight's size only the parameter itself, and
    its DropConnect mask packed eight weights per byte (the dropped weight is rebuilt from it in the backward)."""
    layer = seeded_layer(8, 64, weight_dropout=0.5, bound=0.3).train()
    x, state = torch.randn(2, 3, 8), (torch.zeros(2, 64), torch.zeros(2, 64))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out, _ = layer(x, state, compute_dtype=torch.bfloat16)
    n_weights = layer.weight_hh.numel()
    assert [t for t in saved if t.numel() >= n_weights and t is not layer.weight_hh] == []
    assert [t.numel() for t in saved if t.dtype == torch.uint8] == [n_weights // 8]
    out.sum().backward()
    assert layer.weight_hh.grad is not None and torch.isfinite(layer.weight_hh.grad).all()


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_matches_torch_lstm(dtype, tol):
    inputs = lstm_inputs(dtype, seed=1)
    for ours, ref in zip(outputs_and_grads(fused, inputs), outputs_and_grads(reference, inputs)):
        torch.testing.assert_close(ours, ref, atol=tol, rtol=tol)


def test_bfloat16_products_close_to_float32():
    inputs = lstm_inputs(torch.float32, seed=2, hidden=64, n_in=48)
    exact = outputs_and_grads(fused, inputs)
    approx = outputs_and_grads(fused, inputs, compute_dtype=torch.bfloat16)
    for k, (a, e) in enumerate(zip(approx, exact)):
        assert a.dtype == torch.float32
        if k < 3:  # outputs, h, c
            assert (a - e).abs().max() < 3e-2, k
        else:  # gradients
            assert (a - e).norm() / e.norm() < 0.05, k


def test_layer_bfloat16_paths():
    """With autograd, `compute_dtype` and a bfloat16 CPU autocast both run the fused LSTM (same result); without
    autograd oneDNN's bfloat16 LSTM runs; both stay close to float32, which stays exactly `torch.lstm`."""
    layer = seeded_layer(5, 6, weight_dropout=0.0, bound=0.4).eval()
    x, state = torch.randn(2, 9, 5), (torch.zeros(2, 6), torch.zeros(2, 6))
    exact, _ = layer(x, state)
    assert torch.equal(exact, reference(x, *state, *layer.weights())[0])
    fused_out, (h, c) = layer(x, state, compute_dtype=torch.bfloat16)
    assert fused_out.grad_fn is not None and "Fused" in type(fused_out.grad_fn).__name__
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast_out, _ = layer(x, state)
    with torch.no_grad():
        inference_out, _ = layer(x, state, compute_dtype=torch.bfloat16)
    assert fused_out.dtype == h.dtype == c.dtype == inference_out.dtype == torch.float32
    assert torch.equal(fused_out, autocast_out)
    for approx in (fused_out, inference_out):
        assert 0 < (approx - exact).abs().max() < 2e-2


def test_layer_bfloat16_inference_runs_the_lstm_on_bfloat16_arguments():
    """Without autograd `compute_dtype` (or a bfloat16 autocast) runs `torch.lstm` on input, state and weights cast
    to bfloat16 with autocast off, padded and packed alike (on CPU what autocast ran before; on CUDA see below).

    Each path equals, bitwise, the same `torch.lstm` call on bfloat16 arguments on this CPU. The padded and the
    packed call run different kernels (on AVX2 they differ in the last bfloat16 bits: -0.0344 vs -0.0349), so they
    are compared with each other and with float32 within bfloat16's precision."""
    layer = seeded_layer(5, 6, weight_dropout=0.0, bound=0.4).eval()
    x, state = torch.randn(2, 9, 5), (torch.randn(2, 6), torch.randn(2, 6))
    bf16 = [t.to(torch.bfloat16) for t in (x, *state, *layer.weights())]
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor([9, 9]), batch_first=True)
    with torch.no_grad():
        expected = reference(*bf16)[0].float()
        bf16_data, bf16_h0, bf16_c0 = packed.data.to(torch.bfloat16), bf16[1][None], bf16[2][None]
        expected_packed = torch.lstm(
            bf16_data, packed.batch_sizes, (bf16_h0, bf16_c0), bf16[3:], True, 1, 0.0, False, False
        )
        expected_packed = expected_packed[0].float()
        out, (h, c) = layer(x, state, compute_dtype=torch.bfloat16)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast_out, _ = layer(x, state)
        packed_out, _ = layer.forward_packed(packed.data, packed.batch_sizes, state, compute_dtype=torch.bfloat16)
        exact = reference(x, *state, *layer.weights())[0]
    assert out.dtype == h.dtype == c.dtype == packed_out.dtype == torch.float32
    assert torch.equal(out, expected) and torch.equal(autocast_out, expected)
    assert torch.equal(packed_out, expected_packed)
    packed_out = packed_out.view(9, 2, 6).transpose(0, 1)
    # outputs below 1 in magnitude, a few bfloat16 roundings each: over 200 seeds the worst difference was 0.0059
    # (packed vs padded, AVX2) and 0.0069 (vs float32); 4 eps = 0.031
    torch.testing.assert_close(packed_out, out, atol=4 * BF16_EPS, rtol=0)
    assert 0 < (out - exact).abs().max() <= 4 * BF16_EPS


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_layer_under_cuda_bfloat16_autocast_runs_in_bfloat16():
    """Regression: under `torch.autocast("cuda", dtype=torch.bfloat16)` the LSTM ran in float16 (PyTorch's autocast
    wrapper of cuDNN's LSTM casts to half whatever dtype it is asked for); now it runs in bfloat16."""
    layer = seeded_layer(5, 6, weight_dropout=0.0, bound=0.4).cuda()
    x, state = torch.randn(2, 9, 5, device="cuda"), (torch.randn(2, 6, device="cuda"), torch.randn(2, 6, device="cuda"))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*not part of single contiguous chunk")  # cuDNN's weight copy
        explicit, _ = layer(x, state, compute_dtype=torch.bfloat16)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            autocast_out, _ = layer(x, state)
    autocast_out.sum().backward()
    torch.testing.assert_close(autocast_out, explicit)
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in layer.parameters())
    half = [t.half() for t in (x, *state, *layer.weights())]
    assert not torch.equal(autocast_out.detach(), reference(*half)[0].float())


def test_classifier_bfloat16_config_trains_and_predicts_like_float32():
    """`compute_dtype="bfloat16"`: the classifier's training step runs and its eval logits stay close to float32."""
    config = small_config()
    model = AwdLstmForSequenceClassification(config).eval()
    ids = torch.randint(2, config.vocab_size, (4, 40))
    with torch.no_grad():
        fp32 = model(ids).logits
        model.config.compute_dtype = "bfloat16"
        bf16 = model(ids).logits
    assert (bf16 - fp32).abs().max() < 2e-2
    model.train()
    loss = model(ids, labels=torch.tensor([0, 1, 2, 0])).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters() if p.requires_grad)


def test_compute_dtype_is_validated():
    with pytest.raises(ValueError, match="compute_dtype"):
        AwdLstmConfig(compute_dtype="float16")
