"""Language-model streams reshuffled every epoch, as fastai's LMDataLoader: a new document order per epoch drawn from
the seed and the epoch alone (the same on every process), the streams rebuilt from it."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import Trainer, TrainingArguments

from hf_bpt3c import AwdLstmConfig, AwdLstmForCausalLM
from hf_bpt3c.training import StreamStateCallback
from hf_bpt3c.training.data import LMStreamDataset


def documents(n: int = 12, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [[1000 * (d + 1) + k for k in range(int(torch.randint(3, 30, (1,), generator=g)))] for d in range(n)]


def stream_tokens(data: LMStreamDataset) -> list[int]:
    return data.streams.reshape(-1).tolist()


def test_without_shuffle_the_streams_are_the_documents_in_order_every_epoch():
    docs = documents()
    data = LMStreamDataset(docs, batch_size=2, bptt=5)
    flat = [t for doc in docs for t in doc]
    assert stream_tokens(data) == flat[: len(stream_tokens(data))]
    data.set_epoch(3)
    assert stream_tokens(data) == flat[: len(stream_tokens(data))]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 1000), epoch=st.integers(0, 20), world_size=st.sampled_from([1, 2, 3]))
def test_each_epoch_reads_whole_documents_in_the_order_of_its_seed(seed, epoch, world_size):
    docs = documents(seed=seed)
    data = LMStreamDataset(docs, batch_size=2, bptt=4, world_size=world_size, shuffle=True, seed=seed)
    data.set_epoch(epoch)
    order = data.document_order(epoch)
    assert sorted(order) == list(range(len(docs)))
    expected = [t for i in order for t in docs[i]]
    assert stream_tokens(data) == expected[: len(stream_tokens(data))]
    # every process lays out the same streams: the order does not depend on the world size
    alone = LMStreamDataset(docs, batch_size=2 * world_size, bptt=4, shuffle=True, seed=seed)
    assert alone.document_order(epoch) == order


def test_epochs_differ_and_an_epoch_is_laid_out_again_identically():
    data = LMStreamDataset(documents(40), batch_size=2, bptt=5, shuffle=True, seed=7)
    first = data.streams.clone()
    data.set_epoch(1)
    second = data.streams.clone()
    assert not torch.equal(first, second)
    data.set_epoch(0)
    assert torch.equal(data.streams, first)
    assert len(data) == data.n_streams * data.n_windows  # the same number of windows every epoch


def test_backward_streams_are_the_shuffled_stream_reversed():
    docs = documents(20)
    forward = LMStreamDataset(docs, batch_size=1, bptt=5, shuffle=True, seed=2)
    backward = LMStreamDataset(docs, batch_size=1, bptt=5, shuffle=True, seed=2, backwards=True)
    order = forward.document_order(0)
    flat = [t for i in order for t in docs[i]][::-1]
    assert stream_tokens(backward) == flat[: len(stream_tokens(backward))]


class RecordingStreams(LMStreamDataset):
    def __init__(self, *args, **kwargs):
        self.epochs_set, self.read = [], []
        super().__init__(*args, **kwargs)

    def set_epoch(self, epoch: int) -> None:
        self.epochs_set.append(epoch)
        super().set_epoch(epoch)

    def __getitem__(self, index: int):
        item = super().__getitem__(index)
        self.read.append((self.epoch, item["input_ids"].clone()))
        return item


def test_trainer_sets_the_epoch_before_reading_it(tmp_path):
    config = AwdLstmConfig.for_language_model(vocab_size=60, embedding_size=8, hidden_size=12, num_hidden_layers=1)
    g = torch.Generator().manual_seed(0)
    docs = [torch.randint(2, 60, (int(n),), generator=g).tolist() for n in torch.randint(5, 40, (30,), generator=g)]
    data = RecordingStreams(docs, batch_size=2, bptt=6, shuffle=True, seed=0)
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=2, num_train_epochs=3, use_cpu=True, report_to=[],
        save_strategy="no", logging_strategy="no", disable_tqdm=True, train_sampling_strategy="sequential",
    )  # fmt: skip
    Trainer(AwdLstmForCausalLM(config), args, train_dataset=data, callbacks=[StreamStateCallback()]).train()
    assert [e for e in dict.fromkeys(data.epochs_set)] == [0, 1, 2]
    per_epoch = {}
    for epoch, ids in data.read:
        per_epoch.setdefault(epoch, []).append(ids)
    assert sorted(per_epoch) == [0, 1, 2] and all(len(v) == len(data) for v in per_epoch.values())
    for epoch, items in per_epoch.items():  # what was read is the epoch's own layout, window after window
        reference = LMStreamDataset(docs, batch_size=2, bptt=6, shuffle=True, seed=0)
        reference.set_epoch(epoch)
        assert all(torch.equal(ids, reference[i]["input_ids"]) for i, ids in enumerate(items))
    assert not torch.equal(torch.stack(per_epoch[0]), torch.stack(per_epoch[1]))
