"""Draw which passages of a real long IMDb review drove a trained BPT3C classifier's decision.

Takes the longest review of the IMDb sample (by the model's tokens), explains the predicted class with
`hf_bpt3c.interpret.token_attributions` (gradient x input) in both scopes, and draws:
- top: the full-scope attribution of every token along the review, chunk boundaries, the kept window and the
  five passages with the largest summed attribution, labelled with their words (`interpret.plot`);
- bottom: |attribution| on a log scale, full scope (through the carried state, checkpointed chunk by chunk) and
  kept scope (BPT3C's own gradient: exactly 0 before the kept window), i.e. how far back the prediction reaches.

Usage: python scripts/interpret_figure.py [--model_name_or_path runs/imdb] [--data texts.csv] [--out docs/interpret.png]
(--data: a CSV with `text` and `label` columns; default the IMDb sample of the shared data folder).
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from hf_bpt3c import AwdLstmForSequenceClassification, AwdLstmTokenizer, interpret  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def longest_review(path: Path, tokenizer) -> tuple[str, str]:
    """(text, label) of the review with the most tokens."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    lengths = [len(ids) for ids in tokenizer([r["text"] for r in rows])["input_ids"]]
    best = rows[int(np.argmax(lengths))]
    return best["text"], best["label"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_name_or_path", default=str(ROOT / "runs/imdb"))
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/imdb_sample/texts.csv")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/interpret.png")
    args = parser.parse_args()

    model = AwdLstmForSequenceClassification.from_pretrained(args.model_name_or_path).eval()
    tokenizer = AwdLstmTokenizer.from_pretrained(args.model_name_or_path)
    text, label = longest_review(args.data, tokenizer)
    ids = tokenizer(text)["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    results, seconds = {}, {}
    for scope in ("full", "kept"):
        started = time.perf_counter()
        results[scope] = interpret.token_attributions(model, torch.tensor(ids), scope=scope)
        seconds[scope] = time.perf_counter() - started
    full = results["full"]
    names = model.config.id2label
    predicted = int(full.target[0])
    probability = float(full.probabilities[0, predicted])
    kept_span, chunk_starts = full.kept_spans[0], full.chunk_starts[0]

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7.2), sharex=True, height_ratios=[3, 2])
    interpret.plot(
        full.scores[0],
        tokens=tokens,
        chunk_starts=chunk_starts,
        kept_span=kept_span,
        title=(
            f"Longest IMDb-sample review ({len(ids)} tokens, true label {label}): predicted {names[predicted]} "
            f"({probability:.2f}); gradient x input, full scope"
        ),
        ax=top,
    )
    top.set_xlabel("")
    positions = np.arange(len(ids))
    floor = 1e-12
    for scope, colour in (("full", "#d62728"), ("kept", "#2c7a2c")):
        magnitude = np.maximum(results[scope].scores[0].abs().numpy(), floor)
        label_text = (
            "full scope: through the carried state to the first token"
            if scope == "full"
            else "kept scope (BPT3C's gradient): 0 before the window (drawn at the floor)"
        )
        bottom.semilogy(positions, magnitude, ".", ms=2, color=colour, alpha=0.7, label=label_text)
    bottom.axvspan(*kept_span, color="#dff0d8", zorder=0)
    for s in chunk_starts[1:]:
        bottom.axvline(s, color="0.6", lw=0.6, ls="--", zorder=1)
    bottom.set_ylim(floor / 2, None)
    bottom.set_ylabel("|attribution| (log)")
    bottom.set_xlabel(f"token position ({len(ids)} tokens, bptt {model.config.bptt}, max_len {model.config.max_len})")
    bottom.legend(loc="lower right", fontsize=7, framealpha=0.9)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)

    scores = full.scores[0].abs()
    before = float(scores[: kept_span[0]].sum() / scores.sum())
    print(
        f"wrote {args.out}: {len(ids)} tokens, predicted {names[predicted]} ({probability:.3f}), true {label}; "
        f"kept window {kept_span}; share of |attribution| before it (full scope): {before:.2e}; "
        f"attribution time full {seconds['full']:.2f} s, kept {seconds['kept']:.2f} s"
    )


if __name__ == "__main__":
    main()
