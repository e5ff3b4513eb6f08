"""BPT3C speed and memory, fastai 2.8 vs hf_bpt3c, on the same batches, alternating, side by side.

Usage (from the repository root):
    python benchmarks/bpt3c_speed.py            # full run (< 30 min on 2 CPU cores)
    python benchmarks/bpt3c_speed.py --quick    # < 5 min: fewer workloads, a 1/20 IMDb subsample
    python benchmarks/bpt3c_speed.py --imdb-every 1   # the IMDb rows on the whole sample (about 10 min more)
    python benchmarks/bpt3c_speed.py --smoke    # seconds: tiny sizes, every code path (CI)
    python benchmarks/bpt3c_speed.py --dtype fp32|bf16|both|auto   # ours' compute dtypes (default auto)
    python benchmarks/bpt3c_speed.py --no-int8   # without the int8 and ONNX Runtime inference rows

The first lines printed name the CPU (its kernel capability, and whether it multiplies bfloat16 natively). `auto` runs
ours in fp32, and in bf16 too where bf16 is native (AVX-512 BF16, AMX, a CUDA GPU with bf16): on an AVX2-only CPU
bf16 is emulated, 30x slower than fp32, and the model itself would compute in fp32 instead. `--dtype bf16` or `both`
on such a CPU measures real bf16 anyway (HF_BPT3C_FORCE_BF16=1 is set for the workers).

fastai's `get_text_classifier(AWD_LSTM, ...)` and our `AwdLstmForSequenceClassification` get the same sizes
(ULMFiT: emb 400, hidden 1152, 3 layers, vocabulary 8000, bptt 72, max_len 1440, fastai's classifier dropouts).
Each framework and mode (train / infer) lives in its own worker process; the workers are driven one repetition at
a time in turn (fastai, ours fp32, ours bf16, fastai, ...) so that load from other processes hits all of them
alike. A training step is forward, cross-entropy, backward, AdamW step with dropout on; inference is an eval-mode
forward without autograd. Throughput counts real (non-padding) tokens per second (median over repetitions).
Peak memory is the peak RSS during the request (CUDA: peak allocated memory), after returning freed memory to
the OS and resetting the kernel's peak mark; "step" memory is that peak minus the RSS just before.
fastai always runs in float32 (its reference behaviour); ours in float32 and/or `compute_dtype="bfloat16"`.
Inference also has int8 rows, which run on every x86 CPU: PyTorch's (`hf_bpt3c.quantize_for_cpu`) and ONNX
Runtime's float32 and int8 (`hf_bpt3c.serving.onnx`, when onnxruntime is installed), with their agreement with
ours float32.
On CUDA the same script runs on the GPU (cuDNN; ours in bf16 runs the LSTM on bf16 copies of its arguments).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
IMDB_CSV = REPO_ROOT.parent / "shared" / "data" / "imdb_sample" / "texts.csv"
PAD_ID = 1


@dataclass
class Plan:
    """Sizes and workloads of one run."""

    name: str
    vocab: int = 8000
    emb: int = 400
    hidden: int = 1152
    layers: int = 3
    bptt: int = 72
    max_len: int = 1440
    uniform_lengths: list[int] = field(default_factory=lambda: [256, 1024, 4096])
    uniform_batch: int = 16
    imdb_batch: int = 32
    # keep every n-th document of the length-sorted sample (same length mix; 1: the whole sample, 318k tokens,
    # whose training rows alone take 16 minutes per repetition here)
    imdb_every: int = 2
    imdb_max_docs: int | None = None
    imdb_truncate: int | None = None
    sweep_lengths: list[int] = field(default_factory=lambda: [1024, 4096, 16384, 65536])
    sweep_batch: int = 4
    fastai_sweep_max: int = 16384  # fastai's sweep stops here (its 64k step alone takes minutes)
    reps: int = 2
    imdb_reps: int = 1  # repetitions of the IMDb rows (each already averages over many batches)
    imdb_parts: int = 4  # the IMDb rows run in parts (every n-th batch), the frameworks taking turns part by part
    matmul_size: int = 2048
    threads: int | None = None  # torch threads per worker (None: all cores)


PLANS = {
    "full": Plan("full"),
    "quick": Plan(
        "quick",
        uniform_lengths=[256, 1024],
        imdb_every=20,
        sweep_lengths=[1024, 2048],
    ),
    "smoke": Plan(
        "smoke",
        vocab=200,
        emb=16,
        hidden=24,
        layers=2,
        bptt=8,
        max_len=32,
        uniform_lengths=[20, 50],
        uniform_batch=4,
        imdb_batch=8,
        imdb_max_docs=16,
        imdb_truncate=60,
        sweep_lengths=[40, 100],
        sweep_batch=2,
        fastai_sweep_max=100,
        reps=1,
        imdb_every=1,
        matmul_size=256,
        threads=1,
    ),
}


def flops_per_token(plan: Plan) -> float:
    """Forward FLOPs per token of the LSTM stack: 2 * 4h * (in + h) per layer (the head is negligible)."""
    sizes = [plan.emb] + [plan.hidden] * (plan.layers - 1) + [plan.emb]
    return sum(2 * 4 * h * (n_in + h) for n_in, h in zip(sizes[:-1], sizes[1:]))


# ----------------------------------------------------------------------------------------------------------------
# Batches (built identically in every worker from a seed or the tokenized sample)
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Batch:
    """ids `(batch, seq)` in the framework's layout, mask `(batch, seq)` (1 = token), labels `(batch,)`."""

    ids: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor

    @property
    def tokens(self) -> int:
        return int(self.mask.sum())


def uniform_batches(plan: Plan, length: int, batch: int) -> list[Batch]:
    gen = torch.Generator().manual_seed(length)
    ids = torch.randint(9, plan.vocab, (batch, length), generator=gen)
    labels = torch.randint(0, 2, (batch,), generator=gen)
    return [Batch(ids, torch.ones_like(ids), labels)]


def pad_chunk(doc: list[int], width: int, bptt: int) -> list[int]:
    """fastai's `pad_chunk`: whole bptt chunks of padding first, the remainder after the document."""
    n_pad = width - len(doc)
    return [PAD_ID] * (n_pad // bptt * bptt) + doc + [PAD_ID] * (n_pad % bptt)


def document_batches(docs: list[list[int]], labels: list[int], plan: Plan, framework: str) -> list[Batch]:
    """Length-sorted batches (longest first). fastai: `pad_chunk` layout, width a multiple of bptt (what its
    `SentenceEncoder` needs); ours: right padding to the longest document, with an attention mask."""
    order = sorted(range(len(docs)), key=lambda k: -len(docs[k]))
    batches = []
    for start in range(0, len(order), plan.imdb_batch):
        rows = order[start : start + plan.imdb_batch]
        longest = len(docs[rows[0]])
        if framework == "fastai":
            width = -(-longest // plan.bptt) * plan.bptt
            ids = torch.tensor([pad_chunk(docs[k], width, plan.bptt) for k in rows])
            mask = (ids != PAD_ID).long()
        else:
            ids = torch.full((len(rows), longest), PAD_ID)
            mask = torch.zeros(len(rows), longest, dtype=torch.long)
            for row, k in enumerate(rows):
                ids[row, : len(docs[k])], mask[row, : len(docs[k])] = torch.tensor(docs[k]), 1
        batches.append(Batch(ids, mask, torch.tensor([labels[k] for k in rows])))
    return batches


def tokenize_imdb(plan: Plan) -> dict:
    """The IMDb sample tokenized with our tokenizer (vocabulary of at most `plan.vocab` tokens, min_freq 3)."""
    import pandas as pd

    from hf_bpt3c.models.awd_lstm.tokenization_awd_lstm import AwdLstmTokenizer

    frame = pd.read_csv(IMDB_CSV)
    if plan.imdb_max_docs:
        frame = frame.iloc[: plan.imdb_max_docs]
    texts = frame.text.tolist()
    tokenizer = AwdLstmTokenizer.from_texts(texts, max_vocab=plan.vocab, min_freq=3)
    docs = [ids[: plan.imdb_truncate] for ids in tokenizer(texts)["input_ids"]]
    order = sorted(range(len(docs)), key=lambda k: -len(docs[k]))[:: plan.imdb_every]
    labels = (frame.label == "positive").astype(int).tolist()
    return {"docs": [docs[k] for k in order], "labels": [labels[k] for k in order], "vocab": len(tokenizer)}


# ----------------------------------------------------------------------------------------------------------------
# Worker: one framework, one mode
# ----------------------------------------------------------------------------------------------------------------


def build_model(framework: str, plan: Plan, vocab: int) -> torch.nn.Module:
    torch.manual_seed(0)
    if framework == "fastai":
        from fastai.text.all import AWD_LSTM, awd_lstm_clas_config, get_text_classifier

        config = dict(awd_lstm_clas_config, emb_sz=plan.emb, n_hid=plan.hidden, n_layers=plan.layers)
        return get_text_classifier(
            AWD_LSTM, vocab, 2, seq_len=plan.bptt, config=config, drop_mult=0.5, max_len=plan.max_len
        )
    from hf_bpt3c import AwdLstmConfig, AwdLstmForSequenceClassification

    config = AwdLstmConfig.for_classification(
        vocab_size=vocab, embedding_size=plan.emb, hidden_size=plan.hidden, num_hidden_layers=plan.layers,
        bptt=plan.bptt, max_len=plan.max_len, num_labels=2,
    )  # fmt: skip
    return AwdLstmForSequenceClassification(config)


class Memory:
    """Peak memory of a request: RSS on CPU (Linux), allocated memory on CUDA."""

    def __init__(self, device: torch.device):
        self.device = device
        self._libc = ctypes.CDLL("libc.so.6") if device.type == "cpu" and sys.platform == "linux" else None

    def reset(self) -> float:
        """Return freed memory, reset the peak mark; returns the current memory in MB."""
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            return torch.cuda.memory_allocated() / 2**20
        if self._libc is None:
            return 0.0
        self._libc.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return self._status_mb("VmRSS")

    def peak(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated() / 2**20
        return self._status_mb("VmHWM") if self._libc is not None else 0.0

    @staticmethod
    def _status_mb(name: str) -> float:
        with open("/proc/self/status") as f:
            return int(next(line for line in f if line.startswith(name + ":")).split()[1]) / 1024


SERVING = ("int8", "onnx-fp32", "onnx-int8")  # inference-only versions of ours, each in a worker of its own


class Worker:
    """Holds one model (fastai or ours) in one mode and runs requests `{"workload", "dtype"}`. Modes: "train",
    "infer", or one of `SERVING` (ours made int8 or exported to ONNX Runtime; the float model is then dropped, so
    that the worker's memory is that of the serving model)."""

    def __init__(self, framework: str, mode: str, plan: Plan, imdb: dict | None):
        self.framework, self.mode, self.plan, self.imdb = framework, mode, plan, imdb
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        vocab = max(plan.vocab, imdb["vocab"]) if imdb else plan.vocab
        self.model = build_model(framework, plan, vocab).to(self.device)
        self.model.train(mode == "train")
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4) if mode == "train" else None
        self.memory = Memory(self.device)
        self._export_dir = None
        if mode in SERVING:
            self.model = self.serving_model(mode)

    def batches(self, workload: str) -> list[Batch]:
        kind, _, arg = workload.partition(":")
        if kind == "imdb":  # "imdb" or part k of n, "imdb:k/n" (every n-th batch from the k-th)
            batches = document_batches(self.imdb["docs"], self.imdb["labels"], self.plan, self.framework)
            part, _, n_parts = arg.partition("/")
            return batches[int(part) :: int(n_parts)] if arg else batches
        batch = self.plan.sweep_batch if kind == "sweep" else self.plan.uniform_batch
        return uniform_batches(self.plan, int(arg), batch)

    def run(self, workload: str, dtype: str) -> dict:
        batches = [
            Batch(b.ids.to(self.device), b.mask.to(self.device), b.labels.to(self.device))
            for b in self.batches(workload)
        ]
        if self.framework == "ours" and dtype in ("fp32", "bf16"):
            self.model.config.compute_dtype = "bfloat16" if dtype == "bf16" else "float32"
        self.dtype = dtype
        before = self.memory.reset()
        self._sync()
        start = time.perf_counter()
        logits = [self.step(b) for b in batches]
        self._sync()
        seconds = time.perf_counter() - start
        result = {"seconds": seconds, "tokens": sum(b.tokens for b in batches), "peak_mb": self.memory.peak()}
        # tokens whose forward is also back-propagated (each document's last max_len): 2 more forwards' FLOPs each
        result["grad_tokens"] = sum(int(b.mask.sum(1).clamp(max=self.plan.max_len).sum()) for b in batches)
        result["step_mb"] = result["peak_mb"] - before
        if self.mode != "train" and workload.partition(":")[0] == "imdb":
            result["logits"] = torch.cat(logits).float().tolist()
        return result

    def step(self, batch: Batch) -> torch.Tensor:
        if self.mode != "train":
            with torch.no_grad():
                return self.forward(batch).detach().cpu()
        logits = self.forward(batch)
        torch.nn.functional.cross_entropy(logits.float(), batch.labels).backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return logits.detach().cpu()

    def forward(self, batch: Batch) -> torch.Tensor:
        if self.framework == "fastai":
            return self.model(batch.ids)[0]
        if self.mode.startswith("onnx"):
            return torch.from_numpy(self.model(batch.ids.numpy(), attention_mask=batch.mask.numpy()))
        return self.model(batch.ids, attention_mask=batch.mask).logits

    def serving_model(self, mode: str):
        """Ours as `mode`: the int8 copy (`quantize_for_cpu`) or an ONNX Runtime runner of its export."""
        import tempfile

        import hf_bpt3c

        self.model.config.compute_dtype = "float32"
        if mode == "int8":
            return hf_bpt3c.quantize_for_cpu(self.model)
        from hf_bpt3c.serving.onnx import OnnxClassifier, export_onnx

        self._export_dir = tempfile.TemporaryDirectory()
        export_onnx(self.model, Path(self._export_dir.name) / "onnx", int8=mode == "onnx-int8")
        threads = self.plan.threads or torch.get_num_threads()
        return OnnxClassifier(
            Path(self._export_dir.name) / "onnx", int8=mode == "onnx-int8", intra_op_num_threads=threads
        )

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def worker_main(framework: str, mode: str, plan: Plan, imdb_path: str | None) -> None:
    """Serve JSON requests on stdin, one JSON answer per line on stdout."""
    if plan.threads:
        torch.set_num_threads(plan.threads)
    imdb = json.loads(Path(imdb_path).read_text()) if imdb_path else None
    worker = Worker(framework, mode, plan, imdb)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        print(json.dumps(worker.run(request["workload"], request["dtype"])), flush=True)


# ----------------------------------------------------------------------------------------------------------------
# Orchestrator
# ----------------------------------------------------------------------------------------------------------------


class WorkerProcess:
    """A worker subprocess; `request` sends one request and waits for its answer."""

    def __init__(self, framework: str, mode: str, plan: Plan, imdb_path: Path):
        command = [sys.executable, __file__, "--worker", f"{framework}:{mode}", "--plan", json.dumps(asdict(plan))]
        command += ["--imdb", str(imdb_path)]
        self.name = f"{framework}:{mode}"
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def wait_ready(self, warm_up: str, dtypes: list[str]) -> None:
        """Wait for the worker's model, then run a short warm-up request in each dtype (allocator, thread pool,
        kernels)."""
        self._read()
        for dtype in dtypes:
            self.request(warm_up, dtype)

    def request(self, workload: str, dtype: str) -> dict:
        self.process.stdin.write(json.dumps({"workload": workload, "dtype": dtype}) + "\n")
        self.process.stdin.flush()
        return self._read()

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name} exited with code {self.process.wait()}")
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def matmul_peak(dtype: torch.dtype, size: int, device: torch.device) -> float:
    """Best-of-20 GFLOP/s of a square matmul of `size` in `dtype`."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    best = float("inf")
    for _ in range(20):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def matmul_peaks(dtypes: list[str], size: int, device: torch.device) -> dict[str, float]:
    return {d: matmul_peak(torch.float32 if d == "fp32" else torch.bfloat16, size, device) for d in dtypes}


def fastai_available() -> bool:
    try:
        import fastai.text.all  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class Result:
    tokens_per_s: float
    peak_mb: float
    step_mb: float
    grad_fraction: float  # share of the tokens that are back-propagated (training)
    logits: list | None = None


def measure(
    workers: dict, runs: list[tuple[str, str]], workload: str, reps: int, parts: list[str] | None = None
) -> dict[tuple[str, str], Result]:
    """Run `workload` `reps` times on each (worker, dtype), alternating; median throughput, max peak. With `parts`
    (workloads that together make `workload`) the runs take turns part by part; a repetition sums its parts."""
    answers: dict[tuple[str, str], list[dict]] = {run: [] for run in runs}
    for _ in range(reps):
        part_answers = {run: [] for run in runs}
        for part in parts or [workload]:
            for name, dtype in runs:
                part_answers[(name, dtype)].append(workers[name].request(part, dtype))
        for run, pieces in part_answers.items():
            answers[run].append(combine(pieces))
    results = {}
    for run, runs_answers in answers.items():
        seconds = statistics.median(a["seconds"] for a in runs_answers)
        results[run] = Result(
            runs_answers[0]["tokens"] / seconds,
            max(a["peak_mb"] for a in runs_answers),
            max(a["step_mb"] for a in runs_answers),
            runs_answers[0]["grad_tokens"] / runs_answers[0]["tokens"],
            runs_answers[-1].get("logits"),
        )
        times = ", ".join(f"{a['seconds']:.1f}" for a in runs_answers)
        print(
            f"  {workload} {run[0]} {run[1]}: {results[run].tokens_per_s:,.0f} tok/s (runs {times} s), "
            f"peak {results[run].peak_mb:,.0f} MB, step {results[run].step_mb:,.0f} MB",
            file=sys.stderr,
            flush=True,
        )
    return results


def combine(pieces: list[dict]) -> dict:
    """The answers of a workload's parts as one answer: times and token counts summed, peaks the highest."""
    total = {key: sum(p[key] for p in pieces) for key in ("seconds", "tokens", "grad_tokens")}
    total |= {key: max(p[key] for p in pieces) for key in ("peak_mb", "step_mb")}
    if "logits" in pieces[0]:
        total["logits"] = [row for p in pieces for row in p["logits"]]
    return total


def ratio(ours: float, theirs: float | None) -> str:
    return f"{ours / theirs:.2f}x" if theirs else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--dtype", choices=["fp32", "bf16", "both", "auto"], default="auto")
    parser.add_argument("--imdb-every", type=int, help="IMDb rows on every n-th document of the length-sorted sample")
    parser.add_argument("--no-int8", action="store_true", help="skip the int8 and ONNX Runtime inference rows")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--plan", help=argparse.SUPPRESS)
    parser.add_argument("--imdb", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        framework, mode = args.worker.split(":")
        worker_main(framework, mode, Plan(**json.loads(args.plan)), args.imdb)
        return
    plan = PLANS["smoke" if args.smoke else "quick" if args.quick else "full"]
    if args.imdb_every is not None:
        if args.imdb_every < 1:
            parser.error(f"--imdb-every must be a positive integer, got {args.imdb_every}")
        plan = replace(plan, imdb_every=args.imdb_every)
    # imported here, not at the top: a fastai worker process must not load transformers (its memory is measured)
    from hf_bpt3c.models.awd_lstm.hardware import FORCE_BF16_ENV, bf16_is_native, cpu_summary  # noqa: I001

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"# {cpu_summary()}" + (f" | CUDA {torch.cuda.get_device_name()}" if device.type == "cuda" else ""))
    dtypes, force, note = choose_dtypes(args.dtype, bf16_is_native(device), device.type)
    if note:
        print(f"# {note}")
    if force:
        os.environ[FORCE_BF16_ENV] = "1"  # the workers inherit it: real bf16 numerics, as asked
    sys.stdout.flush()
    run_benchmark(plan, dtypes, [] if args.no_int8 or device.type != "cpu" else serving_dtypes())


def ours_worker(mode: str, dtype: str) -> str:
    """The name of our worker that runs `dtype` in `mode` (the serving versions have workers of their own)."""
    return f"ours:{dtype}" if dtype in SERVING else f"ours:{mode}"


def serving_dtypes() -> list[str]:
    """The inference-only rows: PyTorch int8, and ONNX Runtime float32 / int8 where onnxruntime is installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        print("# ONNX Runtime rows skipped: pip install 'hf_bpt3c[onnx]'")
        return ["int8"]
    return ["int8", "onnx-fp32", "onnx-int8"]


def choose_dtypes(requested: str, native: bool, device: str) -> tuple[list[str], bool, str]:
    """Ours' compute dtypes for `--dtype requested`, whether bf16 must be forced, and a note to print."""
    if requested == "auto":
        if native:
            return ["fp32", "bf16"], False, ""
        return ["fp32"], False, f"bf16 rows skipped: bfloat16 is not native on this {device} (--dtype both runs them)"
    dtypes = ["fp32", "bf16"] if requested == "both" else [requested]
    if "bf16" in dtypes and not native:
        return dtypes, True, "bf16 rows run emulated bfloat16 (not native here): expect them far slower than fp32"
    return dtypes, False, ""


def run_benchmark(plan: Plan, dtypes: list[str], serving: list[str]) -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    started = time.perf_counter()
    peaks = matmul_peaks(dtypes, plan.matmul_size, device)  # again at the end: a busy moment only lowers it
    imdb_path = Path(f"/tmp/bpt3c_speed_imdb_{plan.name}.json")
    imdb = tokenize_imdb(plan)
    imdb_path.write_text(json.dumps(imdb))
    n_parts = min(plan.imdb_parts, -(-len(imdb["docs"]) // plan.imdb_batch))
    imdb_parts = [f"imdb:{k}/{n_parts}" for k in range(n_parts)]
    frameworks = ["fastai", "ours"] if fastai_available() else ["ours"]
    workers = {
        f"{fw}:{mode}": WorkerProcess(fw, mode, plan, imdb_path) for fw in frameworks for mode in ("train", "infer")
    }
    workers |= {f"ours:{mode}": WorkerProcess("ours", mode, plan, imdb_path) for mode in serving}
    rows, sweep = [], []
    try:
        mode_dtypes = {"train": dtypes, "infer": dtypes + serving}
        for name, worker in workers.items():
            framework, mode = name.split(":")
            warm_dtypes = ["fp32"] if framework == "fastai" else [mode] if mode in SERVING else dtypes
            worker.wait_ready(f"sweep:{2 * plan.bptt}", warm_dtypes)
        for mode in ("train", "infer"):
            runs = [("fastai:" + mode, "fp32")] if "fastai" in frameworks else []
            runs += [(ours_worker(mode, d), d) for d in mode_dtypes[mode]]
            for workload in [f"uniform:{n}" for n in plan.uniform_lengths]:
                rows.append((workload, mode, measure(workers, runs, workload, plan.reps)))
                print(f"[{time.perf_counter() - started:6.0f}s] {mode} {workload} done", file=sys.stderr, flush=True)
            rows.append(("imdb", mode, measure(workers, runs, "imdb", plan.imdb_reps, imdb_parts)))
            print(f"[{time.perf_counter() - started:6.0f}s] {mode} imdb done", file=sys.stderr, flush=True)
        for length in plan.sweep_lengths:
            runs = [("ours:train", d) for d in dtypes]
            if "fastai" in frameworks and length <= plan.fastai_sweep_max:
                runs.insert(0, ("fastai:train", "fp32"))
            sweep.append((length, measure(workers, runs, f"sweep:{length}", 1)))
            print(f"[{time.perf_counter() - started:6.0f}s] sweep {length} done", file=sys.stderr, flush=True)
    finally:
        for worker in workers.values():
            worker.close()
    peaks = {d: max(peak, peaks[d]) for d, peak in matmul_peaks(dtypes, plan.matmul_size, device).items()}
    report(plan, device, mode_dtypes, peaks, imdb, rows, sweep, time.perf_counter() - started)


def report(
    plan: Plan, device: torch.device, mode_dtypes: dict, peaks: dict, imdb: dict, rows: list, sweep: list, wall: float
):
    """Print the markdown tables (throughput, memory, FLOP-bound fractions, memory sweep, bf16 agreement)."""
    from hf_bpt3c.models.awd_lstm import hardware

    fwd_flops = flops_per_token(plan)
    dtypes = mode_dtypes["train"]
    threads = plan.threads or torch.get_num_threads()
    print(f"\n## BPT3C speed: fastai 2.8 vs hf_bpt3c ({plan.name} run, {device.type}, {threads} threads)\n")
    print(f"{hardware.cpu_summary()}.\n")
    print(
        f"Sizes: emb {plan.emb}, hidden {plan.hidden}, {plan.layers} layers, vocabulary {plan.vocab}, "
        f"bptt {plan.bptt}, max_len {plan.max_len}; {fwd_flops / 1e6:.1f} MFLOP/token forward, 3x for a training "
        "step on tokens that back-propagate. Matmul peak: "
        + ", ".join(f"{d} {peaks[d]:.0f} GFLOP/s" for d in dtypes)
        + ". Ratios are ours/fastai in the same run; '% bound' is the throughput as a fraction of the FLOP-bound "
        "limit at that dtype's matmul peak (a training step: one forward for every token, plus two for the backward "
        "of each document's last max_len tokens; earlier tokens run no backward). Inference rows int8 (PyTorch, "
        "`quantize_for_cpu`), onnx-fp32 and onnx-int8 (ONNX Runtime, `hf_bpt3c.serving.onnx`) are ours too."
    )
    lengths = [len(doc) for doc in imdb["docs"]]
    sample = f"the first {plan.imdb_max_docs} of the sample" if plan.imdb_max_docs else "the whole sample"
    subset = sample if plan.imdb_every == 1 else f"1 in {plan.imdb_every} of the length-sorted sample"
    print(
        f"Rows: uniform bs {plan.uniform_batch}, median of {plan.reps}; imdb: {len(lengths)} documents ({subset}), "
        f"{sum(lengths):,} tokens, {min(lengths)}-{max(lengths)} per document, bs {plan.imdb_batch}, "
        f"{plan.imdb_reps} repetition(s) in up to {plan.imdb_parts} interleaved parts.\n"
    )
    for mode in ("train", "infer"):
        print_throughput_table(mode, mode_dtypes[mode], [row for row in rows if row[1] == mode], peaks, fwd_flops)

    print(
        f"\nMemory sweep: one training step, batch {plan.sweep_batch}, peak RSS MB (step MB above the process's RSS "
        "before it):\n"
    )
    head = ["document tokens", "fastai"] + [f"ours {d}" for d in dtypes] + [f"ours {d} / fastai" for d in dtypes]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for length, results in sweep:
        base = results.get(("fastai:train", "fp32"))
        mine = [results[("ours:train", d)] for d in dtypes]
        cells = [f"{length:,}", f"{base.peak_mb:,.0f} ({base.step_mb:,.0f})" if base else "not run"]
        cells += [f"{r.peak_mb:,.0f} ({r.step_mb:,.0f})" for r in mine]
        cells += [ratio(r.peak_mb, base and base.peak_mb) for r in mine]
        print("| " + " | ".join(cells) + " |")
    by_length = dict(sweep)
    if 4096 in by_length and sweep[-1][0] > 4096:
        longest = sweep[-1][0]
        for d in dtypes:
            growth = by_length[longest][("ours:train", d)].peak_mb / by_length[4096][("ours:train", d)].peak_mb
            print(f"\nours {d}: peak at {longest:,} tokens = {growth:.2f}x the peak at 4,096 tokens")

    imdb_infer = next(results for workload, mode, results in rows if workload == "imdb" and mode == "infer")
    if "fp32" in mode_dtypes["infer"]:
        fp32 = torch.tensor(imdb_infer[("ours:infer", "fp32")].logits)
        print(f"\nAgreement with ours fp32 (random-weight model, IMDb sample, {len(fp32)} documents):\n")
        for dtype in mode_dtypes["infer"]:
            if dtype != "fp32":
                other = torch.tensor(imdb_infer[(ours_worker("infer", dtype), dtype)].logits)
                agree = (fp32.argmax(1) == other.argmax(1)).float().mean().item()
                print(
                    f"- {dtype} vs fp32: argmax agreement {100 * agree:.1f}%, max |logit difference| "
                    f"{(fp32 - other).abs().max().item():.2e}, logit scale (std) {fp32.std().item():.2e}"
                )
    print(f"\nWall time {wall:.0f} s.")


def print_throughput_table(mode: str, dtypes: list[str], rows: list, peaks: dict, fwd_flops: float) -> None:
    """One markdown table of a mode's rows: tokens/s, peak memory and % of the FLOP bound, ours vs fastai."""
    print(f"\n{'Training' if mode == 'train' else 'Inference'}:\n")
    head = ["workload", "fastai tok/s"] + [f"ours {d} tok/s" for d in dtypes] + ["fastai peak MB"]
    head += [f"ours {d} peak MB" for d in dtypes] + ["fastai % bound"] + [f"ours {d} % bound" for d in dtypes]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))

    def bound(result: Result, dtype: str) -> str:
        peak = peaks.get(dtype.removeprefix("onnx-"))  # int8: no float peak to compare with
        if peak is None:
            return "n/a"
        work = fwd_flops * (1 + 2 * result.grad_fraction if mode == "train" else 1) / 1e9  # GFLOP per token
        return f"{100 * result.tokens_per_s * work / peak:.0f}%"

    for workload, _, results in rows:
        base = results.get((f"fastai:{mode}", "fp32"))
        mine = [results[(ours_worker(mode, d), d)] for d in dtypes]
        cells = [workload.replace("uniform:", "uniform "), f"{base.tokens_per_s:,.0f}" if base else "n/a"]
        cells += [f"{r.tokens_per_s:,.0f} ({ratio(r.tokens_per_s, base and base.tokens_per_s)})" for r in mine]
        cells += [f"{base.peak_mb:,.0f}" if base else "n/a"]
        cells += [f"{r.peak_mb:,.0f} ({ratio(r.peak_mb, base and base.peak_mb)})" for r in mine]
        cells += [bound(base, "fp32") if base and "fp32" in peaks else "n/a"]
        cells += [bound(r, d) for r, d in zip(mine, dtypes)]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
