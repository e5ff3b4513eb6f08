"""Transfer a pretrained AWD-LSTM to a new domain's vocabulary (ULMFiT stage 2, as fastai's `load_pretrained`).

A language model pretrained on general text knows its own vocabulary; the target texts have another. fastai builds
the target vocabulary from the target texts and maps the pretrained embedding rows onto it by token string
(`match_embeds`): a token the pretrained model knows keeps its row (and its decoder bias), a new one starts from
the mean row (and the mean bias). `adapt_vocabulary` does that on an hf_bpt3c model and returns a new model of the
same class with `vocab_size` = the new vocabulary's size; the LSTM layers, the head and every other weight are
copied unchanged.

The vocabulary matching itself works on state dicts, for `adapt_vocabulary` and for `convert_fastai`:
`match_embeddings` (rows picked by token string), `with_fastai_specials` (fastai 0.7 special-token names -> v2
names, missing v2 special tokens appended) and `append_mean_rows` (embedding rows for appended tokens).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..models.awd_lstm.modeling_awd_lstm import AwdLstmForCausalLM, AwdLstmForSequenceClassification, AwdLstmModel
from ..models.awd_lstm.tokenization_awd_lstm import FAKE, SPECIAL_TOKENS, AwdLstmTokenizer

_AwdLstm = AwdLstmModel | AwdLstmForCausalLM | AwdLstmForSequenceClassification

# fastai 0.7's names of the special tokens (ULMFiT's imdb scripts) -> fastai v1/v2 names.
_V07_TOKENS = {
    "_unk_": "xxunk",
    "_pad_": "xxpad",
    "xbos": "xxbos",
    "xfld": "xxfld",
    "t_up": "xxup",
    "tk_rep": "xxrep",
    "tk_wrep": "xxwrep",
}


def match_embeddings(
    state_dict: dict[str, torch.Tensor], old_itos: Sequence[str], new_itos: Sequence[str]
) -> dict[str, torch.Tensor]:
    """fastai's `match_embeds` on an hf state dict: rows of `awd_lstm.embeddings.weight` `(V_old, emb)` and
    `decoder.bias` `(V_old,)` (if present) are picked by token string for `new_itos`, giving `(V_new, emb)` and
    `(V_new,)`. Tokens absent from `old_itos` get the mean row / mean bias; a token listed twice in `old_itos`
    maps to its last id, as in fastai. Returns a new dict; the other entries are shared.
    """
    weight = state_dict["awd_lstm.embeddings.weight"]
    if weight.shape[0] != len(old_itos):
        raise ValueError(f"old_itos has {len(old_itos)} tokens but the embedding has {weight.shape[0]} rows")
    old_ids = {tok: i for i, tok in enumerate(old_itos)}
    rows = torch.tensor([old_ids.get(tok, -1) for tok in new_itos])
    known = (rows >= 0).unsqueeze(1)
    matched = dict(state_dict)
    matched["awd_lstm.embeddings.weight"] = torch.where(known, weight[rows.clamp(min=0)], weight.mean(0))
    if "decoder.bias" in state_dict:
        bias = state_dict["decoder.bias"]
        matched["decoder.bias"] = torch.where(known[:, 0], bias[rows.clamp(min=0)], bias.mean())
    return matched


def with_fastai_specials(itos: list[str]) -> tuple[list[str], list[str]]:
    """Rename fastai 0.7 special tokens (`_unk_`, `xbos`, `t_up`, ...) to their v2 names and append the v2
    special tokens still missing. Returns the new itos (old ids unchanged) and a list of what was done."""
    renamed = [_V07_TOKENS[t] if t in _V07_TOKENS and _V07_TOKENS[t] not in itos else t for t in itos]
    notes = [f"renamed fastai 0.7 tokens {a!r} -> {b!r}" for a, b in zip(itos, renamed) if a != b]
    missing = [tok for tok in SPECIAL_TOKENS if tok not in renamed]
    if missing:
        notes.append(f"appended special tokens {missing} (ids {len(renamed)}..) with the mean embedding row")
    return renamed + missing, notes


def last_id_wins(itos: Sequence[str]) -> tuple[list[str], list[str]]:
    """Token names for a tokenizer that looks a token listed several times up at its **last** id, as fastai does
    with a given vocabulary (`{v: k for k, v in enumerate(vocab)}`: v1's `Vocab`, v2's `Numericalize(vocab=...)`,
    0.7): each earlier occurrence is renamed `"<token> <k>"` (a name with a space, which no text produces), so the
    ids and the weights stay as they are. Returns the names and one note per repeated token (fastai's `xxfake`
    padding, repeated by design, gets none)."""
    last = {token: i for i, token in enumerate(itos)}
    names, taken, repeated = list(itos), set(itos), {}
    for i, token in enumerate(itos):
        if last[token] != i:
            k = 1
            while f"{token} {k}" in taken:
                k += 1
            names[i] = f"{token} {k}"
            taken.add(names[i])
            repeated.setdefault(token, []).append(i)
    notes = [
        f"token {token!r} is listed at ids {[*ids, last[token]][:10]}: text maps to id {last[token]} as in fastai; "
        f"the earlier ids are named {token + ' 1'!r}, ..."
        for token, ids in repeated.items()
        if token != FAKE
    ]
    return names, notes[:20] + ([f"... and {len(notes) - 20} more repeated tokens"] if len(notes) > 20 else [])


def append_mean_rows(state_dict: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    """Add `n` rows to the embedding `(V, emb) -> (V+n, emb)` (and decoder bias) holding the mean row/bias."""
    grown = dict(state_dict)
    weight = state_dict["awd_lstm.embeddings.weight"]
    grown["awd_lstm.embeddings.weight"] = torch.cat([weight, weight.mean(0, keepdim=True).expand(n, -1)])
    if "decoder.bias" in state_dict:
        bias = state_dict["decoder.bias"]
        grown["decoder.bias"] = torch.cat([bias, bias.mean().expand(n)])
    return grown


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


__all__ = ["VocabularyTransfer", "adapt_vocabulary", "match_embeddings", "vocabulary_of"]
