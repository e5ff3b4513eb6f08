"""Data for ULMFiT training with `Trainer`: contiguous language-model streams with a carried state, and classifier
batches padded per batch.

Classification needs nothing special: `transformers.DataCollatorWithPadding(tokenizer)` pads each batch to its
longest document (the model skips padding on either side), and `TrainingArguments(train_sampling_strategy=
"group_by_length")` puts documents of similar length together, like fastai's `SortedDL`. `document_lengths` gives
the lengths for that sampler.

Language modelling follows fastai's `LMDataLoader`: the token ids of all documents are concatenated and cut into
`batch_size` contiguous streams; batch `k` holds window `k` (`bptt` tokens) of every stream, so that the LSTM state
of one batch is the right start for the next. `LMStreamDataset` lays the windows out for a sequential sampler,
and `StreamStateCallback` carries the (detached) state from batch to batch inside `Trainer`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..convert.download import cached_download, check_url, extract_files, fastai_cache_dir

# fastai's `URLs.URL` (fastai/data/external.py): `untar_data(URLs.IMDB_SAMPLE)` downloads `imdb_sample.tgz` from it
FASTAI_SAMPLE_URL = "https://s3.amazonaws.com/fast-ai-sample/"
FASTAI_SAMPLE_URL_ENV = "HF_BPT3C_FASTAI_SAMPLE_URL"


def imdb_sample(cache_dir: str | os.PathLike | None = None, base_url: str | None = None) -> Path:
    """The `texts.csv` of fastai's IMDb sample (`URLs.IMDB_SAMPLE`: 1,000 reviews; columns `label` (negative,
    positive), `text`, `is_valid` (200 True)), downloaded once and reused.

    cache_dir: where the archive and the extracted file are kept (default `<HF_HOME>/hf_bpt3c/fastai`).
    base_url: the folder holding `imdb_sample.tgz` (default: `HF_BPT3C_FASTAI_SAMPLE_URL`, else fastai's).
    The archive is checked and only its one `.csv` file is extracted (`hf_bpt3c.convert.download.extract_files`);
    offline, a `DownloadError` names the URL. Returns the path of `texts.csv`.
    """
    cache = Path(cache_dir) if cache_dir is not None else fastai_cache_dir()
    texts = cache / "imdb_sample" / "texts.csv"
    if texts.is_file():
        return texts
    base = base_url or os.environ.get(FASTAI_SAMPLE_URL_ENV) or FASTAI_SAMPLE_URL
    url = check_url(base.rstrip("/") + "/imdb_sample.tgz", "base_url")
    archive = cache / "imdb_sample.tgz"
    hint = "Without a network, give the texts yourself (--train_file texts.csv --split_column is_valid)."
    cached_download(url, archive, hint=hint)
    staging = Path(tempfile.mkdtemp(prefix=".imdb_sample-", dir=cache))
    try:
        extracted = extract_files(archive, staging, [".csv"])[".csv"]
        if extracted.name != "texts.csv":
            raise ValueError(f"ARCHIVE {archive} holds {extracted.name}, not fastai's imdb_sample/texts.csv")
        texts.parent.mkdir(parents=True, exist_ok=True)
        os.replace(extracted, texts)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return texts


def document_lengths(input_ids: Iterable[Sequence[int]]) -> list[int]:
    """Token counts of tokenized documents, for `group_by_length` sampling."""
    return [len(ids) for ids in input_ids]


class LMStreamDataset(torch.utils.data.Dataset):
    """Fixed `bptt` windows over `n_streams` contiguous token streams, in the order a sequential sampler needs.

    Args:
        documents: token ids of each document (each already starting with `xxbos`; lists, arrays or tensors),
            concatenated in this order.
        batch_size: streams read side by side by one process (`per_device_train_batch_size`).
        bptt: window length; each item has `input_ids` and `labels` of `bptt` tokens (labels are the same ids:
            transformers' causal-LM loss shifts them, so the last token of a window predicts nothing).
        world_size: number of processes. `Trainer`/`accelerate` deal batches round-robin to the processes, so item
            `i` is laid out so that every process reads its own `batch_size` streams window after window.
        backwards: reverse the token order (ULMFiT's backward language model).

    Item `i` belongs to global batch `j = i // batch_size`, which process `j % world_size` reads as its window
    `j // world_size`; row `i % batch_size` of it is stream `(j % world_size) * batch_size + i % batch_size`.
    """

    def __init__(
        self,
        documents: Iterable[Sequence[int]],
        batch_size: int,
        bptt: int = 72,
        world_size: int = 1,
        backwards: bool = False,
    ):
        for name, value in (("batch_size", batch_size), ("bptt", bptt), ("world_size", world_size)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        pieces = [torch.as_tensor(doc, dtype=torch.long).reshape(-1) for doc in documents]
        ids = torch.cat(pieces) if pieces else torch.empty(0, dtype=torch.long)  # (total_tokens,)
        if backwards:
            ids = ids.flip(0)
        self.batch_size, self.bptt, self.world_size = batch_size, bptt, world_size
        self.n_streams = batch_size * world_size
        self.n_windows = len(ids) // (self.n_streams * bptt)
        if self.n_windows == 0:
            raise ValueError(
                f"{len(ids)} tokens are too few for {self.n_streams} streams of at least one {bptt}-token window"
            )
        stream_len = self.n_windows * bptt
        self.streams = ids[: self.n_streams * stream_len].clone().view(self.n_streams, stream_len)

    def __len__(self) -> int:
        return self.n_streams * self.n_windows

    def stream_and_window(self, index: int) -> tuple[int, int]:
        """Which stream and which window item `index` holds."""
        batch, row = divmod(index, self.batch_size)
        window, rank = divmod(batch, self.world_size)
        return rank * self.batch_size + row, window

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} windows")
        stream, window = self.stream_and_window(index)
        ids = self.streams[stream, window * self.bptt : (window + 1) * self.bptt]
        return {"input_ids": ids, "labels": ids.clone()}


class StreamStateCallback(TrainerCallback):
    """Carry the LM's recurrent state from one batch to the next during `Trainer` training and evaluation.

    Installs two hooks on the model (at the start of training, or with `attach`): before each forward call the
    previous batch's state (detached) is passed as `state`, after it the returned state is kept. Training and
    evaluation keep separate streams: the training state is reset at the start of every epoch, the evaluation
    state at the start of every evaluation; a batch of another size (the last, smaller one) starts from zeros,
    and so does the batch after one whose state is not finite (with a warning). The training state is saved with
    every checkpoint and restored when training resumes from the latest checkpoint in `output_dir`.
    Use it with `LMStreamDataset` and `TrainingArguments(train_sampling_strategy="sequential")`.
    """

    def __init__(self):
        self.states: dict[bool, tuple | None] = {True: None, False: None}  # keyed by `model.training`
        self._handles: list = []
        self._training: bool | None = None
        self._resumed_mid_epoch = False

    def _before_forward(self, module, args, kwargs):
        if module.training != self._training:
            self._training = module.training
            if not module.training:
                self.states[False] = None  # a new evaluation reads its streams from the start
        state = self.states[module.training]
        kwargs["use_cache"] = True  # return the state even though Trainer sets config.use_cache=False
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if state is not None and input_ids is not None and state[0][0].size(0) == input_ids.size(0):
            kwargs["state"] = state
        return args, kwargs

    def _after_forward(self, module, args, kwargs, output):
        state = getattr(output, "state", None)
        if state is not None and not all(bool(torch.isfinite(t).all()) for pair in state for t in pair):
            warnings.warn("the LM state is not finite (NaN/inf): the next batch starts from zeros", stacklevel=2)
            state = None
        detached = None if state is None else tuple((h.detach(), c.detach()) for h, c in state)
        self.states[module.training] = detached

    def attach(self, model: torch.nn.Module) -> StreamStateCallback:
        """Install the hooks on `model` (done at the start of training; call it yourself to evaluate only)."""
        self.remove()
        self._handles = [
            model.register_forward_pre_hook(self._before_forward, with_kwargs=True),
            model.register_forward_hook(self._after_forward, with_kwargs=True),
        ]
        self.states, self._training = {True: None, False: None}, None
        return self

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.attach(model)
        self._resumed_mid_epoch = False
        saved = self._checkpoint_file(args, state)
        if state.global_step > 0 and saved.is_file():  # resuming: continue the streams where they stopped
            self.states[True] = torch.load(saved, weights_only=True)
            self._resumed_mid_epoch = not float(state.epoch or 0).is_integer()

    def on_epoch_begin(self, args, state, control, **kwargs):
        if self._resumed_mid_epoch:
            self._resumed_mid_epoch = False  # the restored state belongs to this epoch
        else:
            self.states[True] = None

    def on_save(self, args, state, control, **kwargs):
        """Save the training streams' state next to Trainer's checkpoint (one file per process)."""
        path = self._checkpoint_file(args, state)
        if path.parent.is_dir():
            torch.save(self.states[True], path)

    @staticmethod
    def _checkpoint_file(args, state) -> Path:
        checkpoint = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        return checkpoint / f"stream_state-{args.process_index}.pt"

    def on_evaluate(self, args, state, control, **kwargs):
        self.states[False], self._training = None, None

    def remove(self) -> None:
        """Remove the hooks from the model."""
        for handle in self._handles:
            handle.remove()
        self._handles = []


__all__ = [
    "LMStreamDataset",
    "StreamStateCallback",
    "document_lengths",
    "imdb_sample",
    "FASTAI_SAMPLE_URL",
    "FASTAI_SAMPLE_URL_ENV",
]
