"""Bringing pretrained models in: fastai checkpoints and archives (`from_fastai`: fastai's English WT103 models and
fastai_ulmfit's SentencePiece models in 13 languages, over the checked downloads of `download`, the checked
readers of `safe_load` and the limits of `safety`) and the vocabulary transfer of a pretrained language model to
a new corpus (`transfer`)."""

from .fastai_export import ExportError, FastaiExportConversion, RefusedGlobal, convert_fastai_export, read_fastai_export
from .from_fastai import *  # noqa: F403
from .from_fastai import __all__ as _from_fastai_all
from .safety import ArchiveLimits, LimitExceeded
from .transfer import VocabularyTransfer, adapt_vocabulary, match_embeddings, vocabulary_of

__all__ = [
    *_from_fastai_all,
    "ExportError",
    "FastaiExportConversion",
    "RefusedGlobal",
    "convert_fastai_export",
    "read_fastai_export",
    "ArchiveLimits",
    "LimitExceeded",
    "VocabularyTransfer",
    "adapt_vocabulary",
    "match_embeddings",
    "vocabulary_of",
]
