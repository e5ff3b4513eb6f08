"""Transfer a pretrained AWD-LSTM to a new domain's vocabulary (ULMFiT stage 2, as fastai's `load_pretrained`).

A language model pretrained on general text knows its own vocabulary; the target texts have another. fastai builds
the target vocabulary from the target texts and maps the pretrained embedding rows onto it by token string
(`match_embeds`): a token the pretrained model knows keeps its row (and its decoder bias), a new one starts from
the mean row (and the mean bias). `adapt_vocabulary` does that on an hf_bpt3c model and returns a new model of the
same class with `vocab_size` = the new vocabulary's size; the LSTM layers, the head and every other weight are
copied unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

from ..models.awd_lstm.modeling_awd_lstm import AwdLstmForCausalLM, AwdLstmForSequenceClassification, AwdLstmModel
from ..models.awd_lstm.tokenization_awd_lstm import AwdLstmTokenizer
from .from_fastai import match_embeddings

_AwdLstm = AwdLstmModel | AwdLstmForCausalLM | AwdLstmForSequenceClassification


@dataclass
class VocabularyTransfer:
    """What `adapt_vocabulary` did: the adapted model and how many of the new tokens the old vocabulary had."""

    model: _AwdLstm
    found: int
    total: int

    @property
    def coverage(self) -> float:
        """Share of the new vocabulary whose rows come from the pretrained model."""
        return self.found / self.total


def vocabulary_of(tokenizer: AwdLstmTokenizer) -> list[str]:
    """The tokenizer's tokens in id order (fastai's itos)."""
    vocab = tokenizer.get_vocab()
    itos = sorted(vocab, key=vocab.__getitem__)
    if [vocab[token] for token in itos] != list(range(len(itos))):
        raise ValueError("the tokenizer's ids are not 0..n-1 without gaps: it is not an AWD-LSTM word vocabulary")
    return itos


def _token_list(vocab: AwdLstmTokenizer | Sequence[str], name: str) -> list[str]:
    if isinstance(vocab, AwdLstmTokenizer):
        return vocabulary_of(vocab)
    if isinstance(vocab, Sequence) and not isinstance(vocab, str) and all(isinstance(t, str) for t in vocab):
        return list(vocab)
    raise TypeError(f"{name} must be an AwdLstmTokenizer or a list of token strings, got {type(vocab).__name__}")


def adapt_vocabulary(
    model: _AwdLstm,
    old_vocab: AwdLstmTokenizer | Sequence[str],
    new_vocab: AwdLstmTokenizer | Sequence[str],
) -> VocabularyTransfer:
    """A copy of `model` whose embedding (and LM decoder bias) rows follow `new_vocab`, fastai's `match_embeds`.

    Args:
        model: an `AwdLstmForCausalLM`, `AwdLstmForSequenceClassification` or `AwdLstmModel` whose embedding rows
            follow `old_vocab`.
        old_vocab, new_vocab: tokenizers (their tokens in id order) or token lists.

    Rows are picked by token string: a token of `new_vocab` found in `old_vocab` keeps its pretrained row and
    decoder bias exactly; the others get the mean row and the mean bias of the old vocabulary. The special tokens
    (`xxunk`, `xxpad`, `xxbos`, ...) are tokens like any other, so they map to themselves. `config.vocab_size`
    becomes `len(new_vocab)`; the decoder weight stays tied to the embedding. `model` itself is left unchanged.
    """
    if not isinstance(model, (AwdLstmModel, AwdLstmForCausalLM, AwdLstmForSequenceClassification)):
        raise TypeError(f"model must be an hf_bpt3c AWD-LSTM model, got {type(model).__name__}")
    old_itos, new_itos = _token_list(old_vocab, "old_vocab"), _token_list(new_vocab, "new_vocab")
    is_encoder = isinstance(model, AwdLstmModel)  # its keys lack the `awd_lstm.` prefix match_embeddings reads
    state = {("awd_lstm." if is_encoder else "") + k: v for k, v in model.state_dict().items()}
    state.pop("decoder.weight", None)  # tied to the embedding
    matched = match_embeddings(state, old_itos, new_itos)
    if is_encoder:
        matched = {k.removeprefix("awd_lstm."): v for k, v in matched.items()}

    config = copy.deepcopy(model.config)
    config.vocab_size = len(new_itos)
    if isinstance(new_vocab, AwdLstmTokenizer):
        config.pad_token_id, config.bos_token_id = new_vocab.pad_token_id, new_vocab.bos_token_id
        config.eos_token_id = new_vocab.eos_token_id
    config.validate_awd_lstm()
    adapted = type(model)(config).to(dtype=model.dtype, device=model.device)
    missing, unexpected = adapted.load_state_dict(matched, strict=False)
    if unexpected or set(missing) - {"decoder.weight"}:
        raise RuntimeError(f"adapted weights do not fit {type(model).__name__}: missing {missing}, extra {unexpected}")
    if isinstance(adapted, AwdLstmForCausalLM):
        adapted.tie_weights()
    adapted.train(model.training)
    old_tokens = set(old_itos)
    found = sum(token in old_tokens for token in new_itos)
    return VocabularyTransfer(model=adapted, found=found, total=len(new_itos))


__all__ = ["VocabularyTransfer", "adapt_vocabulary", "vocabulary_of"]
