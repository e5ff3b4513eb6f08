"""Draw how BPT3C reads a long document, from a real forward/backward pass of the classifier.

Takes the longest review of the IMDb sample, reads it with `AwdLstmForSequenceClassification` (bptt 72,
max_len 288 so that the warm-up part is visible), back-propagates the loss of its label, and plots the gradient
norm that reaches each token's embedding, with the chunk boundaries (where the state is detached) and the kept
window. The model is briefly trained on the sample first so that the gradients are those of a working classifier.

Usage: python scripts/bpt3c_figure.py [--data imdb_sample/texts.csv] [--out docs/bpt3c.png]
"""

from __future__ import annotations

import argparse
import csv
import re
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from hf_bpt3c import AwdLstmConfig, AwdLstmForSequenceClassification  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORD = re.compile(r"\w+|[^\w\s]")


def load_reviews(path: Path) -> list[tuple[list[str], int]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [(WORD.findall(r["text"].replace("<br />", " ").lower()), int(r["label"] == "positive")) for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/imdb_sample/texts.csv")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/bpt3c.png")
    parser.add_argument("--train-steps", type=int, default=60)
    args = parser.parse_args()
    torch.manual_seed(0)

    reviews = load_reviews(args.data)
    counts = Counter(word for words, _ in reviews for word in words)
    vocab = {w: i + 2 for i, (w, n) in enumerate(counts.most_common()) if n >= 2}  # 0 unk, 1 pad
    encode = lambda words: torch.tensor([vocab.get(w, 0) for w in words])  # noqa: E731
    config = AwdLstmConfig.for_classification(
        vocab_size=len(vocab) + 2, embedding_size=64, hidden_size=128, num_hidden_layers=2, bptt=72, max_len=288
    )
    model = AwdLstmForSequenceClassification(config)

    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(args.train_steps):  # short documents, batches of 16
        batch = [reviews[(step * 16 + k) % len(reviews)] for k in range(16)]
        docs = [encode(words[:200]) for words, _ in batch]
        ids = torch.nn.utils.rnn.pad_sequence(docs, batch_first=True, padding_value=1)
        mask = torch.nn.utils.rnn.pad_sequence([torch.ones_like(d) for d in docs], batch_first=True)
        loss = model(ids, attention_mask=mask, labels=torch.tensor([y for _, y in batch])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    words, label = max(reviews, key=lambda r: len(r[0]))
    model.eval()  # dropout off; the kept chunks still build their graph since gradients are enabled
    embeds = model.awd_lstm.embeddings(encode(words)).detach().unsqueeze(0).requires_grad_(True)
    loss = model(inputs_embeds=embeds, labels=torch.tensor([label])).loss
    loss.backward()
    grad = embeds.grad[0].norm(dim=1)  # (seq,)

    length, bptt, max_len = len(words), config.bptt, config.max_len
    kept_from = next(s for s in range(0, length, bptt) if length - s <= max_len)
    fig, ax = plt.subplots(figsize=(11, 3.8))
    positions = torch.arange(length)
    ax.axvspan(0, kept_from, color="0.92", label="warm-up chunks: run without autograd, state only")
    ax.axvspan(kept_from, length, color="#dff0d8", label=f"kept window (chunks in the last max_len={max_len} tokens)")
    for boundary in range(bptt, length, bptt):
        ax.axvline(boundary, color="0.45", lw=0.8, ls="--")
    ax.plot([], [], color="0.45", lw=0.8, ls="--", label=f"chunk boundary every bptt={bptt}: state carried, detached")
    nonzero = grad > 0
    ax.semilogy(positions[nonzero], grad[nonzero], ".", ms=3, color="#c0392b", label="|d loss / d token embedding|")
    ax.set_xlim(0, length)
    ax.set_xlabel(f"token position in an IMDb review ({length} tokens)")
    ax.set_ylabel("gradient norm (log)")
    ax.set_title("BPT3C: every kept chunk gets gradient through at most bptt steps; earlier tokens get exactly 0")
    ax.legend(loc="lower left", fontsize=8, framealpha=0.95)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    zero_before = bool((grad[:kept_from] == 0).all())
    print(f"wrote {args.out}: {length} tokens, kept from {kept_from}, zero gradient before it: {zero_before}")


if __name__ == "__main__":
    main()
