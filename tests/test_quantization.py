"""int8 inference (`hf_bpt3c.quantize_for_cpu`) and the inference path under `torch.compile`."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import small_config
from test_bpt3c import pad_batch, random_docs

import hf_bpt3c
from hf_bpt3c import AwdLstmForCausalLM, AwdLstmForSequenceClassification
from hf_bpt3c.models.awd_lstm.lstm_kernels import lstm_forward
from hf_bpt3c.models.awd_lstm.modeling_awd_lstm import AwdLstmLayer
from hf_bpt3c.serving.quantization import Int8Linear, Int8LstmLayer, int8_linear_weight

MAX_LEN = 16
LENGTHS = [1, 3, 8, 9, 16, 17, 40, 5 * MAX_LEN]  # around bptt 8 and max_len 16, up to 5*max_len


def classifier(seed: int = 0, **overrides) -> AwdLstmForSequenceClassification:
    """emb 16, hidden 24, 3 layers, bptt 8, max_len 16, with non-trivial BatchNorm statistics and logits of order 1."""
    torch.manual_seed(seed)
    config = small_config(embedding_size=16, hidden_size=24, bptt=8, max_len=MAX_LEN, **overrides)
    model = AwdLstmForSequenceClassification(config)
    with torch.no_grad():
        for block in model.classifier.blocks:
            block.batch_norm.running_mean.normal_(0, 0.1)
            block.batch_norm.running_var.uniform_(0.5, 1.5)
        model.classifier.blocks[-1].linear.weight.mul_(20)
    return model.eval()


def fake_int8(weight: torch.Tensor) -> torch.Tensor:
    """The weight as its symmetric per-row int8 quantization represents it (max |w| -> 127)."""
    scales = weight.abs().amax(dim=1, keepdim=True) / 127
    return torch.round(weight / scales).clamp(-127, 127) * scales


def test_int8_linear_equals_float_product_of_its_int8_weight():
    """Int8Linear = x @ fake_int8(W).T + b up to the 7-bit quantization of x (one step = range / 127)."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32)
    x = torch.randn(10, 64)
    expected = F.linear(x, fake_int8(linear.weight), linear.bias)
    step = (x.max() - x.min()) / 127
    bound = 0.5 * step * linear.weight.abs().sum(dim=1).max()  # each input off by at most half a step
    assert (Int8Linear(linear)(x) - expected).abs().max() <= bound
    assert (Int8Linear(linear)(x) - linear(x)).abs().max() < 0.05


@pytest.mark.parametrize("packed", [False, True])
def test_int8_lstm_layer_close_to_float(packed):
    """One layer in int8 (padded and packed input) stays within quantization error of float32 over 30 steps."""
    torch.manual_seed(0)
    hidden, n_in = 24, 16
    weights = tuple(torch.empty(*shape).uniform_(-0.3, 0.3) for shape in [(4 * hidden, n_in), (4 * hidden, hidden)])
    weights += tuple(torch.empty(4 * hidden).uniform_(-0.3, 0.3) for _ in range(2))
    x, state = torch.randn(4, 30, n_in), (0.1 * torch.randn(4, hidden), 0.1 * torch.randn(4, hidden))
    batch_sizes = None
    if packed:
        packed_seq = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor([30, 25, 10, 3]), batch_first=True)
        x, batch_sizes = packed_seq.data, packed_seq.batch_sizes
    layer = AwdLstmLayer(n_in, hidden, weight_dropout=0.0).eval()
    with torch.no_grad():
        for param, weight in zip((layer.weight_ih, layer.weight_hh, layer.bias_ih, layer.bias_hh), weights):
            param.copy_(weight)
        expected, (h, c) = lstm_forward(x, state, weights, None, 0.0, False, batch_sizes=batch_sizes)
        int8_layer = Int8LstmLayer(layer).eval()
        if packed:
            out, (h8, c8) = int8_layer.forward_packed(x, batch_sizes, state)
        else:
            out, (h8, c8) = int8_layer(x, state)
    assert out.shape == expected.shape and out.dtype == torch.float32
    assert (out - expected).abs().max() < 0.05 and (out - expected).abs().mean() < 0.005
    assert (h8 - h).abs().max() < 0.05 and (c8 - c).abs().max() < 0.1


@pytest.mark.parametrize("side,pooling", [("left", "window"), ("right", "window"), ("right", "document")])
def test_int8_classifier_agrees_with_float(side, pooling):
    """Documents of 1 to 5*max_len tokens, padded: int8 logits within 3% of the logit scale, same argmax."""
    model = classifier(classifier_pooling=pooling)
    quantized = hf_bpt3c.quantize_for_cpu(model)
    assert quantized.config.classifier_pooling == pooling
    docs = random_docs(LENGTHS * 4, model.config.vocab_size, seed=1)
    ids, mask = pad_batch(docs, side)
    with torch.no_grad():
        expected = model(ids, attention_mask=mask).logits
        logits = quantized(ids, attention_mask=mask).logits
    scale = expected.abs().max()
    assert scale > 0.5
    assert (logits - expected).abs().max() < 0.03 * scale
    top2 = expected.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 0.06 * scale  # documents whose decision is not a near tie
    assert clear.sum() >= len(docs) // 2
    assert torch.equal(logits.argmax(1)[clear], expected.argmax(1)[clear])


def test_int8_reads_documents_as_bpt3c_does():
    """The int8 model keeps BPT3C's reading: a long document's first tokens matter only through the state, and a
    document's logits alone and in a padded batch agree to within quantization noise."""
    model = hf_bpt3c.quantize_for_cpu(classifier(seed=3))
    docs = random_docs([70, 5, 33], model.config.vocab_size, seed=2)
    ids, mask = pad_batch(docs, "right")
    with torch.no_grad():
        batch_logits = model(ids, attention_mask=mask).logits
        for row, doc in enumerate(docs):
            alone = model(doc.unsqueeze(0)).logits[0]
            assert (batch_logits[row] - alone).abs().max() < 0.05 * batch_logits.abs().max()


def test_quantize_for_cpu_returns_a_copy_for_inference():
    model = classifier().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    quantized = hf_bpt3c.quantize_for_cpu(model)
    assert model.training and all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert not any(isinstance(layer, Int8LstmLayer) for layer in model.awd_lstm.layers)
    assert not quantized.training and all(isinstance(layer, Int8LstmLayer) for layer in quantized.awd_lstm.layers)
    assert all(isinstance(block.linear, Int8Linear) for block in quantized.classifier.blocks)
    ids = torch.randint(2, 60, (2, 12))
    with pytest.raises(ValueError, match="inference only"):
        quantized.train()(ids)
    with pytest.raises(ValueError, match="already quantized"):
        hf_bpt3c.quantize_for_cpu(quantized)
    with pytest.raises(TypeError, match="model must be an hf_bpt3c"):
        hf_bpt3c.quantize_for_cpu(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="engine must be one of"):
        hf_bpt3c.quantize_for_cpu(model, engine="qnnpack-typo")


def test_quantized_model_saves_its_float_weights(tmp_path):
    """save_pretrained of the int8 copy writes the float32 weights: loading gives the original model back."""
    model = classifier()
    hf_bpt3c.quantize_for_cpu(model).save_pretrained(tmp_path / "saved")
    loaded = AwdLstmForSequenceClassification.from_pretrained(tmp_path / "saved").eval()
    ids = torch.randint(2, 60, (3, 20))
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)


def test_int8_language_model_close_to_float():
    """A causal LM's LSTM layers in int8 (decoder float32): next-token log-probabilities close, state carried."""
    torch.manual_seed(0)
    model = AwdLstmForCausalLM(small_config(embedding_size=16, hidden_size=24)).eval()
    quantized = hf_bpt3c.quantize_for_cpu(model)
    ids = torch.randint(2, 60, (2, 25))
    with torch.no_grad():
        expected = model(ids).logits.log_softmax(-1)
        out = quantized(ids[:, :10])
        rest = quantized(ids[:, 10:], state=out.state).logits
        logits = torch.cat([out.logits, rest], dim=1).log_softmax(-1)
    assert (logits - expected).abs().max() < 0.05


def test_int8_weight_packing_is_per_channel():
    """A row 1000x smaller than the others keeps its precision (one scale per output channel)."""
    weight = torch.randn(8, 32)
    weight[3] *= 1e-3
    x = torch.randn(5, 32)
    out = torch.ops.quantized.linear_dynamic(x, int8_linear_weight(weight), True)
    relative = (out[:, 3] - x @ weight[3]).abs().max() / (x @ weight[3]).abs().max()
    assert relative < 0.05


def test_torch_compile_gives_the_same_logits():
    """The classifier under torch.compile (inductor) equals eager, padded and unpadded."""
    model = classifier(seed=5)
    compiled = torch.compile(model)
    docs = random_docs([40, 3, 17], model.config.vocab_size, seed=4)
    with torch.no_grad():
        for side in ("left", "right"):
            ids, mask = pad_batch(docs, side)
            assert (
                compiled(ids, attention_mask=mask).logits - model(ids, attention_mask=mask).logits
            ).abs().max() < 1e-5
        ids = torch.randint(2, 60, (2, 33))
        assert (compiled(ids).logits - model(ids).logits).abs().max() < 1e-5
