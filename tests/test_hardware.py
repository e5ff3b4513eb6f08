"""bfloat16 only where the CPU multiplies it natively: the dispatch and its warning, both branches on any machine.

The capability check (`hardware.cpu_bf16_is_native`) is patched, so each branch runs whatever CPU runs the tests;
the reference in each case is a float32 model (or the bfloat16 path itself) computed on this CPU.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import no_dropout, small_config

from hf_bpt3c import AwdLstmForCausalLM, AwdLstmForSequenceClassification
from hf_bpt3c.cli import main as cli_main
from hf_bpt3c.models.awd_lstm import hardware

IDS = torch.tensor([[5, 9, 11, 3, 7, 8, 21, 30, 2, 4, 6, 13, 17], [40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52]])


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """Each test starts with no warning given yet and no force switch from the environment."""
    monkeypatch.setattr(hardware, "_warned", set())
    monkeypatch.delenv(hardware.FORCE_BF16_ENV, raising=False)


def cpu_with_native_bf16(monkeypatch, native: bool) -> None:
    monkeypatch.setattr(hardware, "cpu_bf16_is_native", lambda: native)


def classifier_logits(compute_dtype: str, autocast: bool = False) -> torch.Tensor:
    """Eval logits of one seeded classifier for IDS, with the given compute dtype and optionally a CPU bf16 autocast."""
    torch.manual_seed(0)
    model = AwdLstmForSequenceClassification(no_dropout(compute_dtype=compute_dtype)).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        return model(IDS).logits


def bf16_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if "bfloat16 compute was requested" in str(w.message)]


def test_emulated_bf16_request_warns_once_and_computes_float32(monkeypatch):
    cpu_with_native_bf16(monkeypatch, False)
    exact = classifier_logits("float32")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        first = classifier_logits("bfloat16")
        second = classifier_logits("bfloat16")
    messages = bf16_warnings(record)
    assert len(messages) == 1, messages
    (warning,) = [w for w in record if "bfloat16 compute was requested" in str(w.message)]
    assert warning.filename == __file__  # it points at the caller's line, not at library internals
    assert torch.backends.cpu.get_cpu_capability() in messages[0] and hardware.FORCE_BF16_ENV in messages[0]
    assert torch.equal(first, exact) and torch.equal(second, exact)


def test_emulated_bf16_autocast_runs_the_whole_forward_in_float32(monkeypatch):
    """Under a CPU bf16 autocast (Trainer's --bf16) the autocast is turned off for the whole forward: the head's and
    the decoder's products too, so logits come out float32 and equal the float32 model's."""
    cpu_with_native_bf16(monkeypatch, False)
    exact = classifier_logits("float32")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        under_autocast = classifier_logits("float32", autocast=True)
        lm = AwdLstmForCausalLM(small_config()).eval()
        with torch.no_grad():
            lm_exact = lm(IDS).logits
            with torch.autocast("cpu", dtype=torch.bfloat16):
                lm_autocast = lm(IDS).logits
    assert len(bf16_warnings(record)) == 1
    assert under_autocast.dtype == torch.float32 and torch.equal(under_autocast, exact)
    assert lm_autocast.dtype == torch.float32 and torch.equal(lm_autocast, lm_exact)


def test_emulated_bf16_training_step_uses_the_float32_lstm(monkeypatch):
    """Training with compute_dtype="bfloat16" on such a CPU: the same loss and gradients as float32 (same dropout
    draws), and no fused bfloat16 LSTM in the graph."""
    cpu_with_native_bf16(monkeypatch, False)
    labels = torch.tensor([0, 2])
    results = []
    for dtype in ("float32", "bfloat16"):
        torch.manual_seed(0)
        model = AwdLstmForSequenceClassification(small_config(compute_dtype=dtype)).train()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loss = model(IDS, labels=labels).loss
        loss.backward()
        results.append((loss.detach(), [p.grad for p in model.parameters() if p.grad is not None]))
    (loss32, grads32), (loss16, grads16) = results
    assert torch.equal(loss16, loss32)
    assert all(torch.equal(a, b) for a, b in zip(grads16, grads32))


def test_force_keeps_bf16_numerics_where_emulated(monkeypatch):
    cpu_with_native_bf16(monkeypatch, True)
    native = classifier_logits("bfloat16")
    cpu_with_native_bf16(monkeypatch, False)
    monkeypatch.setenv(hardware.FORCE_BF16_ENV, "1")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        forced = classifier_logits("bfloat16")
    assert bf16_warnings(record) == []
    assert torch.equal(forced, native) and not torch.equal(forced, classifier_logits("float32"))


def test_native_cpu_runs_bf16_without_a_warning(monkeypatch):
    cpu_with_native_bf16(monkeypatch, True)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        bf16 = classifier_logits("bfloat16")
        autocast = classifier_logits("float32", autocast=True)
    assert bf16_warnings(record) == []
    exact = classifier_logits("float32")
    assert not torch.equal(bf16, exact) and (bf16 - exact).abs().max() < 2e-2
    assert not torch.equal(autocast, exact)


@pytest.mark.parametrize("native", [True, False])
def test_auto_picks_bf16_only_where_native(monkeypatch, native):
    cpu_with_native_bf16(monkeypatch, native)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        auto = classifier_logits("auto")
    assert bf16_warnings(record) == []
    expected = classifier_logits("bfloat16" if native else "float32")
    assert torch.equal(auto, expected)


def test_native_check_follows_onednn_and_cpu_flags(monkeypatch):
    """Native means oneDNN's bf16 support and (on x86) AVX512-BF16 or AMX; AVX-512 alone (emulated bf16) is not."""
    monkeypatch.setattr(hardware.platform, "machine", lambda: "x86_64")
    cases = [
        (False, {"_is_avx512_bf16_supported": True}, False),  # oneDNN restricted (e.g. ONEDNN_MAX_CPU_ISA=AVX2)
        (True, {"_is_avx512_bf16_supported": False, "_is_amx_tile_supported": False}, False),  # AVX-512 only
        (True, {"_is_avx512_bf16_supported": True, "_is_amx_tile_supported": False}, True),
        (True, {"_is_avx512_bf16_supported": False, "_is_amx_tile_supported": True}, True),
    ]
    try:
        for onednn, probes, expected in cases:
            hardware._native_bf16_instructions.cache_clear()
            monkeypatch.setattr(hardware, "_onednn_bf16", lambda onednn=onednn: onednn)
            monkeypatch.setattr(hardware, "_cpu_probe", lambda name, probes=probes: probes.get(name, False))
            assert hardware.cpu_bf16_is_native() is expected, (onednn, probes)
    finally:
        hardware._native_bf16_instructions.cache_clear()  # the real answer again once the patches are undone


def test_compute_dtype_auto_is_a_valid_config_value():
    assert small_config(compute_dtype="auto").compute_dtype == "auto"
    with pytest.raises(ValueError, match='"float32", "bfloat16", "auto"'):
        small_config(compute_dtype="fp16")


def test_env_command_names_the_cpu(capsys):
    assert cli_main(["env"]) == 0
    out = capsys.readouterr().out
    assert torch.backends.cpu.get_cpu_capability() in out and "native bfloat16" in out
    assert torch.__version__ in out
