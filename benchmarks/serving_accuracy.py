"""Serving paths of a trained classifier: accuracy, agreement with float32, and time, on the IMDb sample.

Usage (from the repository root, after the main job `python examples/run_ulmfit.py` wrote runs/imdb):
    python benchmarks/serving_accuracy.py                       # runs/imdb, the sample's 200 validation reviews
    python benchmarks/serving_accuracy.py --model DIR --threads 1

Paths: PyTorch float32, bfloat16 (where the CPU multiplies bfloat16 natively), int8 (`hf_bpt3c.quantize_for_cpu`),
ONNX Runtime float32 and int8 (`hf-bpt3c export-onnx`, when onnxruntime is installed), and float32 under
`torch.compile` (`--compile`). Each reads the same documents in batches of `--batch-size`, longest first; time is
the best of `--reps` passes after a warm-up pass. Agreement: the share of documents whose predicted label equals
float32's; max |diff|: the largest logit difference from float32.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import hf_bpt3c
from hf_bpt3c import AwdLstmForSequenceClassification, AwdLstmTokenizer
from hf_bpt3c.models.awd_lstm.hardware import bf16_is_native, cpu_summary
from hf_bpt3c.serving.ensemble import batched_logits

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_SAMPLE = REPO_ROOT.parent / "shared" / "data" / "imdb_sample" / "texts.csv"


def validation_set(csv: Path | None) -> tuple[list[str], np.ndarray]:
    """Texts and label names of the sample's `is_valid` rows."""
    csv = csv or (SHARED_SAMPLE if SHARED_SAMPLE.exists() else hf_bpt3c.training.data.imdb_sample() / "texts.csv")
    frame = pd.read_csv(csv)
    frame = frame[frame.is_valid.astype(str).str.lower().isin(["true", "1"])]
    return frame.text.tolist(), frame.label.to_numpy()


def torch_path(model, tokenizer, input_ids: list[list[int]], batch_size: int) -> Callable[[], np.ndarray]:
    def run() -> np.ndarray:
        with torch.inference_mode():
            return batched_logits(model, tokenizer, input_ids, batch_size).numpy()

    return run


def onnx_path(runner, tokenizer, input_ids: list[list[int]], batch_size: int) -> Callable[[], np.ndarray]:
    order = sorted(range(len(input_ids)), key=lambda k: -len(input_ids[k]))

    def run() -> np.ndarray:
        out = np.zeros((len(input_ids), runner.config.num_labels), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = tokenizer.pad({"input_ids": [input_ids[k] for k in rows]}, return_tensors="np")
            out[rows] = runner(batch["input_ids"], attention_mask=batch["attention_mask"])
        return out

    return run


def timed(run: Callable[[], np.ndarray], reps: int) -> tuple[np.ndarray, float]:
    logits = run()  # warm-up (allocator, thread pool, compilation)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        logits = run()
        best = min(best, time.perf_counter() - start)
    return logits, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "runs" / "imdb", help="a saved classifier")
    parser.add_argument("--data", type=Path, help="texts.csv of the IMDb sample (default: the shared copy)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also float32 under torch.compile")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    texts, labels = validation_set(args.data)
    tokenizer = AwdLstmTokenizer.from_pretrained(args.model)
    model = AwdLstmForSequenceClassification.from_pretrained(args.model).eval()
    input_ids = tokenizer(texts)["input_ids"]
    label2id = {name: int(i) for i, name in model.config.id2label.items()}
    label_ids = np.array([label2id[name] for name in labels])

    paths = {"PyTorch float32": torch_path(model, tokenizer, input_ids, args.batch_size)}
    if bf16_is_native("cpu"):
        bf16 = AwdLstmForSequenceClassification.from_pretrained(args.model, compute_dtype="bfloat16").eval()
        paths["PyTorch bfloat16"] = torch_path(bf16, tokenizer, input_ids, args.batch_size)
    paths["PyTorch int8"] = torch_path(hf_bpt3c.quantize_for_cpu(model), tokenizer, input_ids, args.batch_size)
    if args.compile:
        compiled = torch.compile(model)
        paths["PyTorch float32, torch.compile"] = torch_path(compiled, tokenizer, input_ids, args.batch_size)
    workdir = tempfile.TemporaryDirectory()
    try:
        from hf_bpt3c.serving.onnx import OnnxClassifier, export_onnx

        export_onnx(args.model, Path(workdir.name) / "onnx", int8=True)
        for int8 in (False, True):
            runner = OnnxClassifier(Path(workdir.name) / "onnx", int8=int8, intra_op_num_threads=args.threads)
            name = f"ONNX Runtime {'int8' if int8 else 'float32'}"
            paths[name] = onnx_path(runner, tokenizer, input_ids, args.batch_size)
    except ImportError as error:
        print(f"# ONNX rows skipped: {error} (pip install 'hf_bpt3c[onnx]')")

    results = {name: timed(run, args.reps) for name, run in paths.items()}
    reference = results["PyTorch float32"][0]
    tokens = sum(len(ids) for ids in input_ids)
    print(f"\n## Serving paths of {args.model.name}: {len(texts)} IMDb-sample validation reviews, {tokens:,} tokens\n")
    print(f"{cpu_summary()}; {args.threads} thread(s), batch {args.batch_size}, best of {args.reps}.\n")
    print("| path | accuracy | agreement with float32 | max abs logit diff | seconds | tokens/s | speed vs float32 |")
    print("|---|---|---|---|---|---|---|")
    base_seconds = results["PyTorch float32"][1]
    for name, (logits, seconds) in results.items():
        accuracy = (logits.argmax(1) == label_ids).mean()
        agreement = (logits.argmax(1) == reference.argmax(1)).mean()
        diff = np.abs(logits - reference).max()
        print(
            f"| {name} | {100 * accuracy:.1f}% | {100 * agreement:.1f}% | {diff:.2e} | {seconds:.2f} | "
            f"{tokens / seconds:,.0f} | {base_seconds / seconds:.2f}x |"
        )
    workdir.cleanup()


if __name__ == "__main__":
    main()
