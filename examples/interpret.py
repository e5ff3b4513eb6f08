#!/usr/bin/env python
"""Show which passages of long documents drove a BPT3C classifier's decision, and which documents it gets wrong.

For each document it writes `attributions.html` (every word highlighted by its attribution, a per-chunk strip at
the top linking to the passages that mattered most; no script, no external resource, all text escaped),
`attributions.png` (attribution along the document: chunk boundaries, the kept window, the top passages labelled
with their words) and `attributions.json` (tokens, scores, prediction, chunks, kept window, top passages). One
document goes straight into `--output_dir`, several into `--output_dir/doc-001`, `doc-002`, ...

With a labelled `--validation_file` (CSV or JSON lines) it also writes `confusion_matrix.png`, `top_losses.html`
and `top_losses.json` (the documents with the largest loss: excerpt, true and predicted label, probability, loss).

Attribution (see `hf_bpt3c.interpret.token_attributions`): `--method gradient_x_input` (default), `gradient`
(fastai's intrinsic attention) or `integrated_gradients`; `--scope full` (default: through the carried state back
to the first token, checkpointed so that memory is that of one chunk) or `kept` (BPT3C's own gradient: the kept
window only).

Examples:
    python examples/interpret.py --model_name_or_path runs/imdb --text "A moving, beautifully acted film." \\
        --output_dir why
    python examples/interpret.py --model_name_or_path runs/imdb --text_file review.txt --output_dir why
    python examples/interpret.py --model_name_or_path runs/imdb --output_dir why \\
        --validation_file imdb_texts.csv --split_column is_valid
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from huggingface_hub.utils import tqdm

from hf_bpt3c import AwdLstmForSequenceClassification, AwdLstmTokenizer, interpret
from hf_bpt3c.training.scripts import read_documents, read_records, text_of


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_name_or_path", required=True, help="A trained classifier folder (or Hub id).")
    parser.add_argument("--tokenizer_name", default=None, help="Tokenizer folder (default: the model's).")
    parser.add_argument("--text", action="append", default=[], help="A document to explain (repeatable).")
    parser.add_argument(
        "--text_file",
        action="append",
        default=[],
        help="Documents to explain (repeatable): a .txt file is one document; .csv/.json/.jsonl one per row.",
    )
    parser.add_argument("--output_dir", required=True, type=Path)
    parser.add_argument("--method", default="gradient_x_input", choices=interpret.METHODS)
    parser.add_argument("--scope", default="full", choices=interpret.SCOPES)
    parser.add_argument("--steps", type=int, default=32, help="Integration points of integrated gradients.")
    parser.add_argument("--target", default=None, help="Class to explain (name or id; default the predicted one).")
    parser.add_argument("--top_k", type=int, default=5, help="Top passages listed and labelled.")
    parser.add_argument("--passage_tokens", type=int, default=16, help="Tokens per passage.")
    parser.add_argument("--validation_file", default=None, help="Labelled CSV/JSON lines: confusion matrix, losses.")
    parser.add_argument("--text_column", default="text")
    parser.add_argument("--label_column", default="label")
    parser.add_argument("--split_column", default=None, help="Boolean column: only rows marked true are validated.")
    parser.add_argument("--top_losses", type=int, default=20, help="How many worst documents to list.")
    parser.add_argument("--batch_size", type=int, default=16, help="Documents per batch for the validation pass.")
    args = parser.parse_args(argv)
    if not args.text and not args.text_file and not args.validation_file:
        parser.error("give --text, --text_file or --validation_file")
    return args


def documents(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(name, text) of every document to explain."""
    docs = [(f"text-{i}", text) for i, text in enumerate(args.text, 1)]
    for path in args.text_file:
        docs += read_documents(path, args.text_column, "--text_file")
    return docs


def target_id(target: str | None, model: AwdLstmForSequenceClassification) -> int | None:
    if target is None:
        return None
    names = {str(name): int(i) for i, name in model.config.id2label.items()}
    if target in names:
        return names[target]
    if target.isdigit() and int(target) < model.config.num_labels:
        return int(target)
    raise ValueError(f"--target must be a class name ({', '.join(names)}) or id, got {target!r}")


def explain(model: AwdLstmForSequenceClassification, tokenizer, text: str, out: Path, args: argparse.Namespace) -> dict:
    """Attribute one document and write its three files; returns the JSON record."""
    ids = tokenizer(text)["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    result = interpret.token_attributions(
        model,
        torch.tensor(ids),
        target=target_id(args.target, model),
        method=args.method,
        scope=args.scope,
        steps=args.steps,
    )
    scores, probabilities = result.scores[0], result.probabilities[0]
    predicted, target = int(probabilities.argmax()), int(result.target[0])
    names = model.config.id2label
    description = f"{args.method}, scope {args.scope}, explaining {names[target]!r}"
    common = dict(chunk_starts=result.chunk_starts[0], kept_span=result.kept_spans[0], top_k=args.top_k)
    out.mkdir(parents=True, exist_ok=True)
    interpret.html(
        tokens,
        scores,
        label=names[predicted],
        probability=float(probabilities[predicted]),
        method=description,
        passage_tokens=args.passage_tokens,
        path=out / "attributions.html",
        **common,
    )
    title = f"{names[predicted]} ({float(probabilities[predicted]):.2f}); {description}"
    interpret.plot(
        scores, out / "attributions.png", tokens=tokens, title=title, passage_tokens=args.passage_tokens, **common
    )
    record = {
        "text": text,
        "predicted": names[predicted],
        "probability": float(probabilities[predicted]),
        "target": names[target],
        "probabilities": {names[i]: float(p) for i, p in enumerate(probabilities)},
        "method": args.method,
        "scope": args.scope,
        "chunk_starts": result.chunk_starts[0],
        "kept_span": list(result.kept_spans[0]),
        "top_passages": [
            {"start": s, "end": e, "score": total, "tokens": tokens[s:e]}
            for s, e, total in interpret.top_passages(scores, args.top_k, args.passage_tokens)
        ],
        "tokens": tokens,
        "scores": [float(s) for s in scores],
    }
    (out / "attributions.json").write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
    return record


def validate(model, tokenizer, args: argparse.Namespace) -> None:
    """Confusion matrix and top losses over the labelled file."""
    path, what = args.validation_file, "--validation_file"
    rows = read_records(path, what, [args.text_column, args.label_column, *filter(None, [args.split_column])])
    numbered = list(enumerate(rows, 1))
    if args.split_column:
        numbered = [(i, r) for i, r in numbered if str(r[args.split_column]).strip().lower() in ("true", "1", "yes")]
    texts = [text_of(row, args.text_column, path, what, i) for i, row in numbered]
    labels = [row[args.label_column] for _, row in numbered]
    predictions = interpret.predict_documents(
        model, tokenizer, texts, labels, batch_size=args.batch_size, progress=True
    )
    matrix = interpret.confusion_matrix(predictions, path=args.output_dir / "confusion_matrix.png")
    table = interpret.top_losses(predictions, k=args.top_losses)
    title = f"Top losses of {len(texts)} documents (accuracy {matrix.accuracy:.3f})"
    interpret.losses_html(table, title=title, path=args.output_dir / "top_losses.html")
    (args.output_dir / "top_losses.json").write_text(json.dumps(table, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"validation: {len(texts)} documents, accuracy {matrix.accuracy:.4f}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    model = AwdLstmForSequenceClassification.from_pretrained(args.model_name_or_path).eval()
    tokenizer = AwdLstmTokenizer.from_pretrained(args.tokenizer_name or args.model_name_or_path)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    docs = documents(args)
    for i, (name, text) in enumerate(tqdm(docs, desc="explaining", unit=" documents"), 1):
        out = args.output_dir if len(docs) == 1 else args.output_dir / f"doc-{i:03d}"
        record = explain(model, tokenizer, text, out, args)
        print(f"{name}: {record['predicted']} ({record['probability']:.3f}), {len(record['tokens'])} tokens -> {out}")
    if args.validation_file:
        validate(model, tokenizer, args)


if __name__ == "__main__":
    sys.exit(main())
