"""int8 inference on CPU: `quantize_for_cpu(model)`.

Every LSTM layer and every `Linear` of the classifier head multiply in int8: weights quantized once, symmetric,
one scale per output channel; activations quantized on the fly (dynamic quantization), one scale per product.
PyTorch's fbgemm / oneDNN int8 kernels have AVX2 paths, so this is the speed-up available on every x86 CPU,
bfloat16 only where it is native. BPT3C itself is unchanged: same chunks, same state carrying, same pooling.

How it compares with float32 and bfloat16 on the CPU at hand: `benchmarks/bpt3c_speed.py` (speed, agreement on a
random model) and `benchmarks/serving_accuracy.py` (agreement and accuracy of a trained classifier).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..models.awd_lstm.lstm_kernels import int8_linear_weight, int8_lstm_weights
from ..models.awd_lstm.modeling_awd_lstm import AwdLstmLayer, AwdLstmPreTrainedModel

INT8_ENGINES = ("x86", "fbgemm", "onednn")  # the engines whose dynamic int8 products take per-channel weights


class Int8Linear(nn.Module):
    """An `nn.Linear` computing in int8 (weights per-channel int8, input quantized per call).

    x: `(..., in_features)` -> `(..., out_features)` float32. Keeps the float `weight` (and `bias`) as frozen
    parameters, so that the model's `state_dict` and `save_pretrained` are those of the float model.
    """

    def __init__(self, linear: nn.Linear, reduce_range: bool = True):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.reduce_range = reduce_range
        self.weight, self.bias = linear.weight, linear.bias
        self._packed = int8_linear_weight(linear.weight, linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", enabled=False):
            return torch.ops.quantized.linear_dynamic(x.float(), self._packed, self.reduce_range)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel"


def quantize_for_cpu(model: AwdLstmPreTrainedModel, engine: str | None = None) -> AwdLstmPreTrainedModel:
    """A copy of `model` for int8 inference on CPU; `model` itself is left as it is.

    The copy is in eval mode and float32; its LSTM layers run `torch.quantized_lstm` and the classifier head's
    `Linear` layers `torch.ops.quantized.linear_dynamic` (an `AwdLstmForCausalLM`'s decoder stays float32).
    It serves predictions only: training it raises, and `save_pretrained` writes the float32 weights (quantize
    again after loading). engine: PyTorch's quantized engine ("x86", "fbgemm" or "onednn"; default: the current
    one, which is "x86" on x86 CPUs), set process-wide in `torch.backends.quantized.engine` as PyTorch does.
    """
    if not isinstance(model, AwdLstmPreTrainedModel):
        raise TypeError(f"model must be an hf_bpt3c AWD-LSTM model, got {type(model).__name__}")
    if model.device.type != "cpu":
        raise ValueError(f"quantize_for_cpu needs a model on the CPU, got one on {model.device} (call model.cpu())")
    if any(isinstance(m, AwdLstmLayer) and m.int8_weights is not None for m in model.modules()):
        raise ValueError("model is already quantized (quantize_for_cpu returned it): quantize the float model")
    _use_engine(engine)
    quantized = copy.deepcopy(model).float().eval()
    for module in quantized.modules():
        if isinstance(module, AwdLstmLayer):
            module.int8_weights = int8_lstm_weights(
                (module.weight_ih, module.weight_hh, module.bias_ih, module.bias_hh)
            )
    classifier = getattr(quantized, "classifier", None)
    if classifier is not None:
        for block in classifier.blocks:
            block.linear = Int8Linear(block.linear)
    quantized.requires_grad_(False)
    return quantized


def _use_engine(engine: str | None) -> None:
    supported = [e for e in INT8_ENGINES if e in torch.backends.quantized.supported_engines]
    if not supported:
        raise RuntimeError(
            "this PyTorch build has no x86 int8 engine (fbgemm, x86 or onednn): int8 inference needs an x86 CPU "
            f"build; supported here: {torch.backends.quantized.supported_engines}"
        )
    if engine is None:
        if torch.backends.quantized.engine not in supported:
            torch.backends.quantized.engine = supported[0]
        return
    if engine not in supported:
        raise ValueError(f"engine must be one of {supported}, got {engine!r}")
    torch.backends.quantized.engine = engine
