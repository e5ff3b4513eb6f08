"""Which compute dtype runs fast where: bfloat16 only where the device multiplies bfloat16 matrices natively.

CPUs differ. With AVX-512 BF16 or AMX (and Arm's BF16), a bfloat16 matrix product runs faster than a float32 one; on
an AVX2-only CPU (or AVX-512 without BF16) PyTorch falls back to a reference kernel that is far slower than float32
(docs/benchmarks.md has the figures). So a bfloat16 request (`AwdLstmConfig.compute_dtype="bfloat16"`, a CPU
bfloat16 autocast such as Trainer's `--bf16 --use_cpu`) is honoured only where bfloat16 is native; elsewhere the
model warns once and computes in float32. `HF_BPT3C_FORCE_BF16=1` keeps bfloat16 numerics on any CPU (slow where
emulated). `compute_dtype="auto"` picks bfloat16 where native and float32 elsewhere, silently.

Check a machine with `hf-bpt3c env`
(or `python -c "import hf_bpt3c.models.awd_lstm.hardware as h; print(h.cpu_summary())"`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import sys
import warnings
from collections.abc import Callable

import torch

FORCE_BF16_ENV = "HF_BPT3C_FORCE_BF16"
_X86 = ("x86_64", "amd64", "i386", "i686", "x86")
_warned: set[str] = set()


def _cpu_probe(name: str) -> bool:
    """`torch.cpu.<name>()` (a cpuinfo feature probe), False where this PyTorch lacks it."""
    probe = getattr(torch.cpu, name, None)
    return bool(probe()) if callable(probe) else False


@functools.cache
def _onednn_bf16() -> bool:
    """oneDNN's own verdict (it also honours `ONEDNN_MAX_CPU_ISA`): True with AVX-512 (BF16 or emulated) or Arm BF16."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@functools.cache
def _native_bf16_instructions() -> list[str]:
    """The bfloat16 matrix instructions this CPU has and PyTorch uses (empty when bfloat16 would be emulated)."""
    if not _onednn_bf16():
        return []
    if platform.machine().lower() not in _X86:
        return ["Arm BF16"]  # oneDNN reports bfloat16 on Arm only when the CPU has the BF16 extension
    found = [("AVX512-BF16", "_is_avx512_bf16_supported"), ("AMX", "_is_amx_tile_supported")]
    return [name for name, probe in found if _cpu_probe(probe)]


def cpu_bf16_is_native() -> bool:
    """True where this CPU multiplies bfloat16 matrices in hardware (AVX-512 BF16 or AMX on x86, BF16 on Arm)."""
    return bool(_native_bf16_instructions())


def bf16_forced() -> bool:
    """True when `HF_BPT3C_FORCE_BF16` asks for bfloat16 numerics even where bfloat16 is emulated."""
    return os.environ.get(FORCE_BF16_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def bf16_is_native(device: torch.device | str) -> bool:
    """Whether bfloat16 matrix products are fast on `device`: the CPU check above, CUDA's own (Ampere and later)."""
    device = torch.device(device)
    if device.type == "cpu":
        return cpu_bf16_is_native()
    if device.type == "cuda":
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # PyTorch < 2.5
            return torch.cuda.is_bf16_supported()
    return False


def cpu_summary() -> str:
    """One line naming this CPU's kernel capability and whether bfloat16 is native, e.g.
    `"CPU capability AVX2, native bfloat16: no (oneDNN bf16: no)"`."""
    capability = torch.backends.cpu.get_cpu_capability()
    native = _native_bf16_instructions()
    answer = f"yes ({', '.join(native)})" if native else f"no (oneDNN bf16: {'yes' if _onednn_bf16() else 'no'})"
    forced = f"; {FORCE_BF16_ENV} is set: bfloat16 is used anyway" if bf16_forced() and not native else ""
    return f"CPU capability {capability}, native bfloat16: {answer}{forced}"


def _caller_stacklevel() -> int:
    """The `stacklevel` of the first frame outside this package and the libraries that call a model (torch,
    transformers, accelerate), so that the warning names the user's line (`model(...)`, `trainer.train()`)."""
    libraries = [sys.modules.get(name) for name in ("torch", "transformers", "accelerate")]
    files = [__file__, *(getattr(module, "__file__", None) for module in libraries)]
    internal = tuple(os.path.dirname(os.path.abspath(f)) for f in files if f)
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(internal):
        frame, level = frame.f_back, level + 1
    return level


def _warn_once(source: str) -> None:
    if source in _warned:
        return
    _warned.add(source)
    warnings.warn(
        f"bfloat16 compute was requested ({source}) but this CPU has no native bfloat16 matrix products "
        f"({cpu_summary()}): computing in float32, which is much faster here. Set {FORCE_BF16_ENV}=1 to keep "
        'bfloat16 numerics anyway, or use compute_dtype="auto" to pick bfloat16 only where it is native.',
        UserWarning,
        stacklevel=_caller_stacklevel(),
    )


def cpu_bf16_allowed(source: str) -> bool:
    """Whether a bfloat16 request from `source` runs in bfloat16 on the CPU: where native or forced; otherwise warns
    once per `source` (naming the CPU capability) and returns False, the caller then computes in float32."""
    if cpu_bf16_is_native() or bf16_forced():
        return True
    _warn_once(source)
    return False


AUTOCAST_SOURCE = "a CPU bfloat16 autocast, e.g. Trainer's --bf16"
COMPUTE_DTYPE_SOURCE = 'AwdLstmConfig.compute_dtype="bfloat16"'


def float32_where_bf16_is_emulated(device: torch.device) -> contextlib.AbstractContextManager:
    """A context for a model's forward: under a CPU bfloat16 autocast on a CPU without native bfloat16, turn the
    autocast off (warning once), so that every matrix product, not only the LSTM's, runs in float32."""
    if device.type != "cpu" or not torch.is_autocast_enabled("cpu"):
        return contextlib.nullcontext()
    if torch.get_autocast_dtype("cpu") != torch.bfloat16 or cpu_bf16_allowed(AUTOCAST_SOURCE):
        return contextlib.nullcontext()
    return torch.autocast("cpu", enabled=False)


def float32_forward_where_bf16_is_emulated(forward: Callable) -> Callable:
    """Run a model's `forward` with a CPU bfloat16 autocast turned off (a warning once) where the CPU has no native
    bfloat16: every matrix product, the decoder's and the head's too, then runs in float32
    (`float32_where_bf16_is_emulated`)."""

    @functools.wraps(forward)
    def run(self, *args, **kwargs):
        with float32_where_bf16_is_emulated(self.device):
            return forward(self, *args, **kwargs)

    return run


__all__ = [
    "float32_forward_where_bf16_is_emulated",
    "FORCE_BF16_ENV",
    "bf16_forced",
    "bf16_is_native",
    "cpu_bf16_allowed",
    "cpu_bf16_is_native",
    "cpu_summary",
    "float32_where_bf16_is_emulated",
]
