"""fastai_ulmfit's community ULMFiT archives (github.com/floleuerer/fastai_ulmfit: forward and backward Wikipedia
language models in 13 languages, trained with fastai's `SentencePieceTokenizer`).

A tiny language model is trained here with fastai itself in both directions on German and English sentences, saved
as fastai_ulmfit saves its models (`learn.save(..., with_opt=False)`, `learn.save_encoder`, the pickled
`learn.dls.vocab`, `model.json`, the tokenizer's `spm/spm.model`) and packed as its archives are (`fwd/`, `bwd/`
and `spm/` under one top folder). A local HTTP server on 127.0.0.1 serves it behind a chain of redirects, as the
project's bit.ly short links do: `hf-bpt3c fetch-fastai URL` and `--archive`, `convert-fastai --sp-model`, the
cache, the model card, and damaged, incomplete or hostile archives."""

from __future__ import annotations

import json
import pickle
import random
import tarfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from test_fetch import isolated, link, tgz, zoo_archive  # noqa: F401 (isolated: HF_HOME and temp folder per test)
from transformers import AutoModelForCausalLM, AutoTokenizer

import hf_bpt3c  # noqa: F401 (registers the Auto classes)
from hf_bpt3c import AwdLstmConfig
from hf_bpt3c.cli import main
from hf_bpt3c.convert import ArchiveLimits, LimitExceeded, MissingDirection, convert_fastai, fetch_fastai
from hf_bpt3c.convert.download import DownloadError

TOL = 1e-5
VOCAB_SZ = 100
EMB, HID, LAYERS = 16, 24, 2
TOP = "dewiki"  # the top folder of the archive (fastai_ulmfit's `{lang}wiki`)

TEXTS = [
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Über die alte Brücke gehen Müller und Schäfer nach Hause.",
    "Die Bäume im Garten sind grün, groß und schön.",
    "Ich möchte gerne ein Stück Käse und ein Brötchen essen.",
    "Im Frühling blühen die Blumen auf der Wiese.",
    "Die Kinder spielen fröhlich auf dem Spielplatz.",
    "Der Bäcker backt jeden Morgen frisches Brot.",
    "Die Straße ist nass, weil es geregnet hat.",
    "Mein Großvater erzählt Geschichten über früher.",
    "Die Vögel singen laut in den Bäumen.",
    "Im Winter ist es kalt und die Seen frieren zu.",
    "Wir fahren mit dem Zug über die Grenze nach Österreich.",
    "Die Lehrerin erklärt den Schülern die Aufgabe.",
    "Der Hund bellt, wenn der Briefträger kommt.",
    "Die Äpfel und Birnen liegen in der Schüssel.",
    "Nach dem Essen trinken wir einen Kaffee.",
    "Das Museum zeigt Gemälde aus dem Mittelalter.",
    "Die Sonne scheint über den Hügeln im Süden.",
    "Meine Schwester wohnt in einer kleinen Wohnung in München.",
    "Der Fußballverein gewinnt das Spiel am Wochenende.",
    "Die Bücher stehen ordentlich im Regal.",
    "Er läuft jeden Tag fünf Kilometer durch den Wald.",
    "Das Wetter in Köln ist heute grau und trüb.",
    "Die Kühe grasen ruhig auf der Weide.",
    "The quick brown fox jumps over the lazy dog.",
    "A small model learns from short sentences.",
    "The weather in London is grey and rainy today.",
    "Children play happily in the park after school.",
    "The baker bakes fresh bread every morning.",
    "Birds sing loudly in the tall trees.",
    "We take the train across the border to Austria.",
    "The museum shows paintings from the middle ages.",
    "My sister lives in a small flat in Munich.",
    "The books stand neatly on the shelf.",
    "He runs five kilometres through the forest every day.",
    "After dinner we drink a cup of coffee.",
]
PROBES = [
    "Die Müllerin wäscht die Wäsche im Fluss.",
    "ÜBER ALLES: Größe zählt nicht!!! Ökonomie und Ärger.",
    "The fox is QUICK and the dog is lazy.",
    "Ein völlig neues Wort: Quaxdröhnübung.",
]


# ----------------------------------------------------------------------------------------------------------------
# A fastai_ulmfit archive, made with fastai
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Ulmfit:
    """The trained learners, the files of the archive (name -> bytes), fastai's ids of `PROBES` per direction."""

    learners: dict
    files: dict[str, bytes]
    folders: tuple[str, ...]
    ids: dict[str, list[list[int]]]
    figures: dict[str, float] = field(default_factory=dict)

    def archive(self, files: dict[str, bytes] | None = None, folders: tuple[str, ...] | None = None) -> bytes:
        return tgz(self.files if files is None else files, folders=self.folders if folders is None else folders)

    def without(self, *prefixes: str) -> dict[str, bytes]:
        return {name: data for name, data in self.files.items() if not name.startswith(prefixes)}


@pytest.fixture(scope="module")
def ulmfit(tmp_path_factory) -> Ulmfit:
    """Train the forward and the backward model once (the backward one reuses the forward one's SentencePiece
    model, as fastai_ulmfit's notebooks do), and lay them out as fastai_ulmfit's archives are."""
    pytest.importorskip("sentencepiece", reason="fastai's SentencePieceTokenizer trains the reference")
    fa = pytest.importorskip("fastai.text.all", reason="fastai is the parity reference")
    import pandas as pd

    root = tmp_path_factory.mktemp("ulmfit")
    spm_cache, layout = root / "spm_cache", root / "layout" / TOP
    df = pd.DataFrame({"text": TEXTS})
    learners, ids, figures = {}, {}, {}
    for direction in ("fwd", "bwd"):
        random.seed(0)
        torch.manual_seed(0)
        sp_model = None if direction == "fwd" else spm_cache / "spm.model"
        sp = fa.SentencePieceTokenizer(lang="de", vocab_sz=VOCAB_SZ, sp_model=sp_model, cache_dir=spm_cache)
        block = fa.TextBlock.from_df("text", is_lm=True, tok=sp, backwards=direction == "bwd")
        splitter = fa.RandomSplitter(valid_pct=0.1, seed=42)
        dls = fa.DataBlock(blocks=block, get_x=fa.ColReader("text"), splitter=splitter).dataloaders(
            df, bs=8, seq_len=16, num_workers=0
        )
        config = dict(fa.awd_lstm_lm_config, emb_sz=EMB, n_hid=HID, n_layers=LAYERS)
        learn = fa.language_model_learner(
            dls, fa.AWD_LSTM, config=config, pretrained=False, metrics=[fa.accuracy, fa.Perplexity()], path=root
        )
        with learn.no_bar(), learn.no_logging():
            learn.fit_one_cycle(1, 1e-2)
        folder = layout / direction
        folder.mkdir(parents=True)
        learn.save((folder / "de_wikitext_model").absolute(), with_opt=False)
        learn.save_encoder((folder / "de_wikitext_encoder").absolute())
        with open(folder / "de_wikitext_vocab.pkl", "wb") as f:
            pickle.dump(learn.dls.vocab, f)
        train_loss, valid_loss, accuracy, perplexity = learn.recorder.values[-1]
        stats = {"train_loss": train_loss, "valid_loss": valid_loss, "accuracy": accuracy, "perplexity": perplexity}
        model_json = {
            "lang": "de",
            "step": "lm",
            "backwards": direction == "bwd",
            "batch_size": 8,
            "vocab_size": VOCAB_SZ,
            "lr": 0.01,
            "num_epochs": 1,
            "drop_mult": 1.0,
            "stats": stats,
            "tokenizer": {"class": "SentencePieceTokenizer", "params": {"lang": "de", "vocab_sz": VOCAB_SZ}},
        }
        (folder / "model.json").write_text(json.dumps(model_json, indent=4))
        (folder / "history.csv").write_text("epoch,train_loss\n0,1.0\n")
        figures[direction] = stats
        # fastai's own numericalization of the probes
        tokenizer = fa.Tokenizer(fa.SentencePieceTokenizer(lang="de", sp_model=spm_cache / "spm.model"))
        numericalize = fa.Numericalize(vocab=learn.dls.vocab)
        ids[direction] = [numericalize(tokenizer(text)).tolist() for text in PROBES]
        learners[direction] = learn
    (layout / "spm").mkdir()
    for name in ("spm.model", "spm.vocab"):
        (layout / "spm" / name).write_bytes((spm_cache / name).read_bytes())
    files = {
        str(path.relative_to(layout.parent)): path.read_bytes() for path in sorted(layout.rglob("*")) if path.is_file()
    }
    folders = (TOP, f"{TOP}/fwd", f"{TOP}/bwd", f"{TOP}/spm")
    return Ulmfit(learners=learners, files=files, folders=folders, ids=ids, figures=figures)


def max_logit_diff(out: Path, learn, ids: list[list[int]], direction: str) -> float:
    """Max |logits - fastai's logits| on fastai's ids of the probes (reversed for the backward model, as fastai's
    LM loader feeds it); fastai's model in eval mode with a fresh state for each text."""
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    reference = learn.model.eval()
    diff = 0.0
    with torch.no_grad():
        for doc in ids:
            x = torch.tensor([doc[::-1] if direction == "bwd" else doc])
            reference.reset()
            diff = max(diff, (model(x).logits - reference(x)[0]).abs().max().item())
    return diff


# ----------------------------------------------------------------------------------------------------------------
# A local web server with short links
# ----------------------------------------------------------------------------------------------------------------


class Web:
    """What the local server serves: `files` (path -> bytes), `redirects` (path -> (status, Location)); the
    requests it got."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.redirects: dict[str, tuple[int, str]] = {}
        self.requests: list[str] = []
        self.base = ""


@pytest.fixture
def web():
    state = Web()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            state.requests.append(self.path)
            if self.path in state.redirects:
                status, location = state.redirects[self.path]
                self.send_response(status)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{server.server_port}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


SHORT_LINK_CHAIN = ["/ulmfit-dewiki", "/r1", "/r2", "/r3", "/r4", "/files/dewiki.tgz"]


def short_link(web: Web, archive: bytes) -> str:
    """Serve `archive` behind a chain of the five redirect statuses (relative and absolute Locations); its URL."""
    for (src, dst), status in zip(zip(SHORT_LINK_CHAIN, SHORT_LINK_CHAIN[1:]), (301, 302, 303, 307, 308)):
        web.redirects[src] = (status, dst if status % 2 else web.base + dst)
    web.files[SHORT_LINK_CHAIN[-1]] = archive
    return web.base + SHORT_LINK_CHAIN[0]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "hf-bpt3c" in err, err
    return err


# ----------------------------------------------------------------------------------------------------------------
# Parity with fastai, redirects and the cache
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.fastai
@pytest.mark.parametrize("direction", ["fwd", "bwd"])
def test_short_link_download_matches_fastai_and_is_cached(ulmfit, web, tmp_path, direction):
    url = short_link(web, ulmfit.archive())
    fetched = fetch_fastai(url, tmp_path / "out", direction=direction, cache_dir=tmp_path / "cache")
    assert web.requests == SHORT_LINK_CHAIN  # every redirect followed, once
    assert (fetched.layout, fetched.direction, fetched.lang, fetched.lang_source) == (
        "fastai_ulmfit",
        direction,
        "de",
        "model.json",
    )
    assert (fetched.from_cache, fetched.url, fetched.archive.parent) == (False, url, tmp_path / "cache")
    assert fetched.archive.name.startswith("ulmfit-dewiki-") and fetched.archive.suffix == ".tgz"
    assert fetched.conversion.tokenizer == "sentencepiece"

    out = tmp_path / "out"
    config = AwdLstmConfig.from_pretrained(out)
    assert config.backwards is (direction == "bwd")
    assert (config.embedding_size, config.hidden_size, config.num_hidden_layers) == (EMB, HID, LAYERS)
    assert config.vocab_size == len(ulmfit.learners[direction].dls.vocab)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer(PROBES)["input_ids"] == ulmfit.ids[direction]
    diff = max_logit_diff(out, ulmfit.learners[direction], ulmfit.ids[direction], direction)
    print(f"\n{direction}: max |logits - fastai logits| = {diff:.3g}")
    assert diff <= TOL

    again = fetch_fastai(url, tmp_path / "again", direction=direction, cache_dir=tmp_path / "cache")
    assert again.from_cache and again.archive == fetched.archive
    assert web.requests == SHORT_LINK_CHAIN  # no second request
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [fetched.archive.name]


@pytest.mark.fastai
def test_cli_fetch_writes_a_card_with_language_direction_source_and_figures(ulmfit, web, tmp_path, capsys):
    url = short_link(web, ulmfit.archive())
    args = ["fetch-fastai", url, "--out", str(tmp_path / "out"), "--direction", "bwd"]
    assert main([*args, "--cache-dir", str(tmp_path / "cache"), "--bptt", "20", "--max-len", "60"]) == 0
    printed = capsys.readouterr().out
    assert "downloaded the archive" in printed and url in printed
    assert "fastai_ulmfit archive: the bwd model, language de (from model.json)" in printed
    assert "tokenizer: SentencePiece (language de)" in printed and "backwards" in printed
    config = AwdLstmConfig.from_pretrained(tmp_path / "out")
    assert (config.backwards, config.bptt, config.max_len) == (True, 20, 60)

    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert card.data.language == "de"
    stats = ulmfit.figures["bwd"]
    for text in (
        "German Wikipedia",
        "**backward (right-to-left)** model (`bwd/`)",
        f"<{url}>",
        "github.com/floleuerer/fastai_ulmfit",
        "SentencePieceTokenizer",
        f"- `stats.perplexity`: {stats['perplexity']:.6g}",
        f"- `stats.accuracy`: {stats['accuracy']:.6g}",
        "- `num_epochs`: 1",
        "- `tokenizer.class`: `SentencePieceTokenizer`",
        "Licence note",
        "| Reading direction | backward (right to left) |",
    ):
        assert text in card.text, text
    assert "`backwards`" not in card.text  # booleans are not figures


@pytest.mark.fastai
def test_local_archive_detects_either_layout(ulmfit, tmp_path, capsys):
    archive = tmp_path / "community-model.tgz"
    archive.write_bytes(ulmfit.archive())
    assert main(["fetch-fastai", "--archive", str(archive), "--out", str(tmp_path / "cli")]) == 0
    printed = capsys.readouterr().out
    assert "read the local archive" in printed and "fastai_ulmfit archive: the fwd model, language de" in printed
    assert AwdLstmConfig.from_pretrained(tmp_path / "cli").backwards is False

    fetched = fetch_fastai(None, tmp_path / "api", archive=archive, direction="bwd")
    assert (fetched.layout, fetched.url, fetched.from_cache, fetched.direction) == (
        "fastai_ulmfit",
        None,
        False,
        "bwd",
    )
    assert probe_ids(tmp_path / "api") == ulmfit.ids["bwd"]
    assert "`community-model.tgz`" in (tmp_path / "api" / "README.md").read_text()

    # fastai's own WT103 layout (one folder, one .pth, one .pkl) is still recognised, with or without a name
    wt103 = tmp_path / "wt103-copy.tgz"
    wt103.write_bytes(zoo_archive("wt103-bwd"))
    fetched = fetch_fastai(None, tmp_path / "wt103", archive=wt103, direction="bwd")
    assert (fetched.layout, fetched.lang, fetched.conversion.tokenizer) == ("wt103", "en", "word")
    assert AwdLstmConfig.from_pretrained(tmp_path / "wt103").backwards is True
    assert "URLs.WT103_BWD" in (tmp_path / "wt103" / "README.md").read_text()
    assert fetch_fastai("wt103-fwd", tmp_path / "named", archive=wt103).layout == "wt103"
    with pytest.raises(ValueError, match="is the forward model, not direction='bwd'"):
        fetch_fastai("wt103-fwd", tmp_path / "x", archive=wt103, direction="bwd")
    with pytest.raises(ValueError, match="lang='de' does not apply"):
        fetch_fastai(None, tmp_path / "y", archive=wt103, lang="de")


def probe_ids(folder: Path) -> list[list[int]]:
    return AutoTokenizer.from_pretrained(folder)(PROBES)["input_ids"]


@pytest.mark.fastai
def test_language_comes_from_model_json_then_the_name_then_lang(ulmfit, tmp_path):
    # no top folder, and a model.json without any language
    files = {name.removeprefix(f"{TOP}/"): data for name, data in ulmfit.files.items()}
    files["fwd/model.json"] = json.dumps({"num_epochs": 1, "stats": {"perplexity": 42.5}}).encode()
    bare = ulmfit.archive(files, folders=("fwd", "bwd", "spm"))

    (tmp_path / "ulmfit-nlwiki.tgz").write_bytes(bare)
    fetched = fetch_fastai(None, tmp_path / "named", archive=tmp_path / "ulmfit-nlwiki.tgz", lang="pt")
    assert (fetched.lang, fetched.lang_source) == ("nl", "name")
    assert any("'nl' from the archive's name is used, not lang='pt'" in note for note in fetched.conversion.notes)

    (tmp_path / "model.tgz").write_bytes(bare)
    fetched = fetch_fastai(None, tmp_path / "argument", archive=tmp_path / "model.tgz", lang="pt")
    assert (fetched.lang, fetched.lang_source) == ("pt", "argument")
    assert ModelCard.load(tmp_path / "argument" / "README.md").data.language == "pt"
    assert AutoTokenizer.from_pretrained(tmp_path / "argument").init_kwargs.get("lang") == "pt"

    fetched = fetch_fastai(None, tmp_path / "unknown", archive=tmp_path / "model.tgz")
    assert fetched.lang is None and any("pass lang= (--lang)" in note for note in fetched.conversion.notes)
    card = ModelCard.load(tmp_path / "unknown" / "README.md")
    assert card.data.language is None and "- `stats.perplexity`: 42.5" in card.text
    with pytest.raises(ValueError, match="lang \\(--lang\\) must be a language code"):
        fetch_fastai(None, tmp_path / "bad", archive=tmp_path / "model.tgz", lang="de; rm -rf /")


@pytest.mark.fastai
@pytest.mark.parametrize(
    "content, note",
    [
        (b"[1, 2, 3]", "not a JSON object (a JSON list)"),
        (b'{"a": ' + b"[" * 40000 + b"]" * 40000 + b"}", "more than 64.0 KiB"),
        (b"[" * 30000 + b"]" * 30000, "not valid JSON"),
        (b'{"lang": "de", "stats": {"perplexity": 1', "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8 text"),
    ],
    ids=["list", "oversize", "deep", "truncated", "binary"],
)
def test_model_json_that_is_not_an_object_is_ignored_with_a_note(ulmfit, tmp_path, content, note):
    files = dict(ulmfit.files)
    files[f"{TOP}/fwd/model.json"] = content
    (tmp_path / "a.tgz").write_bytes(ulmfit.archive(files))
    fetched = fetch_fastai(None, tmp_path / "out", archive=tmp_path / "a.tgz", lang="de")
    assert any(note in n and "model.json ignored" in n for n in fetched.conversion.notes), fetched.conversion.notes
    assert (fetched.figures, fetched.lang, fetched.lang_source) == ({}, "de", "name")  # the top folder dewiki/
    assert "The archive records no training figures" in (tmp_path / "out" / "README.md").read_text()


@pytest.mark.fastai
def test_model_json_values_are_shown_only_when_plain(ulmfit, tmp_path):
    hostile = {
        "lang": "<script>alert(1)</script>",
        "language": "de",
        "num_epochs": 10,
        "lr": 0.01,
        "note": "trained on 160k articles",
        "stats": {
            "perplexity": 16.094558715820312,
            "html": "<img src=x onerror=alert(1)>",
            "link": "[click](http://evil.example)",
            "long": "x" * 500,
            "huge": 10**30,
            "list": [1, 2, 3],
            "deep": {"deeper": {"deepest": {"too_deep": 1}}},
        },
        "a key with spaces": 1,
        "nan": float("nan"),
    }
    files = dict(ulmfit.files)
    files[f"{TOP}/fwd/model.json"] = json.dumps(hostile).encode()
    (tmp_path / "a.tgz").write_bytes(ulmfit.archive(files))
    fetched = fetch_fastai(None, tmp_path / "out", archive=tmp_path / "a.tgz")
    assert fetched.lang == "de"  # the first plain language code: "lang" is not one
    assert fetched.figures == {
        "language": "de",
        "num_epochs": 10,
        "lr": 0.01,
        "note": "trained on 160k articles",
        "stats.perplexity": 16.094558715820312,
    }
    text = (tmp_path / "out" / "README.md").read_text()
    assert "- `stats.perplexity`: 16.0946" in text and "- `note`: `trained on 160k articles`" in text
    for bad in ("<script>", "<img", "evil.example", "x" * 81, "1" + "0" * 30, "too_deep", "a key with spaces"):
        assert bad not in text
    assert any("entries of model.json not shown" in note for note in fetched.conversion.notes)


# ----------------------------------------------------------------------------------------------------------------
# Incomplete and damaged archives
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.fastai
def test_an_archive_without_the_direction_names_what_it_has(ulmfit, web, tmp_path, capsys):
    url = short_link(web, ulmfit.archive(ulmfit.without(f"{TOP}/bwd/"), folders=(TOP, f"{TOP}/fwd", f"{TOP}/spm")))
    with pytest.raises(MissingDirection, match=r"holds no backward .*dewiki/bwd/\*model\.pth.*forward model \(fwd\)"):
        fetch_fastai(url, tmp_path / "out", direction="bwd", cache_dir=tmp_path / "cache")
    cached = list((tmp_path / "cache").iterdir())
    assert len(cached) == 1  # the archive is fine: it stays in the cache for --direction fwd
    assert not (tmp_path / "out").exists()
    capsys.readouterr()  # the progress bar of the download
    args = ["fetch-fastai", url, "--out", str(tmp_path / "out"), "--direction", "bwd"]
    assert main([*args, "--cache-dir", str(tmp_path / "cache")]) == 2
    err = one_line_error(capsys)
    assert "--direction fwd" in err and len(web.requests) == len(SHORT_LINK_CHAIN)
    assert fetch_fastai(url, tmp_path / "fwd", cache_dir=tmp_path / "cache").from_cache


@pytest.mark.fastai
def test_an_archive_without_spm_or_with_two_models_is_refused(ulmfit, tmp_path):
    (tmp_path / "a.tgz").write_bytes(ulmfit.archive(ulmfit.without(f"{TOP}/spm/")))
    with pytest.raises(ValueError, match=r"has no dewiki/spm/spm\.model"):
        fetch_fastai(None, tmp_path / "out", archive=tmp_path / "a.tgz")
    files = {**ulmfit.files, f"{TOP}/fwd/other_model.pth": ulmfit.files[f"{TOP}/fwd/de_wikitext_model.pth"]}
    (tmp_path / "b.tgz").write_bytes(ulmfit.archive(files))
    with pytest.raises(ValueError, match=r"exactly one dewiki/fwd/\*model\.pth file, found \["):
        fetch_fastai(None, tmp_path / "out", archive=tmp_path / "b.tgz")
    assert not (tmp_path / "out").exists()


def damaged(spm: bytes) -> dict[str, bytes]:
    return {
        "truncated": b"\x0a\xff\xff\xff\x0f" + spm,  # a piece that claims 4 GiB
        "text": b"this is not a SentencePiece model\n",
        "pickle": pickle.dumps(["xxunk", "xxpad"]),
    }


@pytest.mark.fastai
@pytest.mark.parametrize("kind", ["truncated", "text", "pickle"])
def test_a_damaged_spm_model_gives_a_clear_error(ulmfit, tmp_path, capsys, kind):
    files = dict(ulmfit.files)
    files[f"{TOP}/spm/spm.model"] = damaged(files[f"{TOP}/spm/spm.model"])[kind]
    (tmp_path / "a.tgz").write_bytes(ulmfit.archive(files))
    with pytest.raises(ValueError, match=r"spm\.model is damaged or not a usable SentencePiece model") as caught:
        fetch_fastai(None, tmp_path / "out", archive=tmp_path / "a.tgz")
    assert "a.tgz" in str(caught.value)
    assert main(["fetch-fastai", "--archive", str(tmp_path / "a.tgz"), "--out", str(tmp_path / "out")]) == 2
    assert "spm.model is damaged" in one_line_error(capsys)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------------------------------
# Hostile archives: the same checks as for fastai's WT103 archives
# ----------------------------------------------------------------------------------------------------------------


def all_paths(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


@pytest.mark.fastai
@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink"])
def test_hostile_ulmfit_archives_are_refused_and_write_nothing(ulmfit, tmp_path, capsys, kind):
    files = ulmfit.without(f"{TOP}/spm/spm.model", f"{TOP}/fwd/de_wikitext_model.pth")
    extra, named = [], None
    if kind == "dotdot":
        named = f"{TOP}/fwd/../../../evil_model.pth"
        files[named] = b"x"
    elif kind == "absolute":
        named = str(tmp_path / "outside" / "fwd" / "x_model.pth")
        files[named] = b"x"
    elif kind == "symlink":
        named = f"{TOP}/spm/spm.model"
        extra.append(link(named, str(tmp_path / "outside" / "secret"), tarfile.SYMTYPE))
    else:
        named = f"{TOP}/fwd/de_wikitext_model.pth"
        extra.append(link(named, "../../outside.pth", tarfile.LNKTYPE))
    archive = tmp_path / "evil.tgz"
    archive.write_bytes(tgz(files, *extra, folders=ulmfit.folders))
    before = all_paths(tmp_path)
    with pytest.raises(ValueError, match="refused") as caught:
        fetch_fastai(None, tmp_path / "work" / "out", archive=archive)
    assert named in str(caught.value) and str(archive) in str(caught.value)
    assert all_paths(tmp_path) == before
    assert main(["fetch-fastai", "--archive", str(archive), "--out", str(tmp_path / "work" / "out")]) == 2
    assert "refused" in one_line_error(capsys)


@pytest.mark.fastai
def test_ulmfit_archives_are_held_to_the_archive_limits(ulmfit, web, tmp_path):
    archive = tmp_path / "a.tgz"
    archive.write_bytes(ulmfit.archive())
    with pytest.raises(LimitExceeded, match="more than 5 members"):
        fetch_fastai(None, tmp_path / "out", archive=archive, limits=ArchiveLimits(max_members=5))
    with pytest.raises(LimitExceeded, match="per file"):
        fetch_fastai(None, tmp_path / "out", archive=archive, limits=ArchiveLimits(max_member_bytes=2048))
    # a hostile download is removed from the cache, as for WT103
    evil = {**ulmfit.files, f"{TOP}/../evil.txt": b"x"}
    url = short_link(web, tgz(evil, folders=ulmfit.folders))
    with pytest.raises(ValueError, match=r"'dewiki/\.\./evil\.txt'.*removed from the cache"):
        fetch_fastai(url, tmp_path / "out", cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == [] and not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------------------------------
# Redirects: bounded, http(s) only; offline message
# ----------------------------------------------------------------------------------------------------------------


def test_redirect_loops_and_non_http_targets_are_refused(web, tmp_path, capsys):
    web.redirects["/loop-a"] = (302, "/loop-b")
    web.redirects["/loop-b"] = (302, "/loop-a")
    with pytest.raises(DownloadError, match=r"/loop-a: HTTP 302 too many redirects .* or a redirect loop"):
        fetch_fastai(web.base + "/loop-a", tmp_path / "out", cache_dir=tmp_path / "cache")
    assert len(web.requests) <= 12

    web.requests.clear()
    for i in range(12):  # a chain longer than MAX_REDIRECTS, without repeating a URL
        web.redirects[f"/hop{i}"] = (301, f"/hop{i + 1}")
    with pytest.raises(DownloadError, match="too many redirects"):
        fetch_fastai(web.base + "/hop0", tmp_path / "out", cache_dir=tmp_path / "cache")
    assert len(web.requests) <= 11

    for target in ("ftp://127.0.0.1/ulmfit.tgz", "file:///etc/passwd"):
        web.redirects["/elsewhere"] = (302, target)
        with pytest.raises(DownloadError, match=r"redirects to '(ftp|file)://.*not an http:// or https:// URL"):
            fetch_fastai(web.base + "/elsewhere", tmp_path / "out", cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == [] and not (tmp_path / "out").exists()

    capsys.readouterr()
    args = ["fetch-fastai", web.base + "/elsewhere", "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path)]
    assert main(args) == 2
    assert "not an http:// or https:// URL" in one_line_error(capsys)


def test_url_errors_name_the_url_and_the_archive_route(web, tmp_path, capsys):
    url = web.base + "/ulmfit-xxwiki"
    with pytest.raises(DownloadError, match=r"ulmfit-xxwiki: HTTP 404.*--archive PATH"):
        fetch_fastai(url, tmp_path / "out", cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="not both"):
        fetch_fastai(url, tmp_path / "out", archive=tmp_path / "a.tgz")
    with pytest.raises(ValueError, match="base_url"):
        fetch_fastai(url, tmp_path / "out", base_url=web.base)
    with pytest.raises(ValueError, match=r"name must be one of \['wt103-bwd', 'wt103-fwd'\] or the http"):
        fetch_fastai("ulmfit-dewiki", tmp_path / "out")
    with pytest.raises(ValueError, match="direction"):
        fetch_fastai(url, tmp_path / "out", direction="both")
    capsys.readouterr()
    assert main(["fetch-fastai", "--out", str(tmp_path / "out")]) == 2
    assert "name is needed" in one_line_error(capsys)


# ----------------------------------------------------------------------------------------------------------------
# Loose files: convert-fastai --sp-model
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.fastai
def test_loose_files_convert_with_the_sentencepiece_model(ulmfit, tmp_path, capsys):
    for name, data in ulmfit.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    folder = tmp_path / TOP
    weights, vocab, spm = folder / "fwd/de_wikitext_model.pth", folder / "fwd/de_wikitext_vocab.pkl", folder / "spm"
    result = convert_fastai(weights, vocab, tmp_path / "api", sp_model=spm / "spm.model", lang="de")
    assert (result.tokenizer, result.lang, result.kind) == ("sentencepiece", "de", "language_model")
    assert probe_ids(tmp_path / "api") == ulmfit.ids["fwd"]
    assert max_logit_diff(tmp_path / "api", ulmfit.learners["fwd"], ulmfit.ids["fwd"], "fwd") <= TOL
    assert ModelCard.load(tmp_path / "api" / "README.md").data.language == "de"

    bwd = folder / "bwd"
    args = ["convert-fastai", str(bwd / "de_wikitext_model.pth"), "--vocab", str(bwd / "de_wikitext_vocab.pkl")]
    args += ["--sp-model", str(spm / "spm.model"), "--lang", "de", "--backwards", "--out", str(tmp_path / "cli")]
    assert main(args) == 0
    assert "tokenizer: SentencePiece (language de)" in capsys.readouterr().out
    assert probe_ids(tmp_path / "cli") == ulmfit.ids["bwd"]
    assert max_logit_diff(tmp_path / "cli", ulmfit.learners["bwd"], ulmfit.ids["bwd"], "bwd") <= TOL

    # the encoder (`save_encoder`) converts as well, to a folder for AutoModel
    encoder = convert_fastai(
        folder / "fwd/de_wikitext_encoder.pth", vocab, tmp_path / "enc", sp_model=spm / "spm.model"
    )
    assert encoder.kind == "encoder" and probe_ids(tmp_path / "enc") == ulmfit.ids["fwd"]


@pytest.mark.fastai
def test_loose_files_errors_are_clear(ulmfit, tmp_path, capsys):
    for name, data in ulmfit.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    weights, vocab = tmp_path / TOP / "fwd/de_wikitext_model.pth", tmp_path / TOP / "fwd/de_wikitext_vocab.pkl"
    for kind, data in damaged((tmp_path / TOP / "spm/spm.model").read_bytes()).items():
        (tmp_path / f"{kind}.model").write_bytes(data)
        with pytest.raises(ValueError, match=rf"SP_MODEL file \S*{kind}\.model is damaged or not a usable"):
            convert_fastai(weights, vocab, tmp_path / "out", sp_model=tmp_path / f"{kind}.model")
    with pytest.raises(FileNotFoundError, match=r"SP_MODEL file \S*missing\.model does not exist"):
        convert_fastai(weights, vocab, tmp_path / "out", sp_model=tmp_path / "missing.model")
    with pytest.raises(ValueError, match=r"lang='de' needs the SentencePiece model"):
        convert_fastai(weights, vocab, tmp_path / "out", lang="de")
    assert not (tmp_path / "out").exists()
    args = ["convert-fastai", str(weights), "--vocab", str(vocab), "--out", str(tmp_path / "out")]
    assert main([*args, "--sp-model", str(tmp_path / "text.model")]) == 2
    assert "text.model is damaged" in one_line_error(capsys)
    assert main([*args, "--sp-model", str(tmp_path / "missing.model")]) == 2
    assert "missing.model does not exist" in one_line_error(capsys)
    assert not (tmp_path / "out").exists()
