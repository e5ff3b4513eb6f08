"""The example scripts run end to end on real data (small settings) and leave usable folders."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from test_convert import toy_lm_state_dict
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

from hf_bpt3c import AwdLstmForSequenceClassification, AwdLstmTokenizer
from hf_bpt3c.convert import convert_fastai
from hf_bpt3c.convert.transfer import vocabulary_of

EXAMPLES = REPO_ROOT / "examples"

pytestmark = pytest.mark.slow  # runs the example scripts

PNG = b"\x89PNG\r\n\x1a\n"
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None  # the scripts' figures need it


def imdb_sample_args(data_dir: Path, out: Path) -> list[str]:
    """run_ulmfit.py's arguments for the IMDb sample (its `is_valid` split) writing into `out`."""
    texts_csv = str(data_dir / "imdb_sample" / "texts.csv")
    return ["--train_file", texts_csv, "--split_column", "is_valid", "--text_column", "text", "--label_column", "label",
            "--output_dir", str(out)]  # fmt: skip


def run_script(name: str, *args: str) -> str:
    """Run `examples/<name>` as a user would: on its own, no other example on the path."""
    command = [sys.executable, str(EXAMPLES / name), *args, "--report_to", "none", "--disable_tqdm", "true"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    if not torch.accelerator.is_available():  # no "'pin_memory' argument is set as true" warning on a CPU
        assert "pin_memory" not in result.stderr, result.stderr[-4000:]
    return result.stdout


def test_run_ulmfit_quick_on_the_imdb_sample(data_dir, tmp_path):
    out = tmp_path / "imdb"
    texts = ["A wonderful, moving film.", "Dull and far too long.", "The plot is thin but the acting is great."]
    write_test_file(tmp_path / "test.csv", texts)
    stdout = run_script(
        "run_ulmfit.py",
        *imdb_sample_args(data_dir, out),
        "--quick", "--do_predict", "--test_file", str(tmp_path / "test.csv"),
    )  # fmt: skip
    assert "validation accuracy:" in stdout and "predictions of the classifier for 3 texts" in stdout
    results = json.loads((out / "eval_results.json").read_text())
    assert 0.0 <= results["eval_accuracy"] <= 1.0 and "eval_f1" in results
    classify = pipeline("text-classification", model=str(out))
    prediction = classify("A wonderful, moving film with brilliant acting.")[0]
    assert prediction["label"] in {"negative", "positive"}
    predicted = read_csv_rows(out / "predictions.csv")  # in the test file's order, as the pipeline classifies them
    assert [row["text"] for row in predicted] == texts
    for row, expected in zip(predicted, classify(texts)):
        assert row["label"] == expected["label"]
        assert float(row[f"prob_{expected['label']}"]) == pytest.approx(expected["score"], abs=1e-5)
    card = ModelCard.load(out / "README.md")
    assert card.data.pipeline_tag == "text-classification" and "bpt3c" in card.data.tags
    assert (out / "language_model" / "model.safetensors").is_file()
    for folder in (out, out / "language_model") if HAS_MATPLOTLIB else ():
        assert (folder / "training_curves.png").read_bytes()[:8] == PNG, folder


def test_run_ulmfit_bidirectional_quick_writes_the_three_accuracies(data_dir, tmp_path):
    out = tmp_path / "bidi"
    stdout = run_script(
        "run_ulmfit.py",
        *imdb_sample_args(data_dir, out),
        "--quick", "--bidirectional", "--save_strategy", "no",
    )  # fmt: skip
    assert "ensemble" in stdout
    results = json.loads((out / "eval_results.json").read_text())
    assert {"forward_accuracy", "backward_accuracy", "ensemble_accuracy"} <= set(results)
    models = {d: AwdLstmForSequenceClassification.from_pretrained(out / d).eval() for d in ("forward", "backward")}
    assert not models["forward"].config.backwards and models["backward"].config.backwards
    tokenizer = AwdLstmTokenizer.from_pretrained(out / "forward")
    assert vocabulary_of(tokenizer) == vocabulary_of(AwdLstmTokenizer.from_pretrained(out / "backward"))
    # the ensemble's accuracy, recomputed one document at a time: the mean of the two softmaxes
    with open(data_dir / "imdb_sample" / "texts.csv", newline="", encoding="utf-8") as f:
        rows = [row for row in csv.DictReader(f) if row["is_valid"] == "True"][:80]  # --quick's validation rows
    correct = {"forward": 0, "backward": 0, "ensemble": 0}
    with torch.no_grad():
        for row in rows:
            ids = torch.tensor([tokenizer(row["text"])["input_ids"]])
            probs = {d: m(ids).logits.softmax(-1)[0] for d, m in models.items()}
            probs["ensemble"] = (probs["forward"] + probs["backward"]) / 2
            truth = models["forward"].config.label2id[row["label"]]
            for name, p in probs.items():
                correct[name] += int(p.argmax()) == truth
    for name, count in correct.items():
        assert results[f"{name}_accuracy"] == pytest.approx(count / len(rows)), name
    # the top folder is the ensemble as one model: pipeline scores = the mean of the two directions' pipelines
    classify = {name: pipeline("text-classification", model=out / folder, top_k=None)
                for name, folder in (("ensemble", "."), *((d, d) for d in models))}  # fmt: skip
    texts = [row["text"] for row in rows[:6]]
    scores = {name: [{s["label"]: s["score"] for s in row} for row in pipe(texts)] for name, pipe in classify.items()}
    for i in range(len(texts)):
        for label, score in scores["ensemble"][i].items():
            assert score == pytest.approx((scores["forward"][i][label] + scores["backward"][i][label]) / 2, abs=1e-6)
    card = (out / "README.md").read_text()
    assert (
        "forward_accuracy" in card
        and "backward_accuracy" in card
        and "AwdLstmEnsembleForSequenceClassification" in card
    )


def test_run_language_modeling_on_text_lines(data_dir, tmp_path):
    stdout = run_script(
        "run_language_modeling.py",
        "--train_file", str(data_dir / "tinyshakespeare" / "input.txt"),
        "--max_train_samples", "1500",
        "--max_eval_samples", "300",
        "--min_freq", "2",
        "--embedding_size", "16", "--hidden_size", "32", "--num_hidden_layers", "2", "--bptt", "20",
        "--num_train_epochs", "1", "--lr", "3e-3",
        "--output_dir", str(tmp_path / "lm"),
    )  # fmt: skip
    assert "steps of 640 tokens to go" in stdout  # 32 streams by default (not Trainer's 8) of bptt 20
    perplexity = float(stdout.split("validation perplexity:")[1].split()[0])
    results = json.loads((tmp_path / "lm" / "lm_results.json").read_text())
    assert perplexity == pytest.approx(results["perplexity"], rel=1e-2)
    vocab_size = json.loads((tmp_path / "lm" / "config.json").read_text())["vocab_size"]
    assert 1 < perplexity < vocab_size  # better than a uniform guess over the vocabulary
    assert not HAS_MATPLOTLIB or (tmp_path / "lm" / "training_curves.png").read_bytes()[:8] == PNG


def small_converted_lm(data_dir, folder):
    """A fastai v2 LM (random weights, emb 16, hidden 32, 2 layers) whose vocabulary comes from other texts than
    the IMDb sample's, converted with `convert_fastai`: a stand-in for fastai's WT103 model."""
    texts = [line for line in (data_dir / "tinyshakespeare" / "input.txt").read_text().splitlines() if line][:3000]
    itos = vocabulary_of(AwdLstmTokenizer.from_texts(texts, min_freq=2))
    torch.save(toy_lm_state_dict(len(itos), emb=16, hid=32, layers=2), folder.parent / "lm.pth")
    convert_fastai(folder.parent / "lm.pth", itos, folder, bptt=24, max_len=96)
    return itos


def test_run_ulmfit_quick_from_a_pretrained_model(data_dir, tmp_path):
    """The three ULMFiT stages from a converted model: target vocabulary (pretrained rows mapped), LM fine-tuning
    (a frozen epoch, then all), the classifier."""
    pretrained_itos = small_converted_lm(data_dir, tmp_path / "pretrained")
    out = tmp_path / "imdb"
    stdout = run_script(
        "run_ulmfit.py",
        "--model_name_or_path", str(tmp_path / "pretrained"),
        *imdb_sample_args(data_dir, out),
        "--lm_extra_file", str(data_dir / "pretrain_corpus" / "corpus.jsonl"),
        "--lm_extra_max_texts", "50",
        "--quick",
    )  # fmt: skip
    assert "validation accuracy:" in stdout and f"language model: from {tmp_path / 'pretrained'}" in stdout
    assert "language model: 50 more texts from" in stdout
    lm_config = json.loads((out / "language_model" / "config.json").read_text())
    assert (lm_config["embedding_size"], lm_config["hidden_size"], lm_config["bptt"]) == (16, 32, 24)
    target_itos = vocabulary_of(AwdLstmTokenizer.from_pretrained(out / "language_model"))
    assert target_itos != pretrained_itos and lm_config["vocab_size"] == len(target_itos)
    lm_results = json.loads((out / "language_model" / "lm_results.json").read_text())
    assert lm_results["frozen_epoch"] == 1.0 and lm_results["perplexity"] > 1
    assert json.loads((out / "config.json").read_text())["bptt"] == 24


def test_run_ulmfit_quick_in_german_with_sentencepiece(data_dir, tmp_path):
    """Another language end to end: fastai's SentencePiece tokenizer trained on the German articles, the LM and the
    classifier; then the three stages from that LM, whose SentencePiece model is kept (the target vocabulary is its
    pieces of the texts) and whose rows are mapped."""
    args = ["--train_file", str(data_dir / "german_news" / "texts.csv"), "--split_column", "is_valid",
            "--text_column", "text", "--label_column", "label", "--save_strategy", "no", "--quick"]  # fmt: skip
    out = tmp_path / "de"
    stdout = run_script("run_ulmfit.py", *args, "--output_dir", str(out), "--tokenizer_type", "sentencepiece",
                        "--lang", "de", "--sp_vocab_size", "2000")  # fmt: skip
    assert "(sentencepiece, de)" in stdout and "validation accuracy:" in stdout
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.tokenizer_type == "sentencepiece" and tokenizer.init_kwargs["lang"] == "de"
    assert tokenizer.convert_ids_to_tokens(tokenizer("Wien")["input_ids"])[:2] == ["▁xxbos", "▁xxmaj"]
    assert ModelCard.load(out / "README.md").data.language == "de"
    assert "English is assumed" not in (out / "language_model" / "README.md").read_text()
    classify = pipeline("text-classification", model=str(out))
    assert (
        classify("Der Nationalrat beschließt das Budget.")[0]["label"]
        in json.loads((out / "config.json").read_text())["label2id"]
    )

    tuned = tmp_path / "de-tuned"
    stdout = run_script("run_ulmfit.py", *args, "--output_dir", str(tuned), "--model_name_or_path",
                        str(out / "language_model"), "--min_freq", "2")  # fmt: skip
    assert "(sentencepiece, de)" in stdout and "validation accuracy:" in stdout
    pretrained, target = (AwdLstmTokenizer.from_pretrained(d / "language_model") for d in (out, tuned))
    normalizers = [json.loads(t.backend_tokenizer.to_str())["normalizer"] for t in (target, pretrained)]
    assert normalizers[0] == normalizers[1]
    assert vocabulary_of(target) != vocabulary_of(pretrained)
    text = "Die Regierung in Wien plant eine Steuerreform."
    assert target.tokenize(text) == pretrained.tokenize(text)  # the same SentencePiece model
    refused = subprocess.run(
        [sys.executable, str(EXAMPLES / "run_ulmfit.py"), *args, "--output_dir", str(tmp_path / "x"),
         "--model_name_or_path", str(out / "language_model"), "--tokenizer_type", "word"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert refused.returncode != 0 and "the pretrained model's tokenizer is sentencepiece" in refused.stderr


def test_run_language_modeling_resumes_and_logs_perplexity(data_dir, tmp_path):
    """Pretraining a corpus: tokenized by 2 processes, a checkpoint per epoch, perplexity in the logs. Rerunning the
    same command after an interruption (here: the last checkpoint and the final model removed) resumes from the last
    checkpoint and ends with the weights of the uninterrupted run."""
    out = tmp_path / "lm"
    command = [
        "--train_file", str(data_dir / "pretrain_corpus" / "corpus.jsonl"),
        "--max_train_samples", "200", "--max_eval_samples", "20", "--preprocessing_num_workers", "2",
        "--embedding_size", "16", "--hidden_size", "32", "--num_hidden_layers", "2", "--bptt", "20",
        "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "8", "--num_train_epochs", "2",
        "--eval_strategy", "epoch", "--save_strategy", "epoch", "--logging_steps", "20",
        "--output_dir", str(out), "--seed", "1",
    ]  # fmt: skip
    first_stdout = run_script("run_language_modeling.py", *command)
    checkpoints = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert len(checkpoints) == 2
    total_steps = int(checkpoints[-1].name.split("-")[1])
    assert f"language model: {total_steps:,} steps of 160 tokens to go" in first_stdout  # 8 streams of 20
    assert "tokens/s, about" in first_stdout
    state = json.loads((checkpoints[-1] / "trainer_state.json").read_text())
    evals = [entry for entry in state["log_history"] if "eval_loss" in entry]
    assert [entry["epoch"] for entry in evals] == [1.0, 2.0]
    for entry in evals:
        assert entry["eval_perplexity"] == pytest.approx(math.exp(entry["eval_loss"]))
    assert any("perplexity" in entry for entry in state["log_history"] if "loss" in entry)
    uninterrupted = load_file(out / "model.safetensors")

    shutil.rmtree(checkpoints[-1])
    (out / "model.safetensors").unlink()
    stdout = run_script("run_language_modeling.py", *command)
    resumed = load_file(out / "model.safetensors")
    assert "validation perplexity:" in stdout
    steps_left = total_steps - int(checkpoints[0].name.split("-")[1])
    assert f"language model: {steps_left:,} steps of 160 tokens to go" in stdout  # the estimate counts from the resume
    assert resumed.keys() == uninterrupted.keys()
    for name, tensor in uninterrupted.items():
        assert torch.equal(resumed[name], tensor), name


def test_run_ulmfit_builds_the_vocabulary_from_the_language_models_texts(data_dir, tmp_path):
    """`--vocab_from language_model` builds the vocabulary from every text the LM reads, the unlabelled
    `--lm_extra_file` texts included (fastai's ULMFiT LM vocabulary); the default keeps the training texts'."""
    extra = tmp_path / "unsup.jsonl"
    lines = (json.dumps({"text": f"A zorblatt film, zorblatt acting, zorblatt {i}."}) for i in range(4))
    extra.write_text("\n".join(lines) + "\n")
    args = [*imdb_sample_args(data_dir, tmp_path / "lm-vocab"), "--quick", "--lm_extra_file", str(extra)]
    stdout = run_script("run_ulmfit.py", *args, "--vocab_from", "language_model")
    assert "language model: 4 more texts" in stdout
    tokenizer = AwdLstmTokenizer.from_pretrained(tmp_path / "lm-vocab")
    assert "zorblatt" in tokenizer.get_vocab()
    rows = read_csv_rows(data_dir / "imdb_sample" / "texts.csv")
    train = [row["text"] for row in rows if row["is_valid"] == "False"][:160]  # --quick's 160 and 80
    valid = [row["text"] for row in rows if row["is_valid"] == "True"][:80]
    expected = AwdLstmTokenizer.from_texts([*train, *valid, *(json.loads(line)["text"] for line in extra.open())])
    assert tokenizer.get_vocab() == expected.get_vocab()
    refused = subprocess.run(
        [sys.executable, str(EXAMPLES / "run_ulmfit.py"), *args, "--keep_vocab", "--vocab_from", "language_model"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert refused.returncode != 0 and "cannot be combined with --vocab_from" in refused.stderr


def test_run_ulmfit_resumes_an_interrupted_language_model(data_dir, tmp_path):
    """The main job's long stage is the language model: with `--save_steps` it writes checkpoints, and the same
    command on a folder holding only an early LM checkpoint (a run killed during the LM stage) resumes from it and
    ends with the uninterrupted run's language model and classifier, bit for bit."""
    command = [*imdb_sample_args(data_dir, tmp_path / "full"), "--quick", "--save_steps", "4", "--seed", "3"]
    run_script("run_ulmfit.py", *command)
    full = tmp_path / "full"
    checkpoints = sorted((full / "language_model").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert len(checkpoints) >= 2
    interrupted = tmp_path / "interrupted"
    shutil.copytree(checkpoints[0], interrupted / "language_model" / checkpoints[0].name)
    command[command.index("--output_dir") + 1] = str(interrupted)
    stdout = run_script("run_ulmfit.py", *command)
    total_steps = int(checkpoints[-1].name.split("-")[1])
    steps_left = total_steps - int(checkpoints[0].name.split("-")[1])
    assert f"language model: {steps_left:,} steps of" in stdout and "validation accuracy:" in stdout
    for folder in (Path("language_model"), Path(".")):
        uninterrupted = load_file(full / folder / "model.safetensors")
        resumed = load_file(interrupted / folder / "model.safetensors")
        assert resumed.keys() == uninterrupted.keys()
        for name, tensor in uninterrupted.items():
            assert torch.equal(resumed[name], tensor), (folder, name)


def tiny_classification_task(folder) -> tuple[str, str]:
    """A tiny labelled CSV (48 training and 16 validation texts) and a tiny random LM with a tokenizer built from
    the texts (emb 8, hidden 16, 2 layers): a classification run in seconds."""
    import csv
    import random

    gen = random.Random(0)
    words = {"pos": "good great fine nice".split(), "neg": "bad awful poor dull".split()}
    rows = []
    for i in range(64):
        label = "pos" if i % 2 else "neg"
        text = " ".join(gen.choice(words[label] + ["film", "the", "a", "plot"]) for _ in range(gen.randint(3, 30)))
        rows.append({"text": text, "label": label, "is_valid": i >= 48})
    data = folder / "texts.csv"
    with open(data, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label", "is_valid"])
        writer.writeheader()
        writer.writerows(rows)
    return str(data), tiny_lm(folder / "lm", [row["text"] for row in rows])


def tiny_lm(folder, texts: list[str]) -> str:
    """A tiny random LM (emb 8, hidden 16, 2 layers) with a tokenizer built from `texts`, saved in `folder`."""
    from hf_bpt3c import AwdLstmConfig, AwdLstmForCausalLM

    tokenizer = AwdLstmTokenizer.from_texts(texts, min_freq=1)
    config = AwdLstmConfig(vocab_size=len(tokenizer), embedding_size=8, hidden_size=16, num_hidden_layers=2)
    AwdLstmForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_run_classification_lr_find_auto(tmp_path):
    """`--lr_find --lr auto`: the finder's plot and suggestions, training at the valley suggestion, the training
    curves next to the model (batches in fastai's sortish order)."""
    pytest.importorskip("matplotlib")
    data, lm = tiny_classification_task(tmp_path)
    out = tmp_path / "clf"
    stdout = run_script(
        "run_classification.py",
        "--model_name_or_path", lm, "--train_file", data, "--split_column", "is_valid",
        "--bptt", "8", "--max_len", "16", "--per_device_train_batch_size", "8", "--num_train_epochs", "2",
        "--lr_find", "--lr", "auto", "--output_dir", str(out), "--save_strategy", "no", "--batch_order", "sortish",
    )  # fmt: skip
    valley = float(stdout.split("training at the valley suggestion, learning rate")[1].split()[0])
    assert f"valley {valley:.2e}" in stdout and "validation accuracy:" in stdout
    for name in ("lr_find.png", "training_curves.png"):
        assert (out / name).read_bytes()[:8] == PNG, name
    card = (out / "README.md").read_text()
    assert f"{valley}" in card or f"{valley:.2e}" in card


def test_scripts_name_bad_input_files_before_any_work(data_dir, tmp_path):
    """A bad --test_file is refused before training, a bad --lm_extra_file before the language model trains, a
    document without text given to interpret.py by its row."""
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "docs.jsonl").write_text('{"text": "good"}\n{"text": null}\n')
    data, lm = tiny_classification_task(tmp_path)
    runs = {
        "--test_file": [
            "run_classification.py", "--model_name_or_path", lm, "--train_file", data, "--split_column", "is_valid",
            "--do_train", "--do_predict", "--test_file", str(tmp_path / "empty.csv"),
            "--output_dir", str(tmp_path / "clf"),
        ],
        "--lm_extra_file": [
            "run_ulmfit.py", *imdb_sample_args(data_dir, tmp_path / "u"), "--quick",
            "--lm_extra_file", str(tmp_path / "missing.jsonl"),
        ],
        "--text_file": [
            "interpret.py", "--model_name_or_path", lm, "--text_file", str(tmp_path / "docs.jsonl"),
            "--output_dir", str(tmp_path / "why"),
        ],
    }  # fmt: skip
    expected = {
        "--test_file": "is empty",
        "--lm_extra_file": "does not exist",
        "--text_file": "row 2 has no text in column 'text' (found null)",
    }
    for flag, (script, *args) in runs.items():
        result = subprocess.run(
            [sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, timeout=300
        )
        assert result.returncode != 0, flag
        assert f"ValueError: {flag}" in result.stderr and expected[flag] in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "clf" / "model.safetensors").exists()
    assert not (tmp_path / "u" / "language_model" / "model.safetensors").exists()


def write_test_file(path, texts: list[str]) -> None:
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows([[f"doc{i}", text] for i, text in enumerate(texts)])


def test_run_classification_predicts_in_input_order(tmp_path):
    """`--do_predict --test_file`: predictions.csv has the test rows in their order (not the length order the
    batches use), the predicted label and each class's probability, equal to the saved model's on each text."""
    import csv
    import random

    data, lm = tiny_classification_task(tmp_path)
    gen = random.Random(1)
    texts = [" ".join(gen.choice(["good", "bad", "film", "plot", "dull"]) for _ in range(n)) for n in range(1, 40, 3)]
    gen.shuffle(texts)
    write_test_file(tmp_path / "test.csv", texts)
    out = tmp_path / "clf"
    stdout = run_script(
        "run_classification.py",
        "--model_name_or_path", lm, "--train_file", data, "--split_column", "is_valid",
        "--bptt", "8", "--max_len", "16", "--per_device_train_batch_size", "8", "--num_train_epochs", "1",
        "--batch_order", "group_by_length", "--per_device_eval_batch_size", "4",
        "--do_predict", "--test_file", str(tmp_path / "test.csv"), "--output_dir", str(out), "--save_strategy", "no",
        "--classifier_pooling", "document",
    )  # fmt: skip
    assert f"predictions for {len(texts)} texts" in stdout
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["id", "text", "label", "prob_neg", "prob_pos"]
    assert [row["id"] for row in rows] == [f"doc{i}" for i in range(len(texts))]
    assert [row["text"] for row in rows] == texts
    tokenizer = AwdLstmTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert model.config.classifier_pooling == "document"  # texts of up to 40 words, max_len 16
    for row in rows:
        with torch.no_grad():
            probs = model(**tokenizer(row["text"], return_tensors="pt")).logits.softmax(-1)[0]
        assert [float(row["prob_neg"]), float(row["prob_pos"])] == pytest.approx(probs.tolist(), abs=1e-6)
        assert row["label"] == model.config.id2label[int(probs.argmax())]


def test_predictions_refuse_a_row_without_text(tmp_path):
    from hf_bpt3c import AwdLstmConfig, AwdLstmForSequenceClassification
    from hf_bpt3c.training.scripts import write_predictions

    tokenizer = AwdLstmTokenizer.from_texts(["good bad film"], min_freq=1)
    config = AwdLstmConfig(vocab_size=len(tokenizer), embedding_size=8, hidden_size=16, num_hidden_layers=2)
    model = AwdLstmForSequenceClassification(config)
    write_test_file(tmp_path / "test.csv", ["good film", "bad", "", "film"])
    with pytest.raises(ValueError, match=r"row 2 has no text in column 'text'"):
        write_predictions(model, tokenizer, str(tmp_path / "test.csv"), "text", str(tmp_path / "p.csv"))
    with pytest.raises(ValueError, match=r"no column 'review'"):
        write_predictions(model, tokenizer, str(tmp_path / "test.csv"), "review", str(tmp_path / "p.csv"))
    (tmp_path / "test.jsonl").write_text('{"text": "good", "label": "x"}\n{"text": "   ", "label": "y"}\n')
    with pytest.raises(ValueError, match=r"row 1 has no text"):
        write_predictions(model, tokenizer, str(tmp_path / "test.jsonl"), "text", str(tmp_path / "p.csv"))
    (tmp_path / "test.jsonl").write_text('{"text": "good film", "label": "x"}\n{"text": "bad", "label": "y"}\n')
    write_predictions(model, tokenizer, str(tmp_path / "test.jsonl"), "text", str(tmp_path / "p.csv"))
    header = (tmp_path / "p.csv").read_text().splitlines()[0]
    assert header == "text,label,predicted_label,prob_LABEL_0,prob_LABEL_1"  # the file's own label column is kept


TAGS = ("action", "comedy", "drama")


def tiny_tagged_task(folder) -> tuple[str, str, list[dict]]:
    """40 short texts (30 training, 10 validation) with 1-3 of three tags (`tags`, ';'-joined, and one 0/1 column
    per tag) and a float `score` (the share of comedy words), and a tiny LM with a tokenizer from the texts."""
    import random

    gen = random.Random(0)
    rows = []
    for i in range(40):
        tags = [tag for tag in TAGS if gen.random() < 0.5] or [TAGS[i % 3]]
        words = [gen.choice([*tags, "film", "the"]) for _ in range(gen.randint(3, 12))]
        score = round(words.count("comedy") / len(words) + gen.random() / 10, 3)
        row = {"text": " ".join(words), "tags": ";".join(tags), "score": score, "is_valid": i >= 30}
        rows.append(row | {tag: int(tag in tags) for tag in TAGS})
    data = folder / "tagged.csv"
    with open(data, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(data), tiny_lm(folder / "lm", [row["text"] for row in rows]), rows


TINY_CLASSIFIER = (
    "--split_column", "is_valid", "--bptt", "8", "--max_len", "16", "--per_device_train_batch_size", "8",
    "--per_device_eval_batch_size", "4", "--num_train_epochs", "2", "--save_strategy", "no",
)  # fmt: skip


def read_csv_rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("labels", ["delimited", "columns"])
def test_run_classification_multi_label(tmp_path, labels):
    """Multi-label from one ';'-separated column or from three 0/1 columns: finite metrics, predictions.csv with a
    sigmoid probability per tag and the tags over 0.5, equal to the saved model's on each text, which
    `pipeline("text-classification")` also scores with sigmoids."""
    data, lm, rows = tiny_tagged_task(tmp_path)
    label_args = ("--label_column", "tags", "--label_delimiter", ";")
    if labels == "columns":
        label_args = ("--label_column", ",".join(TAGS))
    texts = [row["text"] for row in rows[::-3]]  # not in the file's order
    write_test_file(tmp_path / "test.csv", texts)
    out = tmp_path / "clf"
    stdout = run_script(
        "run_classification.py", "--model_name_or_path", lm, "--train_file", data, *TINY_CLASSIFIER,
        "--problem_type", "multi_label_classification", *label_args,
        "--do_predict", "--test_file", str(tmp_path / "test.csv"), "--output_dir", str(out),
    )  # fmt: skip
    assert "validation metrics: accuracy" in stdout
    results = json.loads((out / "eval_results.json").read_text())
    for name in ("accuracy", "exact_match", "f1_micro", "f1_macro"):
        assert 0.0 <= results[f"eval_{name}"] <= 1.0, name
    predicted = read_csv_rows(out / "predictions.csv")
    assert list(predicted[0]) == ["id", "text", "labels", *[f"prob_{tag}" for tag in TAGS]]
    assert [row["text"] for row in predicted] == texts
    tokenizer = AwdLstmTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert model.config.problem_type == "multi_label_classification" and list(model.config.label2id) == list(TAGS)
    classify = pipeline("text-classification", model=str(out), top_k=None)
    for row in predicted:
        with torch.no_grad():
            probs = model(**tokenizer(row["text"], return_tensors="pt")).logits.sigmoid()[0].tolist()
        assert [float(row[f"prob_{tag}"]) for tag in TAGS] == pytest.approx(probs, abs=1e-6)
        assert row["labels"] == ";".join(tag for tag, p in zip(TAGS, probs) if p >= 0.5)
        scores = {entry["label"]: entry["score"] for entry in classify([row["text"]])[0]}
        assert [scores[tag] for tag in TAGS] == pytest.approx(probs, abs=1e-5)


def test_run_classification_early_stopping_on_held_out_training_texts(tmp_path):
    """`--early_stopping_holdout 20`: 6 of the 30 training texts held out, the first epoch of their best
    `--metric_for_best_model` kept and named in the output and the model card, the validation metrics reported, no
    checkpoint left behind."""
    data, lm, _ = tiny_tagged_task(tmp_path)
    out = tmp_path / "clf"
    stdout = run_script(
        "run_classification.py", "--model_name_or_path", lm, "--train_file", data, *TINY_CLASSIFIER,
        "--problem_type", "multi_label_classification", "--label_column", "tags", "--label_delimiter", ";",
        "--early_stopping_holdout", "20", "--metric_for_best_model", "f1_macro", "--num_train_epochs", "4",
        "--output_dir", str(out),
    )  # fmt: skip
    assert "(best f1_macro on 6 held-out training documents)" in stdout and "validation metrics: accuracy" in stdout
    state = json.loads((out / "trainer_state.json").read_text())
    *held_out, validation = [log for log in state["log_history"] if "eval_loss" in log]
    best = max(log["eval_f1_macro"] for log in held_out)
    kept = next(log["epoch"] for log in held_out if log["eval_f1_macro"] == best)
    assert len(held_out) == 4 and f"kept epoch {kept} " in stdout
    assert json.loads((out / "eval_results.json").read_text())["eval_loss"] == validation["eval_loss"]
    assert not list(out.glob("checkpoint-*")) and "held out for early stopping" in (out / "README.md").read_text()


def test_run_classification_regression(tmp_path):
    """Regression on a float column: finite MSE, MAE and Pearson; predictions.csv's `prediction` is the saved
    model's output on each text, in the test file's order, which `pipeline("text-classification")` returns as it
    is."""
    data, lm, rows = tiny_tagged_task(tmp_path)
    texts = [row["text"] for row in rows[::-3]]
    write_test_file(tmp_path / "test.csv", texts)
    out = tmp_path / "reg"
    stdout = run_script(
        "run_classification.py", "--model_name_or_path", lm, "--train_file", data, *TINY_CLASSIFIER,
        "--problem_type", "regression", "--label_column", "score",
        "--do_predict", "--test_file", str(tmp_path / "test.csv"), "--output_dir", str(out),
    )  # fmt: skip
    assert "validation metrics: mse" in stdout
    results = json.loads((out / "eval_results.json").read_text())
    assert all(math.isfinite(results[f"eval_{name}"]) for name in ("mse", "mae", "pearson"))
    predicted = read_csv_rows(out / "predictions.csv")
    assert list(predicted[0]) == ["id", "text", "prediction"] and [row["text"] for row in predicted] == texts
    tokenizer = AwdLstmTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert model.config.problem_type == "regression" and model.config.num_labels == 1
    predict = pipeline("text-classification", model=str(out))  # regression: the raw value, no sigmoid
    for row in predicted:
        with torch.no_grad():
            value = model(**tokenizer(row["text"], return_tensors="pt")).logits[0, 0].item()
        assert float(row["prediction"]) == pytest.approx(value, abs=1e-6)
        assert predict([row["text"]])[0]["score"] == pytest.approx(value, abs=1e-5)
    # evaluated again without --problem_type: the trained model's own problem type holds
    stdout = run_script(
        "run_classification.py", "--model_name_or_path", str(out), "--validation_file", data,
        "--label_column", "score", "--do_eval", "--output_dir", str(tmp_path / "again"),
    )  # fmt: skip
    assert "validation metrics: mse" in stdout
    assert math.isfinite(json.loads((tmp_path / "again" / "eval_results.json").read_text())["eval_mse"])


def test_run_ulmfit_bidirectional_predicts_with_the_ensemble_in_input_order(data_dir, tmp_path):
    """`--bidirectional --do_predict`: predictions.csv in the output folder, the shuffled test rows in their order,
    each with the mean of the forward and backward classifiers' softmax computed one document at a time."""
    import random

    data = data_dir / "imdb_sample" / "texts.csv"
    texts = [row["text"] for row in read_csv_rows(data)[-12:]]
    random.Random(2).shuffle(texts)
    write_test_file(tmp_path / "test.csv", texts)
    out = tmp_path / "bidi"
    stdout = run_script(
        "run_ulmfit.py", "--train_file", str(data), "--split_column", "is_valid",
        "--max_train_samples", "64", "--max_eval_samples", "32",
        "--quick", "--bidirectional", "--save_strategy", "no", "--output_dir", str(out),
        "--do_predict", "--test_file", str(tmp_path / "test.csv"),
    )  # fmt: skip
    assert f"predictions of the forward + backward ensemble for {len(texts)} texts" in stdout
    predicted = read_csv_rows(out / "predictions.csv")
    assert list(predicted[0]) == ["id", "text", "label", "prob_negative", "prob_positive"]
    assert [row["id"] for row in predicted] == [f"doc{i}" for i in range(len(texts))]
    assert [row["text"] for row in predicted] == texts
    models = [AwdLstmForSequenceClassification.from_pretrained(out / d).eval() for d in ("forward", "backward")]
    tokenizer = AwdLstmTokenizer.from_pretrained(out / "forward")
    for row in predicted:
        ids = torch.tensor([tokenizer(row["text"])["input_ids"]])
        with torch.no_grad():
            probs = sum(model(ids).logits.softmax(-1)[0] for model in models) / 2
        assert [float(row["prob_negative"]), float(row["prob_positive"])] == pytest.approx(probs.tolist(), abs=1e-6)
        assert row["label"] == models[0].config.id2label[int(probs.argmax())]


def imdb_with_targets(data_dir, folder):
    """The IMDb sample with a multi-label `tags` column (its label, and `long` for reviews over 200 words) and a
    regression `score` (hundreds of words)."""
    rows = read_csv_rows(data_dir / "imdb_sample" / "texts.csv")
    for row in rows:
        words = len(row["text"].split())
        row["tags"] = row["label"] + (";long" if words > 200 else "")
        row["score"] = words / 100
    path = folder / "imdb_targets.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path, rows


@pytest.mark.parametrize("problem", ["multi_label_classification", "regression"])
def test_run_ulmfit_bidirectional_multi_label_and_regression(data_dir, tmp_path, problem):
    """run_ulmfit with `--problem_type`: the ensemble's metrics are those of the mean of the two models'
    probabilities (multi-label) or values (regression), and predictions.csv holds that mean for each text."""
    data, rows = imdb_with_targets(data_dir, tmp_path)
    texts = [row["text"] for row in rows[-8:]]
    write_test_file(tmp_path / "test.csv", texts)
    targets = ("--label_column", "tags", "--label_delimiter", ";")
    if problem == "regression":
        targets = ("--label_column", "score")
    out = tmp_path / "run"
    stdout = run_script(
        "run_ulmfit.py", "--train_file", str(data), "--split_column", "is_valid", "--problem_type", problem, *targets,
        "--max_train_samples", "64", "--max_eval_samples", "32",
        "--quick", "--bidirectional", "--save_strategy", "no", "--output_dir", str(out),
        "--do_predict", "--test_file", str(tmp_path / "test.csv"),
    )  # fmt: skip
    name = "mse" if problem == "regression" else "accuracy"
    assert f"validation {name}: forward" in stdout
    results = json.loads((out / "eval_results.json").read_text())
    assert all(math.isfinite(results[f"{d}_{name}"]) for d in ("forward", "backward", "ensemble"))
    models = [AwdLstmForSequenceClassification.from_pretrained(out / d).eval() for d in ("forward", "backward")]
    assert all(model.config.problem_type == problem for model in models)
    tokenizer = AwdLstmTokenizer.from_pretrained(out / "forward")

    def mean_output(text: str) -> torch.Tensor:
        ids = torch.tensor([tokenizer(text)["input_ids"]])
        with torch.no_grad():
            outputs = [model(ids).logits[0] for model in models]
        return sum(outputs if problem == "regression" else [output.sigmoid() for output in outputs]) / 2

    validation = [row for row in rows if row["is_valid"] == "True"][:32]  # --max_eval_samples
    tags = ("long", "negative", "positive")  # the label names, sorted
    per_row = []  # the squared error, or the share of right (document, label) decisions, of each validation row
    for row in validation:
        output = mean_output(row["text"])
        if problem == "regression":
            per_row.append((float(output[0]) - row["score"]) ** 2)
        else:
            truth = torch.tensor([tag in row["tags"].split(";") for tag in tags])
            per_row.append(float(((output >= 0.5) == truth).float().mean()))
    assert results[f"ensemble_{name}"] == pytest.approx(sum(per_row) / len(per_row), abs=1e-6)

    predicted = read_csv_rows(out / "predictions.csv")
    assert [row["text"] for row in predicted] == texts
    for row in predicted:
        output = mean_output(row["text"]).tolist()
        if problem == "regression":
            assert float(row["prediction"]) == pytest.approx(output[0], abs=1e-5)
        else:
            assert [models[0].config.id2label[i] for i in range(len(output))] == list(tags)
            assert [float(row[f"prob_{tag}"]) for tag in tags] == pytest.approx(output, abs=1e-6)
            assert row["labels"] == ";".join(tag for tag, p in zip(tags, output) if p >= 0.5)


def test_run_classification_resumes_then_evaluates_and_predicts_with_the_trained_classifier(tmp_path):
    """run_glue's conventions: metrics files and trainer state; rerunning after an interruption resumes from the
    last checkpoint in output_dir and ends with the uninterrupted run's weights; a trained classifier without
    --do_train is only evaluated (--do_eval, a validation file alone) and used for --do_predict."""
    data, lm = tiny_classification_task(tmp_path)
    out = tmp_path / "clf"
    command = [
        "--model_name_or_path", lm, "--train_file", data, "--split_column", "is_valid", "--bptt", "8",
        "--max_len", "16", "--per_device_train_batch_size", "8", "--num_train_epochs", "2",
        "--save_strategy", "steps", "--save_steps", "5", "--output_dir", str(out),
    ]  # fmt: skip
    run_script("run_classification.py", *command)  # 6 steps per epoch
    for name in ("train_results.json", "eval_results.json", "all_results.json", "trainer_state.json"):
        assert (out / name).is_file(), name
    trained = json.loads((out / "eval_results.json").read_text())
    uninterrupted = load_file(out / "model.safetensors")
    checkpoints = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert [p.name for p in checkpoints] == ["checkpoint-5", "checkpoint-10", "checkpoint-12"]
    for checkpoint in checkpoints[1:]:
        shutil.rmtree(checkpoint)  # interrupted after step 5, 5/6 of the first epoch
    (out / "model.safetensors").unlink()
    assert f"classifier: resuming from {checkpoints[0]}" in run_script("run_classification.py", *command)
    resumed = load_file(out / "model.safetensors")
    assert resumed.keys() == uninterrupted.keys()
    for name, tensor in uninterrupted.items():
        assert torch.equal(resumed[name], tensor), name

    validation = [row for row in read_csv_rows(data) if row["is_valid"] == "True"]
    with open(tmp_path / "valid.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(validation[0]))
        writer.writeheader()
        writer.writerows(validation)
    write_test_file(tmp_path / "test.csv", [row["text"] for row in validation])
    again = tmp_path / "again"
    stdout = run_script(
        "run_classification.py", "--model_name_or_path", str(out), "--validation_file", str(tmp_path / "valid.csv"),
        "--do_eval", "--do_predict", "--test_file", str(tmp_path / "test.csv"), "--output_dir", str(again),
    )  # fmt: skip
    assert "validation accuracy:" in stdout and not (again / "model.safetensors").exists()
    assert json.loads((again / "eval_results.json").read_text())["eval_accuracy"] == trained["eval_accuracy"]
    assert len(read_csv_rows(again / "predictions.csv")) == len(validation)
    refused = subprocess.run(
        [sys.executable, str(EXAMPLES / "run_classification.py"), "--model_name_or_path", str(out), "--output_dir",
         str(again)], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert refused.returncode != 0 and "is a trained classifier: give --do_train" in refused.stderr
