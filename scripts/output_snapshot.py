"""Record the package's outputs on fixed inputs, to check that a refactoring leaves them bitwise identical.

    python scripts/output_snapshot.py --out before.pt          # on the code before the change
    python scripts/output_snapshot.py --out after.pt           # on the code after it
    python scripts/output_snapshot.py --compare before.pt after.pt

Covers, for seeded random models: the encoder and causal LM (padded left/right, unpadded, carried state, hidden
states, train-mode outputs and gradients with dropout), generation (greedy, sampled, beam), the BPT3C classifier
(eval and train, logits and gradients, bfloat16 compute where native, backward model, embeddings input), int8
(`quantize_for_cpu`), ONNX Runtime (`export_onnx` + `OnnxClassifier`, fp32 and int8), token attributions (every
method and scope), the word tokenizer and `ensemble_predict`. Uses only public names, so it runs on both sides.
"""

from __future__ import annotations

import argparse
import tempfile

import torch

import hf_bpt3c
from hf_bpt3c import (
    AwdLstmConfig,
    AwdLstmForCausalLM,
    AwdLstmForSequenceClassification,
    AwdLstmModel,
    AwdLstmTokenizer,
)

TEXTS = [
    "This movie was great! I loved the acting, the plot and the music.",
    "A TERRIBLE film. I want my two hours back... don't watch it.",
    "It's fine, I guess; nothing special but not bad either.",
    "The director's earlier work was better: this one drags on and on and on, then ends abruptly.",
] * 3


def config(**kw) -> AwdLstmConfig:
    base = dict(
        vocab_size=96, embedding_size=16, hidden_size=24, num_hidden_layers=3, bptt=7, max_len=15,
        classifier_hidden_sizes=[12], num_labels=3, pad_token_id=1,
    )  # fmt: skip
    base.update(kw)
    return AwdLstmConfig(**base)


def batch(seed: int, rows: int = 5, seq: int = 41, vocab: int = 96, left: bool = False):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab, (rows, seq), generator=g)
    lengths = torch.randint(1, seq + 1, (rows,), generator=g)
    lengths[0] = seq
    pos = torch.arange(seq)
    mask = (pos >= seq - lengths.unsqueeze(1)) if left else (pos < lengths.unsqueeze(1))
    return ids.masked_fill(~mask, 1), mask.long()


def grads(model) -> dict[str, torch.Tensor]:
    return {f"grad.{n}": p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def snapshot() -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}

    def put(prefix: str, value) -> None:
        if isinstance(value, torch.Tensor):
            out[prefix] = value.detach().clone()
        elif isinstance(value, dict):
            for k, v in value.items():
                put(f"{prefix}.{k}", v)
        elif isinstance(value, (tuple, list)):
            for i, v in enumerate(value):
                put(f"{prefix}.{i}", v)

    torch.manual_seed(0)
    encoder = AwdLstmModel(config()).eval()
    for name, (ids, mask) in {"right": batch(1), "left": batch(2, left=True)}.items():
        o = encoder(ids, attention_mask=mask, use_cache=True, output_hidden_states=True)
        put(f"encoder.{name}", [o.last_hidden_state, o.state, o.hidden_states])
    ids, _ = batch(3)
    o = encoder(ids, use_cache=True)
    put("encoder.unpadded", [o.last_hidden_state, o.state])
    put("encoder.continued", encoder(ids[:, :5], state=o.state, use_cache=True).to_tuple())

    torch.manual_seed(1)
    lm = AwdLstmForCausalLM(config(embedding_dropout=0.1, input_dropout=0.2, hidden_dropout=0.15,
                                   weight_dropout=0.2, output_dropout=0.1))  # fmt: skip
    ids, mask = batch(4)
    lm.eval()
    o = lm(ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100), use_cache=True)
    put("lm.eval", [o.loss, o.logits, o.state])
    lm.train()
    torch.manual_seed(2)
    o = lm(ids, labels=ids)
    o.loss.backward()
    put("lm.train", [o.loss, o.logits, o.last_hidden_state, o.dropped_hidden_state])
    put("lm.train", grads(lm))
    lm.zero_grad(set_to_none=True)
    lm.eval()
    prompt, prompt_mask = batch(5, rows=3, seq=6, left=True)
    put("generate.greedy", lm.generate(prompt, attention_mask=prompt_mask, max_new_tokens=8, do_sample=False))
    torch.manual_seed(3)
    put("generate.sample", lm.generate(prompt, attention_mask=prompt_mask, max_new_tokens=8, do_sample=True))
    put("generate.beam", lm.generate(prompt, attention_mask=prompt_mask, max_new_tokens=8, num_beams=3))

    for backwards in (False, True):
        torch.manual_seed(4)
        clf = AwdLstmForSequenceClassification(config(
            backwards=backwards, embedding_dropout=0.1, input_dropout=0.2, hidden_dropout=0.15, weight_dropout=0.2,
            output_dropout=0.1, classifier_dropouts=[0.1],
        ))  # fmt: skip
        name = "clf.bwd" if backwards else "clf.fwd"
        for side, (ids, mask) in {"right": batch(6, seq=61), "left": batch(7, seq=61, left=True)}.items():
            clf.eval()
            put(f"{name}.eval.{side}", clf(ids, attention_mask=mask).logits)
            clf.train()
            torch.manual_seed(5)
            o = clf(ids, attention_mask=mask, labels=torch.tensor([0, 1, 2, 0, 1]))
            o.loss.backward()
            put(f"{name}.train.{side}", [o.loss, o.logits])
            put(f"{name}.train.{side}", grads(clf))
            clf.zero_grad(set_to_none=True)
        clf.eval()
        ids, mask = batch(8, seq=61)
        put(f"{name}.pad_ids", clf(ids).logits)
        embeds = clf.get_input_embeddings()(ids)
        put(f"{name}.embeds", clf(inputs_embeds=embeds, attention_mask=mask).logits)
        if hf_bpt3c.hardware.bf16_is_native(torch.device("cpu")):
            clf.config.compute_dtype = "bfloat16"
            put(f"{name}.bf16", clf(ids, attention_mask=mask).logits)
            clf.train()
            torch.manual_seed(6)
            o = clf(ids, attention_mask=mask, labels=torch.tensor([0, 1, 2, 0, 1]))
            o.loss.backward()
            put(f"{name}.bf16.train", [o.loss, o.logits])
            put(f"{name}.bf16.train", grads(clf))
            clf.zero_grad(set_to_none=True)
            clf.eval()
            clf.config.compute_dtype = "float32"
        # int8
        q = hf_bpt3c.quantize_for_cpu(clf)
        put(f"{name}.int8", q(ids, attention_mask=mask).logits)
        qlm = hf_bpt3c.quantize_for_cpu(lm)
        put(f"lm.int8.{name}", qlm(ids, attention_mask=mask, use_cache=True).to_tuple())
        # attributions
        for method in ("gradient", "gradient_x_input", "integrated_gradients"):
            for scope in ("kept", "full"):
                a = hf_bpt3c.interpret.token_attributions(
                    clf, ids[:3], attention_mask=mask[:3], method=method, scope=scope, steps=4
                )
                put(f"{name}.attr.{method}.{scope}", [a.logits, *[torch.as_tensor(s) for s in a.scores]])
        # ONNX Runtime
        with tempfile.TemporaryDirectory() as tmp:
            hf_bpt3c.onnx.export_onnx(clf, f"{tmp}/export", int8=True)
            for int8 in (False, True):
                runner = hf_bpt3c.onnx.OnnxClassifier(f"{tmp}/export", int8=int8, intra_op_num_threads=1)
                put(f"{name}.onnx.int8={int8}", torch.from_numpy(runner(ids.numpy(), mask.numpy())))

    tokenizer = AwdLstmTokenizer.from_texts(TEXTS, min_freq=1)
    enc = tokenizer(TEXTS[:4], padding=True, return_tensors="pt")
    put("tokenizer", [enc["input_ids"], enc["attention_mask"]])
    torch.manual_seed(7)
    models = [
        AwdLstmForSequenceClassification(config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                                backwards=b))
        for b in (False, True)
    ]  # fmt: skip
    result = hf_bpt3c.ensemble_predict(models, tokenizer, TEXTS, batch_size=3)
    put("ensemble", [torch.as_tensor(result.probabilities)])
    return out


def compare(before_path: str, after_path: str) -> int:
    """Print how many tensors of `before` are bitwise identical in `after`; nonzero exit if any differs or is gone.
    Tensors only in `after` (new output fields) are listed, not counted as differences."""
    before, after = torch.load(before_path), torch.load(after_path)
    common = sorted(set(before) & set(after))
    differ = [k for k in common if not torch.equal(before[k], after[k])]
    missing, new = sorted(set(before) - set(after)), sorted(set(after) - set(before))
    print(f"{len(common) - len(differ)} of {len(before)} tensors bitwise identical, {len(differ)} differ, "
          f"{len(missing)} missing, {len(new)} new")  # fmt: skip
    for k in differ:
        print("  differs:", k, (before[k].float() - after[k].float()).abs().max().item())
    for k in missing:
        print("  missing:", k)
    for k in new:
        print("  new:", k)
    return 1 if differ or missing else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare)
    if not args.out:
        parser.error("give --out FILE or --compare BEFORE AFTER")
    torch.set_num_threads(1)
    snap = snapshot()
    torch.save(snap, args.out)
    print(f"{len(snap)} tensors written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
