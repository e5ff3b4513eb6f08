"""`generate` carries the LSTM state: with the state (use_cache=True) equals re-reading the whole text."""

from __future__ import annotations

import pytest
import torch
from conftest import small_config

from hf_bpt3c import AwdLstmForCausalLM


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
