"""`fetch_fastai` / `hf-bpt3c fetch-fastai`: fastai's WT103 archive layout served by a local HTTP server that
counts requests; parity with a real fastai language model, the download cache, interrupted and failed downloads,
and hostile archives (paths outside, links, devices, code in the vocabulary pickle)."""

from __future__ import annotations

import io
import json
import os
import pickle
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from conftest import REPO_ROOT, small_config
from huggingface_hub import ModelCard
from transformers import AutoModelForCausalLM

from hf_bpt3c import AwdLstmConfig, AwdLstmForCausalLM, AwdLstmForSequenceClassification, AwdLstmModel
from hf_bpt3c.cli import main
from hf_bpt3c.convert import FASTAI_BASE_URL_ENV, FASTAI_MODEL_ZOO_URL, convert_fastai, fetch_fastai
from hf_bpt3c.convert import download as download_module
from hf_bpt3c.convert.download import DownloadError
from hf_bpt3c.model_card import build_model_card
from hf_bpt3c.models.awd_lstm.tokenization_awd_lstm import SPECIAL_TOKENS, AwdLstmTokenizer
from hf_bpt3c.training.data import FASTAI_SAMPLE_URL_ENV, imdb_sample

ITOS = [*SPECIAL_TOKENS, *(f"w{i}" for i in range(21))]  # 30 tokens
EMB, HID, LAYERS = 8, 12, 3
FASTAI_CONFIG = dict(emb_sz=EMB, n_hid=HID, n_layers=LAYERS, pad_token=1, bidir=False, output_p=0.1)
FASTAI_CONFIG.update(hidden_p=0.15, input_p=0.25, embed_p=0.02, weight_p=0.2, tie_weights=True, out_bias=True)
# the member names of fastai's model zoo archives (fastai itself globs the one *.pth and one *.pkl of the folder)
MEMBERS = {
    "wt103-fwd": ("wt103-fwd/lstm_fwd.pth", "wt103-fwd/itos_wt103.pkl"),
    "wt103-bwd": ("wt103-bwd/lstm_bwd.pth", "wt103-bwd/itos_wt103.pkl"),
}
TOL = 1e-5


# ----------------------------------------------------------------------------------------------------------------
# Archives
# ----------------------------------------------------------------------------------------------------------------


def torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def toy_state_dict(vocab: int = len(ITOS)) -> dict[str, torch.Tensor]:
    """A fastai v2 LM state dict (tied decoder) with seeded random values, without needing fastai."""
    gen = torch.Generator().manual_seed(0)
    embedding = torch.randn(vocab, EMB, generator=gen)
    state = {"0.encoder.weight": embedding, "0.encoder_dp.emb.weight": embedding}
    for i in range(LAYERS):
        n_in, n_out = (EMB if i == 0 else HID), (EMB if i == LAYERS - 1 else HID)
        state[f"0.rnns.{i}.weight_hh_l0_raw"] = torch.randn(4 * n_out, n_out, generator=gen)
        state[f"0.rnns.{i}.module.weight_ih_l0"] = torch.randn(4 * n_out, n_in, generator=gen)
        state[f"0.rnns.{i}.module.bias_ih_l0"] = torch.randn(4 * n_out, generator=gen)
        state[f"0.rnns.{i}.module.bias_hh_l0"] = torch.randn(4 * n_out, generator=gen)
    return {**state, "1.decoder.weight": embedding, "1.decoder.bias": torch.randn(vocab, generator=gen)}


def tgz(files: dict[str, bytes], *extra: tarfile.TarInfo, folders: tuple[str, ...] = ()) -> bytes:
    """A gzip tar with `folders`, then `files` (name -> content), then the `extra` members as they are."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in folders:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return buffer.getvalue()


def zoo_archive(name: str = "wt103-fwd", weights=None, itos=None) -> bytes:
    """fastai's model zoo layout: `wt103-fwd/` holding `lstm_fwd.pth` (weights) and `itos_wt103.pkl`."""
    pth, pkl = MEMBERS[name]
    weights = toy_state_dict() if weights is None else weights
    itos_bytes = pickle.dumps(ITOS if itos is None else itos)
    return tgz({pth: torch_bytes(weights), pkl: itos_bytes}, folders=(name,))


def link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


class _RunsCode:
    """A pickle payload that would run a shell command when unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def all_paths(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


# ----------------------------------------------------------------------------------------------------------------
# Fixtures: an isolated HF_HOME and temp folder, and a local model zoo
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """HF_HOME (env and huggingface_hub's constant) and the temp folder inside tmp_path; no proxy, no mirror env."""
    hf_home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HOME", str(hf_home))
    monkeypatch.delenv(FASTAI_BASE_URL_ENV, raising=False)
    monkeypatch.delenv(FASTAI_SAMPLE_URL_ENV, raising=False)
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    (tmp_path / "systmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "systmp"))
    return hf_home


class Zoo:
    """What the local server serves (`files`: name -> bytes), which names it cuts short, and the requests seen."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.truncated: set[str] = set()
        self.requests: list[str] = []
        self.base_url = ""


@pytest.fixture
def zoo():
    state = Zoo()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            state.requests.append(self.path)
            name = self.path.rsplit("/", 1)[-1]
            body = state.files.get(name) if self.path.startswith("/zoo/") else None
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if name in state.truncated else body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{server.server_port}/zoo/"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def dead_url() -> str:
    """A URL on a port where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/zoo/"


# ----------------------------------------------------------------------------------------------------------------
# Parity with a real fastai language model
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fastai_text():
    return pytest.importorskip("fastai.text.all", reason="fastai is the parity reference")


def fastai_lm(fastai_text):
    torch.manual_seed(0)
    model = fastai_text.get_language_model(fastai_text.AWD_LSTM, len(ITOS), config=dict(FASTAI_CONFIG))
    with torch.no_grad():
        model[1].decoder.bias.normal_(0, 0.1)  # fastai zeroes it; make the mapping visible
    return model


def learn_save_bytes(fastai_text, model, folder: Path) -> bytes:
    """fastai's `learn.save` file `{'model': ..., 'opt': ...}` after one optimizer step (so the state is filled)."""
    dls = fastai_text.DataLoaders(fastai_text.TfmdDL([]), fastai_text.TfmdDL([]), device="cpu")
    learn = fastai_text.TextLearner(dls, model, loss_func=fastai_text.CrossEntropyLossFlat(), path=folder)
    learn.create_opt()
    ids = torch.randint(len(ITOS), (2, 10))
    learn.loss_func(model(ids)[0], ids).backward()
    learn.opt.step()
    learn.save("lm")
    saved = folder / "models" / "lm.pth"
    assert set(torch.load(saved, weights_only=False)) == {"model", "opt"}
    return saved.read_bytes()


def max_logit_diff(folder: Path, reference) -> float:
    """Max |logits - fastai logits| of the converted LM on random token ids (fastai: eval mode, fresh state)."""
    model = AutoModelForCausalLM.from_pretrained(folder)
    reference.eval()
    diff = 0.0
    with torch.no_grad():
        for ids in torch.randint(len(ITOS), (3, 1, 25)):
            reference.reset()
            diff = max(diff, (model(ids).logits - reference(ids)[0]).abs().max().item())
    return diff


@pytest.mark.fastai
def test_forward_model_from_server_matches_fastai_and_gets_a_card(fastai_text, zoo, tmp_path):
    reference = fastai_lm(fastai_text)
    zoo.files["wt103-fwd.tgz"] = zoo_archive("wt103-fwd", weights=reference.state_dict())
    fetched = fetch_fastai("wt103-fwd", tmp_path / "out", base_url=zoo.base_url, cache_dir=tmp_path / "cache")
    assert (fetched.from_cache, fetched.url) == (False, zoo.base_url + "wt103-fwd.tgz")
    assert fetched.archive == tmp_path / "cache" / "wt103-fwd.tgz"
    assert fetched.conversion.layout == "v2"
    out = tmp_path / "out"
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= {p.name for p in out.iterdir()}
    config = AwdLstmConfig.from_pretrained(out)
    assert (config.vocab_size, config.embedding_size, config.hidden_size, config.num_hidden_layers) == (30, 8, 12, 3)
    assert config.backwards is False
    assert AwdLstmTokenizer.from_pretrained(out).convert_ids_to_tokens([0, 9, 29]) == ["xxunk", "w0", "w20"]
    assert max_logit_diff(out, reference) <= TOL

    card = ModelCard.load(out / "README.md")
    assert (card.data.datasets, card.data.language) == (["Salesforce/wikitext"], "en")
    for text in ("URLs.WT103_FWD", FASTAI_MODEL_ZOO_URL + "wt103-fwd.tgz", "**v2** layout", "## Source"):
        assert text in card.text
    for text in ("Licence note", "Apache-2.0", "CC BY-SA 3.0", "WikiText-103", "from a mirror"):
        assert text in card.text


@pytest.mark.fastai
def test_backward_learn_save_archive_through_the_cli(fastai_text, zoo, tmp_path, capsys):
    reference = fastai_lm(fastai_text)
    weights = learn_save_bytes(fastai_text, reference, tmp_path / "learner")
    pth, pkl = MEMBERS["wt103-bwd"]
    zoo.files["wt103-bwd.tgz"] = tgz({pth: weights, pkl: pickle.dumps(ITOS)}, folders=("wt103-bwd",))
    args = ["fetch-fastai", "wt103-bwd", "--out", str(tmp_path / "out"), "--base-url", zoo.base_url]
    assert main([*args, "--cache-dir", str(tmp_path / "cache"), "--bptt", "20", "--max-len", "60"]) == 0
    printed = capsys.readouterr().out
    assert "downloaded the archive" in printed and "backwards" in printed
    config = AwdLstmConfig.from_pretrained(tmp_path / "out")
    assert (config.backwards, config.bptt, config.max_len) == (True, 20, 60)
    assert max_logit_diff(tmp_path / "out", reference) <= TOL
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert "URLs.WT103_BWD" in card.text and "backwards=True" in card.text and "**backward**" in card.text


# ----------------------------------------------------------------------------------------------------------------
# Cache and base URL
# ----------------------------------------------------------------------------------------------------------------


def test_second_call_uses_the_cache_without_any_request(zoo, tmp_path):
    zoo.files["wt103-fwd.tgz"] = zoo_archive()
    first = fetch_fastai("wt103-fwd", tmp_path / "a", base_url=zoo.base_url, cache_dir=tmp_path / "cache")
    second = fetch_fastai("wt103-fwd", tmp_path / "b", base_url=zoo.base_url, cache_dir=tmp_path / "cache")
    assert (first.from_cache, second.from_cache) == (False, True)
    assert first.archive == second.archive == tmp_path / "cache" / "wt103-fwd.tgz"
    assert zoo.requests == ["/zoo/wt103-fwd.tgz"]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["wt103-fwd.tgz"]
    assert (tmp_path / "b" / "model.safetensors").is_file()


def test_default_cache_is_under_hf_home(zoo, tmp_path, isolated):
    zoo.files["wt103-fwd.tgz"] = zoo_archive()
    fetched = fetch_fastai("wt103-fwd", tmp_path / "out", base_url=zoo.base_url)
    assert fetched.archive == isolated / "hf_bpt3c" / "fastai" / "wt103-fwd.tgz"
    assert fetched.archive.is_file()
    assert fetch_fastai("wt103-fwd", tmp_path / "again", base_url=zoo.base_url).from_cache
    assert len(zoo.requests) == 1


def test_base_url_from_env_and_argument_wins(zoo, tmp_path, monkeypatch):
    zoo.files["wt103-fwd.tgz"] = zoo_archive()
    monkeypatch.setenv(FASTAI_BASE_URL_ENV, zoo.base_url.rstrip("/"))
    assert fetch_fastai("wt103-fwd", tmp_path / "a", cache_dir=tmp_path / "c1").url == zoo.base_url + "wt103-fwd.tgz"
    monkeypatch.setenv(FASTAI_BASE_URL_ENV, dead_url())
    fetched = fetch_fastai("wt103-fwd", tmp_path / "b", base_url=zoo.base_url, cache_dir=tmp_path / "c2")
    assert fetched.url == zoo.base_url + "wt103-fwd.tgz"
    assert len(zoo.requests) == 2


def test_interrupted_download_leaves_nothing_in_the_cache(zoo, tmp_path):
    zoo.files["wt103-fwd.tgz"] = zoo_archive()
    zoo.truncated.add("wt103-fwd.tgz")
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match=r"wt103-fwd\.tgz.*closed after \d+ of \d+ bytes.*--archive"):
        fetch_fastai("wt103-fwd", tmp_path / "out", base_url=zoo.base_url, cache_dir=cache)
    assert list(cache.iterdir()) == []
    assert not (tmp_path / "out").exists()
    zoo.truncated.clear()
    assert not fetch_fastai("wt103-fwd", tmp_path / "out", base_url=zoo.base_url, cache_dir=cache).from_cache
    assert len(zoo.requests) == 2


def test_non_empty_out_dir_is_refused_before_downloading(zoo, tmp_path):
    zoo.files["wt103-fwd.tgz"] = zoo_archive()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    with pytest.raises(ValueError, match="not empty"):
        fetch_fastai("wt103-fwd", tmp_path / "out", base_url=zoo.base_url, cache_dir=tmp_path / "cache")
    assert zoo.requests == []
    fetch_fastai("wt103-fwd", tmp_path / "out", base_url=zoo.base_url, cache_dir=tmp_path / "cache", overwrite=True)
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep"


def test_a_corrupt_cached_archive_is_reported_with_how_to_recover(zoo, tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "wt103-fwd.tgz").write_bytes(b"<html>not an archive</html>")
    with pytest.raises(ValueError, match=r"wt103-fwd\.tgz is not a gzip.*delete it"):
        fetch_fastai("wt103-fwd", tmp_path / "out", base_url=zoo.base_url, cache_dir=tmp_path / "cache")
    assert zoo.requests == []


# ----------------------------------------------------------------------------------------------------------------
# Network errors
# ----------------------------------------------------------------------------------------------------------------


def test_nothing_listening_gives_a_clear_message(tmp_path, capsys):
    url = dead_url()
    with pytest.raises(DownloadError) as caught:
        fetch_fastai("wt103-fwd", tmp_path / "out", base_url=url, cache_dir=tmp_path / "cache")
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, OSError)
    message = str(caught.value)
    assert url + "wt103-fwd.tgz" in message and "--archive PATH" in message and FASTAI_BASE_URL_ENV in message
    assert FASTAI_MODEL_ZOO_URL + "wt103-fwd.tgz" in message
    assert list((tmp_path / "cache").iterdir()) == []

    args = ["fetch-fastai", "wt103-fwd", "--out", str(tmp_path / "out"), "--base-url", url]
    assert main([*args, "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hf-bpt3c fetch-fastai: error:" in err
    assert url + "wt103-fwd.tgz" in err and "--archive PATH" in err


def test_http_404_gives_a_clear_message(zoo, tmp_path):
    with pytest.raises(DownloadError, match=r"could not download http://127\.0\.0\.1:\d+/zoo/wt103-bwd\.tgz: HTTP 404"):
        fetch_fastai("wt103-bwd", tmp_path / "out", base_url=zoo.base_url, cache_dir=tmp_path / "cache")
    assert zoo.requests == ["/zoo/wt103-bwd.tgz"]
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_server_that_never_answers_times_out(tmp_path, monkeypatch):
    monkeypatch.setattr(download_module, "TIMEOUT_S", 0.3)
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        with pytest.raises(DownloadError, match=r"timed out.*--archive"):
            fetch_fastai("wt103-fwd", tmp_path / "out", base_url=url, cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="name must be one of"):
        fetch_fastai("wt2", tmp_path / "out")
    with pytest.raises(ValueError, match="base_url"):
        fetch_fastai("wt103-fwd", tmp_path / "out", base_url="ftp.example.org/zoo")
    with pytest.raises(ValueError, match="not both"):
        fetch_fastai("wt103-fwd", tmp_path / "out", base_url="http://127.0.0.1/", archive=tmp_path / "a.tgz")
    with pytest.raises(FileNotFoundError, match="a.tgz"):
        fetch_fastai("wt103-fwd", tmp_path / "out", archive=tmp_path / "a.tgz")


# ----------------------------------------------------------------------------------------------------------------
# Local archives: wrong format, wrong contents, hostile members
# ----------------------------------------------------------------------------------------------------------------


def test_local_archive_needs_no_network(tmp_path):
    (tmp_path / "wt103-fwd.tgz").write_bytes(zoo_archive())
    fetched = fetch_fastai("wt103-fwd", tmp_path / "out", archive=tmp_path / "wt103-fwd.tgz", base_url=None)
    assert (fetched.from_cache, fetched.url, fetched.archive) == (False, None, tmp_path / "wt103-fwd.tgz")
    assert "from a mirror or a local file" in (tmp_path / "out" / "README.md").read_text()


def plain_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("wt103-fwd/lstm_fwd.pth")
        tar.addfile(info, io.BytesIO(b""))
    return buffer.getvalue()


@pytest.mark.parametrize("content", [b"this is not an archive", plain_tar()], ids=["text", "uncompressed-tar"])
def test_archive_that_is_not_gzip_is_refused_by_the_cli(tmp_path, capsys, content):
    (tmp_path / "model.tgz").write_bytes(content)
    args = ["fetch-fastai", "wt103-fwd", "--out", str(tmp_path / "out"), "--archive", str(tmp_path / "model.tgz")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "model.tgz" in err and "gzip" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "files, message",
    [
        ({"wt103-fwd/lstm_fwd.pth": b"x"}, r"exactly one \.pkl file, found 0"),
        ({"a/x.pth": b"x", "a/y.pth": b"y", "a/i.pkl": b"z"}, r"exactly one \.pth file, found 2"),
        ({"a/x.pth": b"x", "b/i.pkl": b"z"}, "several folders"),
        ({"a/b/x.pth": b"x", "a/i.pkl": b"z"}, "nested member 'a/b/x.pth'"),
    ],
    ids=["missing-pkl", "two-pth", "two-folders", "nested"],
)
def test_archive_with_wrong_contents_is_refused(tmp_path, files, message):
    (tmp_path / "wt103-fwd.tgz").write_bytes(tgz(files))
    with pytest.raises(ValueError, match=message):
        fetch_fastai("wt103-fwd", tmp_path / "out", archive=tmp_path / "wt103-fwd.tgz")
    assert not (tmp_path / "out").exists()


def hostile_members(outside: Path) -> dict[str, tuple[list[tarfile.TarInfo], dict[str, bytes], str]]:
    """Archives that try to write outside the extraction folder: (extra members, files, member named in error)."""
    weights, itos = torch_bytes(toy_state_dict()), pickle.dumps(ITOS)
    absolute = str(outside / "abs" / "x.pth")
    fifo = tarfile.TarInfo("wt103-fwd/lstm_fwd.pth")
    fifo.type = tarfile.FIFOTYPE
    return {
        "dotdot": ([], {"wt103-fwd/../../evil.pth": weights, "wt103-fwd/itos_wt103.pkl": itos}, "../../evil.pth"),
        "absolute": ([], {absolute: weights, "wt103-fwd/itos_wt103.pkl": itos}, absolute),
        "symlink": (
            [link("wt103-fwd/lstm_fwd.pth", str(outside / "target.pth"), tarfile.SYMTYPE)],
            {"wt103-fwd/itos_wt103.pkl": itos},
            "symbolic link",
        ),
        "hardlink": (
            [link("wt103-fwd/lstm_fwd.pth", "../outside.pth", tarfile.LNKTYPE)],
            {"wt103-fwd/itos_wt103.pkl": itos},
            "hard link",
        ),
        "fifo": ([fifo], {"wt103-fwd/itos_wt103.pkl": itos}, "not a regular file"),
    }


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink", "fifo"])
def test_hostile_archives_are_refused_and_write_nothing(tmp_path, kind):
    extra, files, named = hostile_members(tmp_path / "outside")[kind]
    archive = tmp_path / "wt103-fwd.tgz"
    archive.write_bytes(tgz(files, *extra, folders=("wt103-fwd",)))
    before = all_paths(tmp_path)
    with pytest.raises(ValueError, match="refused") as caught:
        fetch_fastai("wt103-fwd", tmp_path / "work" / "out", archive=archive)
    assert named in str(caught.value) and str(archive) in str(caught.value)
    assert all_paths(tmp_path) == before  # nothing outside, no leftover extraction folder, no out dir


def test_hostile_download_is_removed_from_the_cache(zoo, tmp_path):
    weights, itos = torch_bytes(toy_state_dict()), pickle.dumps(ITOS)
    zoo.files["wt103-fwd.tgz"] = tgz({"../evil.pth": weights, "wt103-fwd/itos_wt103.pkl": itos})
    with pytest.raises(ValueError, match=r"'\.\./evil\.pth'.*removed from the cache"):
        fetch_fastai("wt103-fwd", tmp_path / "out", base_url=zoo.base_url, cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []
    assert not (tmp_path / "evil.pth").exists() and not (tmp_path / "systmp" / "evil.pth").exists()


def test_vocabulary_pickle_that_would_run_code_is_refused(zoo, tmp_path):
    marker = tmp_path / "pwned"
    zoo.files["wt103-fwd.tgz"] = zoo_archive(itos=[*ITOS[:-1], _RunsCode(marker)])
    with pytest.raises(ValueError, match=r"itos_wt103\.pkl refused: global \w+\.system is not allowed"):
        fetch_fastai("wt103-fwd", tmp_path / "out", base_url=zoo.base_url, cache_dir=tmp_path / "cache")
    assert not marker.exists()
    assert not (tmp_path / "out").exists()
    assert list((tmp_path / "systmp").iterdir()) == []


# ----------------------------------------------------------------------------------------------------------------
# Model card information: convert_fastai(card_info=...) and the "source" key of every template
# ----------------------------------------------------------------------------------------------------------------


def test_convert_fastai_card_info_is_checked_and_written(tmp_path):
    torch.save(toy_state_dict(), tmp_path / "lm.pth")
    with pytest.raises(ValueError, match=r"card_info has unknown keys \['epochs'\]"):
        convert_fastai(tmp_path / "lm.pth", ITOS, tmp_path / "out", card_info={"epochs": 3})
    assert not (tmp_path / "out").exists()
    result = convert_fastai(
        tmp_path / "lm.pth", ITOS, tmp_path / "out", card_info=lambda conversion: {"source": f"A {conversion.layout}."}
    )
    assert result.layout == "v2"
    assert "## Source\n\nA v2.\n\n## Training" in (tmp_path / "out" / "README.md").read_text()


@pytest.mark.parametrize("model_class", [AwdLstmForCausalLM, AwdLstmModel, AwdLstmForSequenceClassification])
def test_every_template_shows_a_source_only_when_given(model_class):
    model = model_class(small_config())
    assert "## Source\n\nConverted from X.\n\n## Training" in build_model_card(model, source="Converted from X.").text
    assert "## Source" not in build_model_card(model).text


# ----------------------------------------------------------------------------------------------------------------
# fastai's IMDb sample, for the main job with no data flags
# ----------------------------------------------------------------------------------------------------------------

SAMPLE_CSV = b'label,text,is_valid\nnegative,"A dull, dull film.",False\npositive,"A great film!",True\n'


def test_imdb_sample_is_downloaded_once_and_extracted(zoo, isolated):
    zoo.files["imdb_sample.tgz"] = tgz({"imdb_sample/texts.csv": SAMPLE_CSV}, folders=("imdb_sample",))
    texts = imdb_sample(base_url=zoo.base_url)
    assert texts == isolated / "hf_bpt3c" / "fastai" / "imdb_sample" / "texts.csv"
    assert texts.read_bytes() == SAMPLE_CSV
    assert imdb_sample(base_url=zoo.base_url) == texts
    assert zoo.requests == ["/zoo/imdb_sample.tgz"]  # the second call reads the cache


def test_imdb_sample_refuses_a_hostile_archive_and_names_the_url_offline(zoo, tmp_path):
    zoo.files["imdb_sample.tgz"] = tgz({"../texts.csv": SAMPLE_CSV})
    with pytest.raises(ValueError, match=r"\.\."):
        imdb_sample(cache_dir=tmp_path / "cache", base_url=zoo.base_url)
    assert not (tmp_path / "texts.csv").exists() and not (tmp_path / "cache" / "imdb_sample").exists()
    with pytest.raises(DownloadError, match=r"imdb_sample\.tgz.*--train_file"):
        imdb_sample(cache_dir=tmp_path / "other", base_url=dead_url())


@pytest.mark.slow
def test_run_ulmfit_without_data_flags_runs_the_main_job_on_the_downloaded_sample(data_dir, zoo, isolated, tmp_path):
    sample = (data_dir / "imdb_sample" / "texts.csv").read_bytes()
    zoo.files["imdb_sample.tgz"] = tgz({"imdb_sample/texts.csv": sample}, folders=("imdb_sample",))
    env = {**os.environ, "HF_HOME": str(isolated), FASTAI_SAMPLE_URL_ENV: zoo.base_url}
    command = [sys.executable, str(REPO_ROOT / "examples" / "run_ulmfit.py"), "--quick", "--report_to", "none"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fastai's IMDb sample" in result.stdout and "validation accuracy:" in result.stdout
    assert json.loads((tmp_path / "runs" / "imdb" / "eval_results.json").read_text())["eval_accuracy"] >= 0
    assert zoo.requests == ["/zoo/imdb_sample.tgz"]
