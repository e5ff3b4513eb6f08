#!/usr/bin/env python
"""Document embeddings of a corpus: nearest neighbours, and a logistic regression on the embeddings.

Embeds every training and validation text with `hf_bpt3c.embed` (one vector per document, the concat pooling of
the last LSTM layer over the whole document for a language model; what the head sees for a classifier), then
- fits a logistic regression on the training vectors (standardised, L2, full-batch L-BFGS) and reports its
  validation accuracy, next to the nearest-neighbour (1-NN, cosine) accuracy;
- prints, for the first `--queries` validation texts, the `--neighbours` most similar training texts.
Writes `embeddings_results.json` into `--output_dir` when given.

Example, on the main job's outputs (its language model is `runs/imdb/language_model`, its classifier `runs/imdb`):
    python examples/embeddings.py --model_name_or_path runs/imdb/language_model \\
        --train_file imdb_sample/texts.csv --split_column is_valid --label_column label
"""

from __future__ import annotations

import argparse
import json
import os

import torch
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

import hf_bpt3c  # noqa: F401  (registers the Auto classes)
from hf_bpt3c import embed
from hf_bpt3c.training.scripts import DataArguments, load_splits


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_name_or_path", required=True, help="a saved hf_bpt3c model (LM or classifier)")
    parser.add_argument("--train_file", required=True, help="CSV or JSON lines with texts and labels")
    parser.add_argument("--validation_file", help="validation texts (default: --split_column of the train file)")
    parser.add_argument("--split_column", help="boolean column marking the validation rows (is_valid)")
    parser.add_argument("--text_column", default="text")
    parser.add_argument("--label_column", default="label")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--neighbours", type=int, default=3)
    parser.add_argument("--queries", type=int, default=3)
    parser.add_argument("--l2", type=float, default=1e-2, help="L2 penalty of the logistic regression")
    parser.add_argument("--output_dir")
    return parser.parse_args()


def logistic_regression(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float) -> torch.nn.Linear:
    """Multinomial logistic regression `(features) -> (classes)`, fitted by full-batch L-BFGS on x `(n, features)`."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(x.size(1), num_classes)
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(x), y) + l2 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return linear


def main() -> None:
    args = parse_args()
    data_args = DataArguments(
        train_file=args.train_file, validation_file=args.validation_file, split_column=args.split_column,
        text_column=args.text_column,
    )  # fmt: skip
    splits = load_splits(data_args)
    config = AutoConfig.from_pretrained(args.model_name_or_path)
    is_classifier = any(a.endswith("ForSequenceClassification") for a in config.architectures or [])
    auto_class = AutoModelForSequenceClassification if is_classifier else AutoModel
    model = auto_class.from_pretrained(args.model_name_or_path).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model_name_or_path)
    texts = {name: splits[name][args.text_column] for name in ("train", "validation")}
    vectors = {name: embed(texts[name], model, tokenizer, batch_size=args.batch_size) for name in texts}
    names = sorted({str(label) for label in splits["train"][args.label_column]})
    labels = {
        name: torch.tensor([names.index(str(label)) for label in splits[name][args.label_column]]) for name in texts
    }

    mean, std = vectors["train"].mean(0), vectors["train"].std(0).clamp(min=1e-6)
    train_x, valid_x = (vectors["train"] - mean) / std, (vectors["validation"] - mean) / std
    regression = logistic_regression(train_x, labels["train"], len(names), args.l2)
    with torch.no_grad():
        lr_accuracy = (regression(valid_x).argmax(1) == labels["validation"]).float().mean().item()

    unit = lambda v: torch.nn.functional.normalize(v, dim=1)  # noqa: E731
    similarity = unit(valid_x) @ unit(train_x).T  # (validation, train) cosine
    nearest = similarity.topk(args.neighbours, dim=1)
    knn_accuracy = (labels["train"][nearest.indices[:, 0]] == labels["validation"]).float().mean().item()

    for q in range(min(args.queries, len(texts["validation"]))):
        print(f"\nquery [{names[labels['validation'][q]]}] {texts['validation'][q][:150]!r}")
        for score, j in zip(nearest.values[q].tolist(), nearest.indices[q].tolist()):
            print(f"  {score:.3f} [{names[labels['train'][j]]}] {texts['train'][j][:150]!r}")
    results = {
        "model": args.model_name_or_path,
        "embedding_size": vectors["train"].size(1),
        "train_texts": len(texts["train"]),
        "validation_texts": len(texts["validation"]),
        "logistic_regression_accuracy": round(lr_accuracy, 4),
        "nearest_neighbour_accuracy": round(knn_accuracy, 4),
    }
    print(json.dumps(results, indent=2))
    if args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)
        with open(os.path.join(args.output_dir, "embeddings_results.json"), "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
