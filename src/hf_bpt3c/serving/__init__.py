"""Predictions and serving: batched predictions (`prediction`), document embeddings (`embeddings`), the forward +
backward ensemble (`ensemble`), int8 on CPU (`quantization`), ONNX Runtime (`onnx`, needs the `onnx` extra)."""

from .embeddings import embed
from .ensemble import EnsemblePrediction, ensemble_predict
from .quantization import quantize_for_cpu

__all__ = ["EnsemblePrediction", "embed", "ensemble_predict", "quantize_for_cpu"]
