"""Data for ULMFiT training with `Trainer`: contiguous language-model streams, classifier documents padded per
batch, and fastai's IMDb sample.

Classification needs nothing special: `transformers.DataCollatorWithPadding(tokenizer)` pads each batch to its
longest document (the model skips padding on either side), and `TrainingArguments(train_sampling_strategy=
"group_by_length")` puts documents of similar length together; `SortishDataset` orders them as fastai's `SortedDL`
does (batches of similar lengths in random order) for a sequential sampler. `document_lengths` gives the lengths.

Language modelling follows fastai's `LMDataLoader`: the token ids of all documents are concatenated and cut into
`batch_size` contiguous streams; batch `k` holds window `k` (`bptt` tokens) of every stream, so that the LSTM state
of one batch is the right start for the next. `LMStreamDataset` lays the windows out for a sequential sampler;
`StreamStateCallback` (`hf_bpt3c.training.callbacks`, importable from here too) carries the (detached) state from
batch to batch inside `Trainer`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from ..convert.download import cached_download, check_url, extract_files, fastai_cache_dir
from .callbacks import StreamStateCallback  # the callback that reads LMStreamDataset's streams

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
            concatenated in this order (or in a new order every epoch with `shuffle`).
        batch_size: streams read side by side by one process (`per_device_train_batch_size`).
        bptt: window length; each item has `input_ids` and `labels` of `bptt` tokens (labels are the same ids:
            transformers' causal-LM loss shifts them, so the last token of a window predicts nothing).
        world_size: number of processes. `Trainer`/`accelerate` deal batches round-robin to the processes, so item
            `i` is laid out so that every process reads its own `batch_size` streams window after window.
        backwards: reverse the token order (ULMFiT's backward language model).
        shuffle: as fastai's `LMDataLoader` for training: the documents in a new order every epoch, the streams
            rebuilt from it. The order of epoch `e` is a permutation drawn from `seed + e` alone, so every process
            of a distributed run lays out the same streams, and a run resumed inside epoch `e` reads them again.
            `set_epoch(e)` selects the epoch: `Trainer` calls it at the start of every epoch (through accelerate's
            data loader, which hands `set_epoch` on to a dataset that has one), resumed runs included.

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
        shuffle: bool = False,
        seed: int = 0,
    ):
        for name, value in (("batch_size", batch_size), ("bptt", bptt), ("world_size", world_size)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}")
        self.documents = [torch.as_tensor(doc, dtype=torch.long).reshape(-1) for doc in documents]
        self.batch_size, self.bptt, self.world_size = batch_size, bptt, world_size
        self.backwards, self.shuffle, self.seed = backwards, bool(shuffle), seed
        self.n_streams = batch_size * world_size
        total = sum(len(doc) for doc in self.documents)
        self.n_windows = total // (self.n_streams * bptt)
        if self.n_windows == 0:
            raise ValueError(
                f"{total} tokens are too few for {self.n_streams} streams of at least one {bptt}-token window"
            )
        self.epoch = None
        self.set_epoch(0)

    def document_order(self, epoch: int) -> list[int]:
        """The order the documents are concatenated in for `epoch` (as given without `shuffle`)."""
        if not self.shuffle:
            return list(range(len(self.documents)))
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(len(self.documents), generator=generator).tolist()

    def set_epoch(self, epoch: int) -> None:
        """Lay the streams out for `epoch` (a no-op without `shuffle`, or for the epoch already laid out)."""
        if epoch == self.epoch or (not self.shuffle and self.epoch is not None):
            return
        pieces = [self.documents[i] for i in self.document_order(epoch)]
        ids = torch.cat(pieces) if pieces else torch.empty(0, dtype=torch.long)  # (total_tokens,)
        if self.backwards:
            ids = ids.flip(0)
        stream_len = self.n_windows * self.bptt
        self.streams = ids[: self.n_streams * stream_len].clone().view(self.n_streams, stream_len)
        self.epoch = epoch

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


class SortishDataset(torch.utils.data.Dataset):
    """A classifier's training documents in fastai's `SortedDL` order, for a sequential sampler.

    Every epoch (`set_epoch`, which `Trainer` calls through accelerate's data loader) the documents are shuffled
    with a generator seeded by `seed + epoch`, the longest is moved to the front (a batch that does not fit shows up
    at the first step), runs of `50 * batch_size` are sorted longest first and cut into batches of `batch_size`,
    and the batches between the first and the last are shuffled: each batch holds documents of similar length
    (little padding) and the batches come in random order. Trainer's `group_by_length` instead sorts runs of
    `min(n // (4 * batch_size), 50) * batch_size` documents (about four runs in a small set) and serves each run's
    batches one after the other, longest first.

    Args:
        dataset: the documents (anything with `__len__` and `__getitem__`, e.g. a tokenized `datasets.Dataset`).
        lengths: tokens of each document.
        batch_size: documents per batch of one process (`per_device_train_batch_size`). Under DDP accelerate deals
            consecutive batches round-robin to the processes, so each still gets batches of similar lengths.
        seed: the order depends on `seed` and the epoch only (the same on every process, and after a resume).
    """

    def __init__(self, dataset, lengths: Sequence[int], batch_size: int, seed: int = 0):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}")
        if len(lengths) != len(dataset):
            raise ValueError(f"lengths holds {len(lengths)} values for {len(dataset)} documents")
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.lengths = torch.as_tensor(list(lengths), dtype=torch.long)
        self.epoch = None
        self.set_epoch(0)

    def sortish_order(self, epoch: int) -> list[int]:
        """The documents' order in `epoch`."""
        n = len(self.lengths)
        if n == 0:
            return []
        generator = torch.Generator().manual_seed(self.seed + epoch)
        order = torch.randperm(n, generator=generator)
        longest = int((order == int(self.lengths.argmax())).nonzero())
        order[[0, longest]] = order[[longest, 0]]
        run = 50 * self.batch_size
        runs = [order[i : i + run] for i in range(0, n, run)]
        order = torch.cat([r[torch.argsort(self.lengths[r], descending=True, stable=True)] for r in runs])
        batches = list(order.split(self.batch_size))
        if len(batches) > 2:
            middle = torch.randperm(len(batches) - 2, generator=generator) + 1
            batches = [batches[0], *(batches[i] for i in middle.tolist()), batches[-1]]
        return torch.cat(batches).tolist()

    def set_epoch(self, epoch: int) -> None:
        """Order the documents for `epoch`."""
        if epoch != self.epoch:
            self.order, self.epoch = self.sortish_order(epoch), epoch

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self.order):
            raise IndexError(f"index {index} out of range for {len(self.order)} documents")
        return self.dataset[self.order[index]]


__all__ = [
    "LMStreamDataset",
    "SortishDataset",
    "StreamStateCallback",
    "document_lengths",
    "imdb_sample",
    "FASTAI_SAMPLE_URL",
    "FASTAI_SAMPLE_URL_ENV",
]
