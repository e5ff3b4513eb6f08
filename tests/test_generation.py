"""`generate` carries the LSTM state: with the state (use_cache=True) equals re-reading the whole text."""

from __future__ import annotations

import pytest
import torch
from conftest import small_config

from hf_bpt3c import AwdLstmCache, AwdLstmForCausalLM


@pytest.fixture(scope="module")
def lm() -> AwdLstmForCausalLM:
    torch.manual_seed(0)
    model = AwdLstmForCausalLM(small_config(vocab_size=40, eos_token_id=None))
    with torch.no_grad():  # a peaked distribution so that greedy and beam paths differ from one another
        model.decoder.bias.normal_(0, 2.0)
    return model.eval()


PROMPT = torch.tensor([[5, 9, 13, 22, 7, 31], [8, 8, 19, 3, 27, 12]])
SEARCHES = {
    "greedy": dict(do_sample=False),
    "sampling": dict(do_sample=True, top_k=0, temperature=1.0),
    "beam": dict(do_sample=False, num_beams=3),
    "beam_sampling": dict(do_sample=True, num_beams=2),
}


@pytest.mark.parametrize("search", list(SEARCHES))
def test_generate_with_state_equals_full_rerun(lm, search):
    outputs = {}
    for use_cache in (True, False):
        torch.manual_seed(123)
        outputs[use_cache] = lm.generate(PROMPT, max_new_tokens=12, use_cache=use_cache, **SEARCHES[search])
    assert outputs[True].shape == (2, PROMPT.size(1) + 12)
    assert torch.equal(outputs[True], outputs[False])


def test_greedy_generation_matches_a_manual_loop(lm):
    generated = lm.generate(PROMPT, max_new_tokens=8, do_sample=False)
    ids = PROMPT.clone()
    with torch.no_grad():
        out = lm(ids)
        for _ in range(8):
            next_token = out.logits[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, next_token], dim=1)
            out = lm(next_token, state=out.state)
    assert torch.equal(generated, ids)


def test_left_padded_batch_generates_as_each_prompt_alone(lm):
    prompts = [torch.tensor([5, 9, 13, 22, 7, 31]), torch.tensor([8, 19, 3])]
    ids = torch.full((2, 6), 1)
    mask = torch.zeros(2, 6, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, 6 - len(prompt) :], mask[row, 6 - len(prompt) :] = prompt, 1
    batch = lm.generate(ids, attention_mask=mask, max_new_tokens=7, do_sample=False, pad_token_id=1)
    for row, prompt in enumerate(prompts):
        alone = lm.generate(prompt[None], max_new_tokens=7, do_sample=False)
        assert torch.equal(batch[row, 6:], alone[0, len(prompt) :])


def test_generate_returns_the_state(lm):
    out = lm.generate(PROMPT, max_new_tokens=3, do_sample=False, return_dict_in_generate=True)
    state = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
    assert state is not None and len(state) == lm.config.num_hidden_layers


def test_generation_uses_no_private_generation_hooks():
    """The state travels through the public route: a `cache` output that generate copies (transformers >= 5.24;
    `state` on 5.23) and a `reorder_cache` method on it for beam search."""
    from transformers import GenerationMixin

    assert not hasattr(AwdLstmForCausalLM, "_reorder_cache")
    assert AwdLstmForCausalLM._update_model_kwargs_for_generation is GenerationMixin._update_model_kwargs_for_generation


def test_cache_reorders_beams_in_place():
    torch.manual_seed(1)
    state = tuple((torch.randn(4, 3), torch.randn(4, 5)) for _ in range(2))
    cache = AwdLstmCache(tuple((h.clone(), c.clone()) for h, c in state))
    beam_idx = torch.tensor([2, 2, 0, 3])
    cache.reorder_cache(beam_idx)
    for (h, c), (h0, c0) in zip(cache, state):
        assert torch.equal(h, h0[beam_idx]) and torch.equal(c, c0[beam_idx])


def test_cache_is_an_alias_of_state(lm):
    ids = PROMPT
    with torch.no_grad():
        first = lm(ids[:, :4])
        assert isinstance(first.state, AwdLstmCache) and first.cache is first.state
        by_state = lm(ids[:, 4:], state=first.state).logits
        by_cache = lm(ids[:, 4:], cache=first.state).logits
        assert torch.equal(by_state, by_cache)
        with pytest.raises(ValueError, match="not both"):
            lm(ids[:, 4:], state=first.state, cache=lm(ids[:, :4]).state)


def test_state_is_returned_in_eval_and_not_in_training_by_default():
    model = AwdLstmForCausalLM(small_config())
    ids = torch.randint(2, 60, (2, 5))
    assert model.train()(ids).state is None  # as RWKV and Mamba: no cache while training
    assert model.train()(ids, use_cache=True).state is not None
    assert model.eval()(ids).state is not None
