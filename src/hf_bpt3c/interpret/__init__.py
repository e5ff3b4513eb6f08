"""Seeing why: which passages of a long document drove a BPT3C classifier's decision, and which documents of a
labelled set it gets most wrong.

- `attribution`: `token_attributions` scores every token of every document for one class (gradient, gradient x
  input or integrated gradients; in BPT3C's kept window, or through the carried state back to the first token,
  checkpointed one chunk at a time).
- `rendering`: `html` (a self-contained page, every word highlighted by its score), `plot` (the attribution along
  the document), `top_passages`, `word_pieces`.
- `errors`: `DocumentPredictions` (predictions paired with their documents, even when `group_by_length` reordered
  `trainer.predict`'s output), `confusion_matrix`, `top_losses`, `losses_html`.
"""

from .attribution import METHODS as METHODS  # the choices of `method` and `scope` (e.g. for argparse)
from .attribution import SCOPES as SCOPES
from .attribution import TokenAttributions, token_attributions
from .errors import (
    ConfusionMatrix,
    DocumentPredictions,
    confusion_matrix,
    losses_html,
    predict_documents,
    prediction_order,
    predictions_in_dataset_order,
    top_losses,
)
from .rendering import html, plot, top_passages, word_pieces

__all__ = [
    "TokenAttributions",
    "token_attributions",
    "word_pieces",
    "top_passages",
    "html",
    "plot",
    "DocumentPredictions",
    "predict_documents",
    "prediction_order",
    "predictions_in_dataset_order",
    "ConfusionMatrix",
    "confusion_matrix",
    "top_losses",
    "losses_html",
]
