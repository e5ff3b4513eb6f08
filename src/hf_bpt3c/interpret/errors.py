"""Error analysis over a labelled set: predictions paired with their documents, the confusion matrix, and the
documents the model gets most wrong.

`DocumentPredictions` holds the predictions; its constructors name the sources:
- `DocumentPredictions.from_model(model, tokenizer, texts, labels)` runs the model over the texts (batches of
  similar lengths) and keeps the texts' order;
- `DocumentPredictions.from_trainer(trainer, dataset, output=None)` puts `trainer.predict(dataset)` back in the
  dataset's order (`group_by_length` reorders prediction batches; `prediction_order` reads that order from the
  trainer's own dataloader);
- `DocumentPredictions.from_output(output)` takes a `trainer.predict` output as it is, in the trainer's prediction
  order: enough for a confusion matrix, not to name documents.

`confusion_matrix` and `top_losses` take a `DocumentPredictions`, a `trainer.predict` output, or the keywords of
`from_trainer` or `from_model`; `losses_html` renders `top_losses`'s table as a page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..models.awd_lstm.modeling_awd_lstm import AwdLstmForSequenceClassification
from ..plots import new_figure
from ..serving.prediction import batched_logits
from .rendering import CONTENT_SECURITY_POLICY, escape

__all__ = [
    "ConfusionMatrix",
    "DocumentPredictions",
    "confusion_matrix",
    "losses_html",
    "predict_documents",
    "prediction_order",
    "predictions_in_dataset_order",
    "top_losses",
]


@dataclass
class DocumentPredictions:
    """Predictions paired with their documents: row i of `logits` and `labels` belongs to document i.

    Attributes:
        logits: `(n, num_labels)`. labels: `(n,)` true class ids.
        texts: the documents' texts (or None). label_names: class names by id (or None).
        rows: the dataset row of each prediction (`range(n)` when built in document order).
    """

    logits: torch.Tensor
    labels: torch.Tensor
    texts: list[str] | None = None
    label_names: list[str] | None = None
    rows: list[int] | None = None

    @classmethod
    def from_model(
        cls,
        model: AwdLstmForSequenceClassification,
        tokenizer,
        texts: Sequence[str],
        labels: Sequence,
        *,
        batch_size: int = 16,
        progress: bool = False,
    ) -> DocumentPredictions:
        """Run the model over `texts` (batches of similar lengths) and keep the logits in the texts' order.

        labels: one per text, class ids or class names (`model.config.id2label`)."""
        if not isinstance(model, AwdLstmForSequenceClassification):
            raise TypeError(f"model must be an AwdLstmForSequenceClassification, got {type(model).__name__}")
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise TypeError(f"texts must be a list of str, got {type(texts).__name__}")
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                found = "None (a row without text?)" if text is None else f"a {type(text).__name__}"
                raise TypeError(f"texts must be a list of str: texts[{index}] is {found}")
        if not texts:
            raise ValueError("texts is empty: there is no document to predict")
        if isinstance(labels, str) or not isinstance(labels, Sequence):
            raise TypeError(f"labels must be a list of class ids or names, got {type(labels).__name__}")
        if len(labels) != len(texts):
            raise ValueError(f"labels must have one entry per text: {len(texts)} texts, {len(labels)} labels")
        names = _label_names_of(model)
        label_ids = _label_ids(labels, names, model.config.num_labels)
        encoded = tokenizer(list(texts))["input_ids"]
        logits = batched_logits(model, tokenizer, encoded, batch_size, progress=progress)
        return cls(logits, label_ids, list(texts), names, list(range(len(texts))))

    @classmethod
    def from_trainer(cls, trainer, dataset, output=None, texts: Sequence[str] | None = None) -> DocumentPredictions:
        """`trainer.predict(dataset)` (or its `output`, if already run) with row i belonging to `dataset[i]`.

        The order comes from `prediction_order`; it is checked against the output's own `label_ids` (which come in
        the prediction order) where the dataset holds labels. texts: the documents' texts in dataset order
        (default: a "text" column of the dataset, else the input ids decoded by `trainer.processing_class`)."""
        output = trainer.predict(dataset) if output is None else output
        logits = _output_logits(output)
        if output.label_ids is None:
            raise ValueError("the prediction output has no label_ids: the dataset needs a 'labels' column")
        label_ids = _output_label_ids(output)
        order = prediction_order(trainer, dataset)
        _check_prediction_order(order, logits.size(0), label_ids, dataset)
        n = len(dataset)
        in_order_logits = torch.empty(n, logits.size(1))
        in_order_labels = torch.empty(n, dtype=torch.long)
        in_order_logits[order], in_order_labels[order] = logits, label_ids
        texts = _dataset_texts(trainer, dataset) if texts is None else list(texts)
        if texts is not None and len(texts) != n:
            raise ValueError(f"texts must have one entry per dataset row ({n}), got {len(texts)}")
        return cls(in_order_logits, in_order_labels, texts, _label_names_of(trainer.model), list(range(n)))

    @classmethod
    def from_output(cls, output, model: AwdLstmForSequenceClassification | None = None) -> DocumentPredictions:
        """A `trainer.predict` output as it is: rows in the trainer's prediction order, paired with no document (no
        texts, no dataset rows). model: where the class names come from (`config.id2label`)."""
        if output.label_ids is None:
            raise ValueError("the prediction output has no label_ids")
        return cls(_output_logits(output), _output_label_ids(output), None, _label_names_of(model))

    @property
    def losses(self) -> torch.Tensor:
        """`(n,)` cross-entropy of each document."""
        return F.cross_entropy(self.logits.double(), self.labels, reduction="none")

    @property
    def predicted(self) -> torch.Tensor:
        return self.logits.argmax(dim=-1)

    def name(self, label: int) -> str:
        return self.label_names[label] if self.label_names and label < len(self.label_names) else str(label)


def predict_documents(
    model: AwdLstmForSequenceClassification,
    tokenizer,
    texts: Sequence[str],
    labels: Sequence,
    *,
    batch_size: int = 16,
    progress: bool = False,
) -> DocumentPredictions:
    """Run the model over `texts` (batches of similar lengths) and return the logits in the texts' order:
    `DocumentPredictions.from_model`.

    labels: one per text, class ids or class names (`model.config.id2label`)."""
    return DocumentPredictions.from_model(model, tokenizer, texts, labels, batch_size=batch_size, progress=progress)


def predictions_in_dataset_order(trainer, dataset, output=None, texts: Sequence[str] | None = None):
    """`trainer.predict(dataset)` (or its `output`, if already run) with row i belonging to `dataset[i]`:
    `DocumentPredictions.from_trainer`."""
    return DocumentPredictions.from_trainer(trainer, dataset, output, texts)


def prediction_order(trainer, dataset) -> list[int]:
    """The dataset row behind each row of `trainer.predict(dataset).predictions`.

    With `train_sampling_strategy="group_by_length"` transformers 5 length-groups prediction batches too (a
    `LengthGroupedSampler` seeded with `args.data_seed` or `args.seed`, fresh for every call). This asks the
    trainer for the very dataloader `predict` uses (`trainer.get_test_dataloader(dataset)`, public) and reads the
    indices of its batch sampler: the same seeded order, whatever sampler a Trainer subclass installs. Single
    process only (a distributed run gathers the ranks' batches interleaved)."""
    if getattr(trainer.args, "world_size", 1) > 1:
        raise ValueError("prediction_order needs a single-process Trainer (world_size 1); under DDP predict in order")
    loader = trainer.get_test_dataloader(dataset)
    batch_sampler = getattr(loader, "batch_sampler", None)
    if batch_sampler is None:
        raise ValueError("the trainer's test dataloader has no batch sampler: its prediction order is unknown")
    return [int(i) for batch in batch_sampler for i in batch]


def _check_prediction_order(order: list[int], n_predictions: int, label_ids: torch.Tensor, dataset) -> None:
    """`order` (the dataset row of each of the `n_predictions` predictions) must cover the dataset once and agree
    with its labels (`label_ids`, in the prediction order)."""
    if len(order) != n_predictions:
        raise ValueError(
            f"the output has {n_predictions} predictions but the trainer's dataloader yields {len(order)} rows: "
            "was it predicted on this dataset with this trainer?"
        )
    dataset_labels = _dataset_labels(dataset)
    if dataset_labels is not None and [dataset_labels[i] for i in order] != label_ids.tolist():
        raise ValueError(
            "the output's label_ids do not match the dataset's labels in the trainer's prediction order: the output "
            "was not produced by trainer.predict(dataset) with this trainer's current seed"
        )
    n = len(dataset)
    if sorted(order) != list(range(n)):
        raise ValueError(f"the predictions cover {len(set(order))} of the {n} documents (dataloader_drop_last?)")


def _label_names_of(model) -> list[str] | None:
    id2label = getattr(getattr(model, "config", None), "id2label", None)
    if not id2label:
        return None
    return [str(id2label[i]) for i in sorted(int(k) for k in id2label)]


def _label_ids(labels, label_names: list[str] | None, num_labels: int) -> torch.Tensor:
    """Class ids `(n,)` from ids or class names."""
    ids = []
    for i, label in enumerate(labels):
        if isinstance(label, str):
            if label_names and label in label_names:
                ids.append(label_names.index(label))
            elif label.strip().lstrip("-").isdigit():
                ids.append(int(label))
            else:
                raise ValueError(f"labels[{i}] = {label!r} is not a class name of the model ({label_names})")
        else:
            try:
                value = int(label)
                integral = value == label
            except (TypeError, ValueError, RuntimeError):
                integral = False
            if not integral:
                raise ValueError(
                    f"labels[{i}] = {label!r} is not a class id or a class name of the model ({label_names})"
                )
            ids.append(value)
    tensor = torch.tensor(ids, dtype=torch.long)
    if tensor.numel() and (tensor.min() < 0 or tensor.max() >= num_labels):
        raise ValueError(f"labels must be class ids in [0, {num_labels}) or class names, got {sorted(set(ids))}")
    return tensor


def _output_logits(output) -> torch.Tensor:
    """`(n, num_labels)` float32 logits of a `trainer.predict` output (the first of its predictions if a tuple)."""
    predictions = output.predictions
    logits = predictions[0] if isinstance(predictions, tuple) else predictions
    return torch.as_tensor(np.asarray(logits), dtype=torch.float32)


def _output_label_ids(output) -> torch.Tensor:
    """`(n,)` int64 class ids of a `trainer.predict` output."""
    return torch.as_tensor(np.asarray(output.label_ids), dtype=torch.long).reshape(-1)


def _dataset_labels(dataset) -> list[int] | None:
    for column in ("labels", "label"):
        try:
            if hasattr(dataset, "column_names"):
                if column in dataset.column_names:
                    return [int(v) for v in dataset[column]]
                continue
            return [int(row[column]) for row in dataset]
        except (KeyError, TypeError, ValueError):
            continue
    return None


def _dataset_texts(trainer, dataset) -> list[str] | None:
    if hasattr(dataset, "column_names") and "text" in dataset.column_names:
        return list(dataset["text"])
    rows = [dataset[i] for i in range(len(dataset))]
    if rows and all(isinstance(r, dict) and isinstance(r.get("text"), str) for r in rows):
        return [r["text"] for r in rows]
    tokenizer = getattr(trainer, "processing_class", None)
    if tokenizer is None or not all(isinstance(r, dict) and "input_ids" in r for r in rows):
        return None
    return [tokenizer.decode(list(r["input_ids"]), skip_special_tokens=True) for r in rows]


def _given(predictions, trainer, dataset, texts, model, need_documents: bool) -> DocumentPredictions:
    """`predictions` as given to `confusion_matrix` / `top_losses`: DocumentPredictions as they are; a
    `trainer.predict` output paired with its documents through `trainer` and `dataset`, or, where documents are
    not needed, taken in the trainer's prediction order."""
    if isinstance(predictions, DocumentPredictions):
        return predictions
    if not (hasattr(predictions, "predictions") and hasattr(predictions, "label_ids")):
        raise TypeError(
            "predictions must be a trainer.predict output (PredictionOutput) or DocumentPredictions, got "
            f"{type(predictions).__name__}"
        )
    if trainer is not None and dataset is not None:
        return DocumentPredictions.from_trainer(trainer, dataset, predictions, texts)
    if need_documents:
        raise ValueError(
            "a trainer.predict output is in the trainer's prediction order, not the dataset's (group_by_length "
            "reorders it): pass trainer= and dataset= to pair each prediction with its document"
        )
    return DocumentPredictions.from_output(predictions, model)


def _predicted(trainer, dataset, model, tokenizer, texts, labels, batch_size, progress) -> DocumentPredictions:
    """The keyword form of `confusion_matrix` / `top_losses`: `trainer` + `dataset` (`from_trainer`), or `model` +
    `tokenizer` + `texts` + `labels` (`from_model`)."""
    if trainer is not None and dataset is not None:
        return DocumentPredictions.from_trainer(trainer, dataset, texts=texts)
    if all(value is not None for value in (model, tokenizer, texts, labels)):
        return DocumentPredictions.from_model(model, tokenizer, texts, labels, batch_size=batch_size, progress=progress)
    raise ValueError(
        "give a trainer.predict output (with trainer= and dataset=), trainer= and dataset=, or model=, tokenizer=, "
        "texts= and labels="
    )


@dataclass
class ConfusionMatrix:
    """counts: `(num_labels, num_labels)` numpy ints, rows the true class, columns the predicted one."""

    counts: np.ndarray
    label_names: list[str]

    @property
    def accuracy(self) -> float:
        total = self.counts.sum()
        return float(np.trace(self.counts) / total) if total else float("nan")

    def plot(self, path: str | Path | None = None, *, title: str | None = None, ax=None):
        """A PNG when `path` is given: counts and row shares per cell. Returns the Figure."""
        size = max(3.5, 0.6 * len(self.label_names) + 2.5)
        fig, ax = (ax.figure, ax) if ax is not None else new_figure(size, size)
        rows = self.counts.sum(axis=1, keepdims=True)
        shares = np.divide(self.counts, rows, out=np.zeros(self.counts.shape), where=rows > 0)
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        ticks = range(len(self.label_names))
        ax.set_xticks(ticks, self.label_names, rotation=45, ha="right")
        ax.set_yticks(ticks, self.label_names)
        for i in ticks:
            for j in ticks:
                colour = "white" if shares[i, j] > 0.6 else "black"
                ax.text(j, i, f"{self.counts[i, j]}\n{shares[i, j]:.0%}", ha="center", va="center", color=colour)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title or f"accuracy {self.accuracy:.3f} ({int(self.counts.sum())} documents)", fontsize=10)
        if path is not None:
            fig.tight_layout()
            fig.savefig(path, dpi=110)
        return fig


def confusion_matrix(
    predictions: DocumentPredictions | None = None,
    *,
    trainer=None,
    dataset=None,
    model: AwdLstmForSequenceClassification | None = None,
    tokenizer=None,
    texts: Sequence[str] | None = None,
    labels: Sequence | None = None,
    label_names: Sequence[str] | None = None,
    batch_size: int = 16,
    progress: bool = False,
    path: str | Path | None = None,
) -> ConfusionMatrix:
    """Counts of (true, predicted) classes of `predictions`: `DocumentPredictions` or `trainer.predict`'s output
    (its own `label_ids` suffice: both come in the prediction order). Without `predictions`, they are computed
    from `trainer` + `dataset` or from `model` + `tokenizer` + `texts` + `labels`. `path`: also draw the PNG there."""
    if predictions is None:
        source = _predicted(trainer, dataset, model, tokenizer, texts, labels, batch_size, progress)
    else:
        source = _given(predictions, trainer, dataset, texts, model, need_documents=False)
    num_labels = source.logits.size(1)
    counts = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(counts, (source.labels.numpy(), source.predicted.numpy()), 1)
    names = list(label_names) if label_names is not None else [source.name(i) for i in range(num_labels)]
    if len(names) != num_labels:
        raise ValueError(f"label_names must have {num_labels} entries, got {len(names)}")
    matrix = ConfusionMatrix(counts, [str(n) for n in names])
    if path is not None:
        matrix.plot(path)
    return matrix


def top_losses(
    predictions: DocumentPredictions | None = None,
    k: int = 10,
    *,
    trainer=None,
    dataset=None,
    model: AwdLstmForSequenceClassification | None = None,
    tokenizer=None,
    texts: Sequence[str] | None = None,
    labels: Sequence | None = None,
    excerpt_chars: int = 300,
    batch_size: int = 16,
    progress: bool = False,
) -> list[dict]:
    """The `k` documents with the largest cross-entropy, worst first: dicts with `row` (the document's index),
    `text` (an excerpt), `label` (true), `predicted`, `probability` (of the predicted class), `loss`.

    Sources as `confusion_matrix`, but a `trainer.predict` output needs `trainer=` and `dataset=` as well: its rows
    are in the trainer's prediction order, which `group_by_length` makes differ from the dataset's."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    if predictions is None:
        source = _predicted(trainer, dataset, model, tokenizer, texts, labels, batch_size, progress)
    else:
        source = _given(predictions, trainer, dataset, texts, model, need_documents=True)
    losses = source.losses
    probabilities = source.logits.double().softmax(dim=-1)
    ranked = sorted(range(losses.numel()), key=lambda i: -float(losses[i]))[:k]
    return [_loss_row(source, i, losses, probabilities, excerpt_chars) for i in ranked]


def _loss_row(
    source: DocumentPredictions, i: int, losses: torch.Tensor, probabilities: torch.Tensor, excerpt_chars: int
) -> dict:
    """One row of `top_losses`'s table: document `i` of `source`; losses `(n,)`, probabilities `(n, num_labels)`."""
    predicted = int(source.predicted[i])
    text = source.texts[i] if source.texts is not None else ""
    return {
        "row": source.rows[i] if source.rows is not None else i,
        "text": text if len(text) <= excerpt_chars else text[: excerpt_chars - 1] + "…",
        "label": source.name(int(source.labels[i])),
        "predicted": source.name(predicted),
        "probability": float(probabilities[i, predicted]),
        "loss": float(losses[i]),
    }


def losses_html(table: Sequence[dict], *, title: str = "Top losses", path: str | Path | None = None) -> str:
    """A self-contained HTML table of `top_losses` rows, every value escaped. `path`: also write it there."""
    columns = ["row", "label", "predicted", "probability", "loss", "text"]
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = []
    for entry in table:
        if not isinstance(entry, dict):
            raise TypeError(f"table must be a list of dicts (top_losses rows), got {type(entry).__name__}")
        cells = []
        for column in columns:
            value = entry.get(column, "")
            text = f"{value:.4f}" if isinstance(value, float) else str(value)
            cells.append(f"<td>{escape(text)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    style = (
        "body{font-family:system-ui,sans-serif;margin:2rem}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.3rem .5rem;vertical-align:top}td:last-child{max-width:50rem}"
    )
    page = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">\n'
        f"<title>{escape(title)}</title><style>{style}</style></head><body>\n<h1>{escape(title)}</h1>\n"
        f"<table><tr>{head}</tr>\n{chr(10).join(body)}\n</table></body></html>\n"
    )
    if path is not None:
        Path(path).write_text(page, encoding="utf-8")
    return page
