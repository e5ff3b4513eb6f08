"""`SortishDataset`: fastai's `SortedDL` batch order for the classifier, read by Trainer's sequential sampler."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_bpt3c.training.data import SortishDataset


def batches_of(dataset: SortishDataset) -> list[list[int]]:
    order = dataset.order
    return [order[i : i + dataset.batch_size] for i in range(0, len(order), dataset.batch_size)]


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 500), min_size=1, max_size=300),
    batch_size=st.integers(1, 8),
    seed=st.integers(0, 1000),
    epoch=st.integers(0, 5),
)
def test_order_is_fastais_sortish_order(lengths, batch_size, seed, epoch):
    """A permutation; the longest document in the first batch; inside each run of 50 batches the documents are
    sorted longest first before the batches between the first and the last are shuffled; a function of the seed
    and the epoch only."""
    dataset = SortishDataset(list(range(len(lengths))), lengths, batch_size, seed=seed)
    dataset.set_epoch(epoch)
    order = dataset.order
    assert sorted(order) == list(range(len(lengths)))
    assert max(lengths) in [lengths[i] for i in order[:batch_size]]
    for batch in batches_of(dataset):
        batch_lengths = [lengths[i] for i in batch]
        assert batch_lengths == sorted(batch_lengths, reverse=True)
    assert [dataset[i] for i in range(len(dataset))] == order
    again = SortishDataset(list(range(len(lengths))), lengths, batch_size, seed=seed)
    again.set_epoch(epoch)
    assert again.order == order


def test_batches_equal_fastais_sorteddl_on_a_small_set():
    """Up to 50 batches form one sorted run: the batches (as sets) are those of fastai's own `SortedDL`, whatever
    either's random draw; the first holds the longest documents, the last the shortest."""
    fastai_data = pytest.importorskip("fastai.text.data")
    generator = torch.Generator().manual_seed(0)
    lengths = (torch.randperm(1000, generator=generator)[:203] + 1).tolist()  # distinct: no ties
    ours = SortishDataset(list(range(len(lengths))), lengths, batch_size=16, seed=3)
    sorted_dl = fastai_data.SortedDL(list(range(len(lengths))), res=lengths, bs=16, shuffle=True)
    theirs = list(sorted_dl.shuffle_fn(list(range(len(lengths)))))
    theirs_batches = [frozenset(theirs[i : i + 16]) for i in range(0, len(theirs), 16)]
    ours_batches = [frozenset(batch) for batch in batches_of(ours)]
    assert set(ours_batches) == set(theirs_batches)
    assert ours_batches[0] == theirs_batches[0] and ours_batches[-1] == theirs_batches[-1]
    assert ours_batches[1:-1] != sorted(ours_batches[1:-1], key=lambda b: -max(lengths[i] for i in b))


def test_epochs_differ_and_trainer_sets_the_epoch(tmp_path):
    """Trainer's sequential loader reads the documents in the dataset's order, and accelerate hands `set_epoch` on
    to it: each epoch has its own order."""
    from transformers import Trainer, TrainingArguments

    lengths = list(range(1, 101))
    data = [{"input_ids": [5] * n, "labels": n} for n in lengths]
    dataset = SortishDataset(data, lengths, batch_size=4, seed=7)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        train_sampling_strategy="sequential",
        use_cpu=True,
        remove_unused_columns=False,
    )
    model = torch.nn.Linear(1, 1)
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=lambda rows: rows)
    loader = trainer.get_train_dataloader()
    seen = {}
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        seen[epoch] = [row["labels"] for batch in loader for row in batch]
        assert seen[epoch] == [lengths[i] for i in dataset.sortish_order(epoch)]
    assert seen[0] != seen[1]


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="batch_size"):
        SortishDataset([1, 2], [1, 2], batch_size=0)
    with pytest.raises(ValueError, match="lengths holds 1 values for 2 documents"):
        SortishDataset([1, 2], [3], batch_size=2)
    with pytest.raises(TypeError, match="seed"):
        SortishDataset([1], [1], batch_size=1, seed="0")


def test_scripts_choose_the_order(tmp_path):
    """`--batch_order sortish`, the default, wraps the training documents and reads them sequentially (an explicit
    other sampling strategy is refused by name); `group_by_length` keeps Trainer's."""
    import datasets
    from transformers import TrainingArguments

    from hf_bpt3c.training.scripts import ClassifierArguments
    from hf_bpt3c.training.scripts.classifier import ordered_for_training

    data = datasets.Dataset.from_dict({"input_ids": [[5] * n for n in range(1, 21)], "labels": [0, 1] * 10})

    def run(batch_order: str, strategy: str = "random"):
        args = ClassifierArguments(model_name_or_path="lm", batch_order=batch_order)
        training = TrainingArguments(
            output_dir=str(tmp_path), train_sampling_strategy=strategy, per_device_train_batch_size=4, seed=3
        )
        return ordered_for_training(args, training, data), training.train_sampling_strategy

    wrapped, strategy = run("sortish")
    assert isinstance(wrapped, SortishDataset) and strategy == "sequential"
    assert wrapped.order == SortishDataset(data, list(range(1, 21)), 4, seed=3).order
    assert run("group_by_length") == (data, "group_by_length")
    assert ClassifierArguments(model_name_or_path="lm").batch_order == "sortish"
    with pytest.raises(ValueError, match="--batch_order sortish .* --train_sampling_strategy"):
        run("sortish", "group_by_length")
