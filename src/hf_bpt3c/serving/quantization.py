"""int8 inference on CPU: `quantize_for_cpu(model)`.

Every LSTM layer and every `Linear` of the classifier head multiply in int8: weights quantized once, symmetric,
one scale per output channel; activations quantized on the fly (dynamic quantization), one scale per product.
The model's own modules are swapped for int8 ones here (`Int8LstmLayer` for `AwdLstmLayer`, `Int8Linear` for the
head's `nn.Linear`): the core that ships with every saved model knows nothing of int8.
PyTorch's fbgemm / oneDNN int8 kernels have AVX2 paths, so this is the speed-up available on every x86 CPU,
bfloat16 only where it is native. BPT3C itself is unchanged: same chunks, same state carrying, same pooling.
An ensemble (`AwdLstmEnsembleForSequenceClassification`) is quantized member by member; its mean rule is unchanged.

How it compares with float32 and bfloat16 on the CPU at hand: `benchmarks/bpt3c_speed.py` (speed, agreement on a
random model) and `benchmarks/serving_accuracy.py` (agreement and accuracy of a trained classifier).
"""

from __future__ import annotations

import copy
import types
import warnings

import torch
from torch import nn

from ..models.awd_lstm.modeling_awd_lstm import AwdLstmLayer, AwdLstmPreTrainedModel
from ..models.awd_lstm.modeling_awd_lstm_ensemble import AwdLstmEnsembleForSequenceClassification

INT8_ENGINES = ("x86", "fbgemm", "onednn")  # the engines whose dynamic int8 products take per-channel weights


def int8_linear_weight(weight: torch.Tensor, bias: torch.Tensor | None = None) -> object:
    """`weight` `(out, in)` quantized to int8, symmetric, one scale per output row (max |w| / 127), packed with
    `bias` for `torch.ops.quantized.linear_dynamic` (which quantizes each input on the fly, one scale per call)."""
    weight = weight.detach().float()
    scales = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12).double()  # (out,)
    zero_points = torch.zeros(weight.size(0), dtype=torch.long)
    with warnings.catch_warnings():  # PyTorch has deprecated quantized tensors; its int8 kernels still take them
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*deprecated")
        qweight = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)
    return torch.ops.quantized.linear_prepack(qweight, None if bias is None else bias.detach().float())


def int8_lstm_cell_params(layer: AwdLstmLayer, reduce_range: bool = True) -> object:
    """The layer's weights packed for `torch.quantized_lstm` (torch's CellParams: both matrices int8 with per-row
    scales, the biases in float32). reduce_range: quantize the activations to 7 bits, which keeps fbgemm's 16-bit
    pairwise sums from saturating on CPUs without VNNI."""
    weight_ih, weight_hh, bias_ih, bias_hh = (
        t.detach().float() for t in (layer.weight_ih, layer.weight_hh, layer.bias_ih, layer.bias_hh)
    )
    return torch.ops.quantized.make_quantized_cell_params_dynamic(
        int8_linear_weight(weight_ih, bias_ih), int8_linear_weight(weight_hh, bias_hh), bias_ih, bias_hh, reduce_range
    )


def _check_conversion(fn) -> None:
    """Refuse a conversion (`.half()`, `.bfloat16()`, `.double()`, `.to(dtype or device)`, `.cuda()`) of an int8
    model before it changes anything: its packed int8 weights compute in float32 on the CPU only. `fn` is the
    conversion `nn.Module._apply` would run on each tensor; it is tried on a float32 CPU scalar."""
    probe = torch.zeros((), dtype=torch.float32)
    try:
        converted = fn(probe)
    except Exception:  # e.g. .cuda() without CUDA: refused below as any other conversion
        converted = None
    if not isinstance(converted, torch.Tensor) or converted.dtype != torch.float32 or converted.device.type != "cpu":
        raise TypeError(
            "an int8 model (quantize_for_cpu) computes in float32 on the CPU: it cannot be converted with .half(), "
            ".bfloat16(), .double(), .cuda() or .to(another dtype or device). Convert the float model instead, or "
            "quantize it again after converting it back to float32 on the CPU"
        )


def _guarded_apply(model: nn.Module, fn, recurse: bool = True):
    """`model._apply` of a model returned by `quantize_for_cpu`: the conversion is checked before any tensor of
    the model is converted (so a refused `.half()` leaves the model as it was)."""
    _check_conversion(fn)
    return type(model)._apply(model, fn, recurse)


def _cast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return x if x.dtype == dtype else x.to(dtype)


class Int8LstmLayer(AwdLstmLayer):
    """An `AwdLstmLayer` computing with `torch.quantized_lstm` (inference only): float32 in and out, the input
    projection of a whole chunk one int8 product, then one per time step for the recurrence.

    Keeps the float parameters (frozen), so that the model's `state_dict` and `save_pretrained` are those of the
    float model; `forward` and `forward_packed` take the same arguments as the float layer's.
    """

    def __init__(self, layer: AwdLstmLayer, reduce_range: bool = True):
        nn.Module.__init__(self)
        self.input_size, self.hidden_size, self.weight_dropout = layer.input_size, layer.hidden_size, 0.0
        self.weight_ih, self.weight_hh = layer.weight_ih, layer.weight_hh
        self.bias_ih, self.bias_hh = layer.bias_ih, layer.bias_hh
        self._cell_params = int8_lstm_cell_params(layer, reduce_range)

    def recurrent_mask(self) -> None:
        return None  # no DropConnect: inference only

    def _apply(self, fn, recurse: bool = True):
        _check_conversion(fn)
        return super()._apply(fn, recurse)

    def forward(self, x, state, keep=None, compute_dtype=None):
        """x: `(batch, seq, input_size)`, state `(h, c)` each `(batch, hidden_size)` -> output and final `(h, c)`."""
        return self._run(x, state, None)

    def forward_packed(self, data, batch_sizes, state, keep=None, compute_dtype=None):
        """The same on a packed sequence: `data` `(total_tokens, input_size)` in `PackedSequence` order."""
        return self._run(data, state, batch_sizes)

    def _run(self, x: torch.Tensor, state, batch_sizes: torch.Tensor | None):
        if self.training or (torch.is_grad_enabled() and x.requires_grad):
            raise ValueError("an int8 model (quantize_for_cpu) runs inference only: call model.eval(), no gradient")
        h0, c0 = state
        hx = (_cast(h0, torch.float32).unsqueeze(0), _cast(c0, torch.float32).unsqueeze(0))
        x32, params = _cast(x, torch.float32), [self._cell_params]
        with torch.autocast("cpu", enabled=False):
            if batch_sizes is None:
                out, h, c = torch.quantized_lstm(
                    x32, hx, params, True, 1, 0.0, False, False, True, dtype=torch.qint8, use_dynamic=True
                )
            else:
                out, h, c = torch.quantized_lstm(
                    x32, batch_sizes, hx, params, True, 1, 0.0, False, False, dtype=torch.qint8, use_dynamic=True
                )
        return _cast(out, x.dtype), (_cast(h[0], h0.dtype), _cast(c[0], c0.dtype))

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, int8 per-channel"


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

    def _apply(self, fn, recurse: bool = True):
        _check_conversion(fn)
        return super()._apply(fn, recurse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", enabled=False):
            return torch.ops.quantized.linear_dynamic(x.float(), self._packed, self.reduce_range)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel"


def quantize_for_cpu(
    model: AwdLstmPreTrainedModel | AwdLstmEnsembleForSequenceClassification, engine: str | None = None
) -> AwdLstmPreTrainedModel | AwdLstmEnsembleForSequenceClassification:
    """A copy of `model` for int8 inference on CPU; `model` itself is left as it is.

    The copy is in eval mode and float32; its LSTM layers run `torch.quantized_lstm` and the classifier head's
    `Linear` layers `torch.ops.quantized.linear_dynamic` (an `AwdLstmForCausalLM`'s decoder stays float32).
    An `AwdLstmEnsembleForSequenceClassification` has each of its members quantized so; its logits are still the
    mean rule of the float ensemble (`mean_prediction_logits`) over the members' int8 logits.
    It serves predictions only: training it raises, converting it (`.half()`, `.to("cuda")`, ...) raises a
    `TypeError` and leaves it as it was, and `save_pretrained` writes the float32 weights (quantize again after
    loading). engine: PyTorch's quantized engine ("x86", "fbgemm" or "onednn"; default: the current
    one, which is "x86" on x86 CPUs), set process-wide in `torch.backends.quantized.engine` as PyTorch does.
    """
    is_ensemble = isinstance(model, AwdLstmEnsembleForSequenceClassification)
    if not (is_ensemble or isinstance(model, AwdLstmPreTrainedModel)):
        raise TypeError(
            "model must be an hf_bpt3c AWD-LSTM model (or an AwdLstmEnsembleForSequenceClassification), "
            f"got {type(model).__name__}"
        )
    if model.device.type != "cpu":
        raise ValueError(f"quantize_for_cpu needs a model on the CPU, got one on {model.device} (call model.cpu())")
    if any(isinstance(m, (Int8LstmLayer, Int8Linear)) for m in model.modules()):
        raise ValueError("model is already quantized (quantize_for_cpu returned it): quantize the float model")
    _use_engine(engine)
    quantized = copy.deepcopy(model).float().eval()
    for member in quantized.members if is_ensemble else [quantized]:
        _quantize_in_place(member)
    quantized.eval().requires_grad_(False)
    int8_types = (Int8LstmLayer, Int8Linear)
    for module in quantized.modules():  # .half() etc. refused before anything changes, on any part holding int8
        if not isinstance(module, int8_types) and any(isinstance(m, int8_types) for m in module.modules()):
            module._apply = types.MethodType(_guarded_apply, module)
    return quantized


def _quantize_in_place(model: AwdLstmPreTrainedModel) -> None:
    """Swap a float32 model's LSTM layers and classifier head `Linear`s for their int8 versions."""
    encoder = model.base_model
    encoder.layers = nn.ModuleList(Int8LstmLayer(layer) for layer in encoder.layers)
    classifier = getattr(model, "classifier", None)
    if classifier is not None:
        for block in classifier.blocks:
            block.linear = Int8Linear(block.linear)


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
