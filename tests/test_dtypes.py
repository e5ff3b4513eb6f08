"""A model saved in bfloat16 reloads in bfloat16; `dtype=torch.float32` overrides; bf16 runs every head."""

from __future__ import annotations

import torch
from conftest import small_config
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from hf_bpt3c import AwdLstmForCausalLM, AwdLstmForSequenceClassification


def test_bf16_round_trip_and_override(tmp_path):
    model = AwdLstmForSequenceClassification(small_config()).eval()
    ids = torch.randint(2, 60, (3, 40))
    with torch.no_grad():
        fp32_logits = model(ids).logits
    model.to(torch.bfloat16).save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        assert f.get_tensor("awd_lstm.layers.0.weight_hh").dtype == torch.bfloat16
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert reloaded.dtype == torch.bfloat16
    with torch.no_grad():
        bf16_logits = reloaded(ids).logits
        assert bf16_logits.dtype == torch.bfloat16
        assert torch.equal(bf16_logits, model(ids).logits)
        assert (bf16_logits.float() - fp32_logits).abs().max() < 0.05
    as_fp32 = AutoModelForSequenceClassification.from_pretrained(tmp_path, dtype=torch.float32)
    assert as_fp32.dtype == torch.float32
    assert as_fp32.awd_lstm.layers[0].weight_hh.dtype == torch.float32


def test_bf16_training_step_and_generation(tmp_path):
    classifier = AwdLstmForSequenceClassification(small_config()).to(torch.bfloat16).train()
    loss = classifier(torch.randint(2, 60, (4, 30)), labels=torch.tensor([0, 1, 2, 0])).loss
    loss.backward()
    assert torch.isfinite(loss) and classifier.awd_lstm.layers[0].weight_hh.grad.dtype == torch.bfloat16
    lm = AwdLstmForCausalLM(small_config()).to(torch.bfloat16).eval()
    lm.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert reloaded.dtype == torch.bfloat16
    prompt = torch.randint(2, 60, (2, 5))
    assert torch.equal(reloaded.generate(prompt, max_new_tokens=4), lm.generate(prompt, max_new_tokens=4))
