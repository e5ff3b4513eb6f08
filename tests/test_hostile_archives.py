"""Hostile archives and downloads (RELIABILITY.md, round 2): sparse members, compression bombs, forged headers,
too many members, the limits and their overrides, downloads without end, SIGTERM in the middle; and fuzzing of
random tar headers and of corrupted archives: every case ends in a `ValueError` naming the archive (or a clean
extraction) and nothing is written outside the target folder."""

from __future__ import annotations

import gzip
import io
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from hypothesis import given, settings
from hypothesis import strategies as st
from test_fetch import ITOS, isolated, tgz, torch_bytes, toy_state_dict, zoo, zoo_archive  # noqa: F401

from hf_bpt3c.cli import main
from hf_bpt3c.convert import ArchiveLimits, LimitExceeded, fetch_fastai
from hf_bpt3c.convert.download import DownloadError, _BoundedStream, cached_download, extract_files
from hf_bpt3c.convert.safety import parse_size

PKL = b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00]\x94."  # pickle.dumps([]) (never reached when refused)


def gz(raw: bytes) -> bytes:
    return gzip.compress(raw, compresslevel=9)


def tar_bytes(files: dict[str, bytes], fmt: int = tarfile.GNU_FORMAT) -> bytes:
    """An uncompressed tar of `files` (name -> content)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytearray:
    info = tarfile.TarInfo(name)
    info.size, info.type = size, kind
    return bytearray(info.tobuf(format=tarfile.USTAR_FORMAT))


def with_checksum(block: bytearray) -> bytes:
    block[148:156] = b" " * 8
    block[148:155] = b"%06o\0" % tarfile.calc_chksums(bytes(block))[0]
    return bytes(block)


def gnu_sparse_header(name: str, realsize: int) -> bytes:
    """An old-GNU sparse member ('S') storing no data but claiming `realsize` bytes of holes (`tar --sparse` of a
    `truncate -s 100G` file): extracting it writes `realsize` zeros."""
    block = header(name, 0)
    block[156:157] = tarfile.GNUTYPE_SPARSE
    block[257:265] = tarfile.GNU_MAGIC
    block[386:398] = tarfile.itn(realsize, 12, tarfile.GNU_FORMAT)  # one map entry: (offset, 0 bytes)
    block[398:410] = tarfile.itn(0, 12, tarfile.GNU_FORMAT)
    block[483:495] = tarfile.itn(realsize, 12, tarfile.GNU_FORMAT)  # the size it expands to
    return with_checksum(block)


def write(tmp_path: Path, data: bytes, name: str = "wt103-fwd.tgz") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def refused(tmp_path: Path, archive: Path, match: str, **kwargs) -> str:
    """`extract_files` raises ValueError matching `match`, naming the archive, and writes nothing."""
    dest = tmp_path / "dest"
    dest.mkdir(exist_ok=True)
    with pytest.raises(ValueError, match=match) as caught:
        extract_files(archive, dest, (".pth", ".pkl"), **kwargs)
    assert str(archive) in str(caught.value)
    assert list(dest.iterdir()) == []
    return str(caught.value)


# ----------------------------------------------------------------------------------------------------------------
# Bug 1: sparse members and compression bombs (regressions)
# ----------------------------------------------------------------------------------------------------------------


def test_a_sparse_100_gb_member_is_refused_without_writing(tmp_path, capsys):
    raw = gnu_sparse_header("wt103-fwd/lstm_fwd.pth", 100 << 30) + tar_bytes({"wt103-fwd/itos_wt103.pkl": PKL})
    archive = write(tmp_path, gz(raw))
    assert archive.stat().st_size < 400
    with tarfile.open(archive) as tar:  # what tarfile itself would do: 100 GiB of zeros
        assert tar.getmember("wt103-fwd/lstm_fwd.pth").issparse()
    refused(tmp_path, archive, r"'wt103-fwd/lstm_fwd\.pth' is a sparse file .*100\.0 GiB")
    start = time.monotonic()
    args = ["fetch-fastai", "wt103-fwd", "--out", str(tmp_path / "out"), "--archive", str(archive)]
    assert main(args) == 2
    assert time.monotonic() - start < 5 and "sparse" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and list((tmp_path / "systmp").iterdir()) == []


def bomb(member_bytes: int) -> bytes:
    """A gzip tar whose `.pth` member is `member_bytes` zeros (compresses about 1000x)."""
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9) as stream:
        with tarfile.open(fileobj=stream, mode="w|") as tar:
            info = tarfile.TarInfo("wt103-fwd/lstm_fwd.pth")
            info.size = member_bytes
            tar.addfile(info, _Zeros(member_bytes))
            info = tarfile.TarInfo("wt103-fwd/itos_wt103.pkl")
            info.size = len(PKL)
            tar.addfile(info, io.BytesIO(PKL))
    return raw.getvalue()


class _Zeros:
    def __init__(self, n: int):
        self.left = n

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return bytes(n)


def test_a_gzip_bomb_is_refused_before_anything_is_written(tmp_path):
    archive = write(tmp_path, bomb(96 << 20))  # 96 MiB of zeros in about 100 KB
    start = time.monotonic()
    message = refused(tmp_path, archive, r"expands more than 100x its compressed size .*compression bomb")
    assert "HF_BPT3C_MAX_COMPRESSION_RATIO" in message
    assert time.monotonic() - start < 5


def test_the_ratio_limit_can_be_raised_by_argument_and_environment(tmp_path, monkeypatch):
    archive = write(tmp_path, bomb(20 << 20))
    refused(tmp_path, archive, "compression bomb")
    dest = tmp_path / "ok"
    dest.mkdir()
    files = extract_files(archive, dest, (".pth", ".pkl"), limits=ArchiveLimits(max_ratio=10_000))
    assert files[".pth"].stat().st_size == 20 << 20
    monkeypatch.setenv("HF_BPT3C_MAX_COMPRESSION_RATIO", "10000")
    dest2 = tmp_path / "ok2"
    dest2.mkdir()
    assert extract_files(archive, dest2, (".pth", ".pkl"))[".pth"].stat().st_size == 20 << 20


def test_size_and_count_limits_by_argument_environment_and_cli(tmp_path, monkeypatch, capsys):
    archive = write(tmp_path, tgz({"m/a.pth": b"x" * 5000, "m/i.pkl": PKL}))
    refused(
        tmp_path,
        archive,
        r"'m/a\.pth' holds 4\.9 KiB, more than .*1\.0 KiB",
        limits=ArchiveLimits(max_member_bytes=1024),
    )
    refused(tmp_path, archive, r"more than 2\.0 KiB in all", limits=ArchiveLimits(max_total_bytes="2K"))
    refused(tmp_path, archive, "more than 1 members", limits=ArchiveLimits(max_members=1))
    monkeypatch.setenv("HF_BPT3C_MAX_MEMBER_BYTES", "1K")
    message = refused(tmp_path, archive, "per file")
    assert "HF_BPT3C_MAX_MEMBER_BYTES" in message
    monkeypatch.setenv("HF_BPT3C_MAX_MEMBER_BYTES", "a lot")
    with pytest.raises(ValueError, match="HF_BPT3C_MAX_MEMBER_BYTES must be a size in bytes"):
        extract_files(archive, tmp_path, (".pth",))
    monkeypatch.delenv("HF_BPT3C_MAX_MEMBER_BYTES")
    args = ["fetch-fastai", "wt103-fwd", "--out", str(tmp_path / "o"), "--archive", str(archive)]
    assert main([*args, "--max-extract-bytes", "1K"]) == 2
    assert "limit of 1.0 KiB" in capsys.readouterr().err
    assert main([*args, "--max-extract-bytes", "-3"]) == 2
    assert "--max-extract-bytes must be a size" in capsys.readouterr().err


def test_too_many_members_are_refused_while_reading_the_headers(tmp_path):
    files = {f"m/f{i}.txt": b"" for i in range(300)} | {"m/a.pth": b"w", "m/i.pkl": PKL}
    refused(tmp_path, write(tmp_path, tgz(files)), r"more than 256 members.*HF_BPT3C_MAX_ARCHIVE_MEMBERS")


def test_a_forged_pax_or_long_name_header_cannot_claim_gigabytes(tmp_path):
    for kind in (tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME):
        raw = with_checksum(header("././@Header", 1 << 30, kind)) + tar_bytes({"m/a.pth": b"w", "m/i.pkl": PKL})
        refused(tmp_path, write(tmp_path, gz(raw)), r"a member header claims 1\.0 GiB")


def test_the_stream_limit_holds_for_reads_and_seeks():
    data = io.BytesIO(bytes(10_000))
    stream = _BoundedStream(data, 4096, Path("a.tgz"), "it is too big")
    assert len(stream.read(4000)) == 4000
    with pytest.raises(LimitExceeded, match="a.tgz refused: it is too big"):
        stream.read(500)
    with pytest.raises(LimitExceeded):
        stream.seek(5000)
    assert stream.seek(100) == 100 and stream.tell() == 100


@pytest.mark.parametrize(
    "files, match",
    [
        ({"m/a.pth": b"1", "m/a.pth ": b"2", "m/i.pkl": PKL, "m/a.pth\x07": b"3"}, "control character"),
        ({"m/.pth": b"1", "m/i.pkl": PKL}, r"exactly one \.pth file, found 0"),
    ],
    ids=["control-character", "bare-suffix"],
)
def test_odd_member_names_are_refused(tmp_path, files, match):
    refused(tmp_path, write(tmp_path, tgz(files)), match)


def test_a_member_listed_twice_is_refused(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in (("m/a.pth", b"first"), ("m/i.pkl", PKL), ("./m/a.pth", b"second")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    refused(tmp_path, write(tmp_path, buffer.getvalue()), "'./m/a.pth' appears twice")


def test_truncated_and_concatenated_archives(tmp_path):
    whole = zoo_archive()
    refused(tmp_path, write(tmp_path, whole[: len(whole) // 2]), "truncated or corrupted")
    # data after the tar's end-of-archive blocks is never read (as tar does): the archive itself is complete
    dest = tmp_path / "after"
    dest.mkdir()
    files = extract_files(write(tmp_path, whole + b"trailing garbage"), dest, (".pth", ".pkl"))
    assert sorted(p.name for p in files.values()) == ["itos_wt103.pkl", "lstm_fwd.pth"]


def test_parse_size_reads_units_and_refuses_the_rest():
    assert parse_size("2G", "x") == 2 << 30 and parse_size("500M", "x") == 500 << 20 and parse_size(7, "x") == 7
    assert parse_size("1.5k", "x") == 1536 and parse_size("3 GiB", "x") == 3 << 30
    for bad in ("", "-1", "0", "2X", True, "1e9", "G"):
        with pytest.raises(ValueError, match="x must be"):
            parse_size(bad, "x")


# ----------------------------------------------------------------------------------------------------------------
# Fuzzing: random tar headers and corrupted archives
# ----------------------------------------------------------------------------------------------------------------

NAMES = st.sampled_from(
    ["m/a.pth", "m/i.pkl", "a.pth", "i.pkl", "../x.pth", "/abs/x.pkl", "m/../../x.pth", "m/b/c.pth", "m", "m/",
     "C:/x.pth", "m\\x.pth", "m/\x00.pth", "m/é.pkl", "./m/a.pth", "m/a.pth/", "." , "m/" + "n" * 200 + ".pth"]
)  # fmt: skip
TYPES = st.sampled_from(
    [tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE,
     tarfile.BLKTYPE, tarfile.FIFOTYPE, tarfile.CONTTYPE, b"Z"]
)  # fmt: skip
MEMBER = st.tuples(NAMES, TYPES, st.integers(0, 3000), st.sampled_from(["", "../../etc/passwd", "/tmp/x", "m/a.pth"]))


def assert_contained(root: Path, dest: Path, before: set[Path]) -> None:
    """Nothing new under `root` except inside `dest`; everything in `dest` a regular file."""
    new = set(root.rglob("*")) - before
    assert all(dest in path.parents or path == dest for path in new), sorted(new)
    assert all(path.is_file() and not path.is_symlink() for path in dest.iterdir())


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(MEMBER, min_size=0, max_size=6))
def test_random_tar_headers_are_refused_or_extracted_inside_the_folder(members):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dest = root / "work" / "dest"
        dest.mkdir(parents=True)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
            for name, kind, size, linkname in members:
                info = tarfile.TarInfo(name)
                info.type, info.linkname = kind, linkname
                info.size = size if kind in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE) else 0
                tar.addfile(info, io.BytesIO(bytes(info.size)) if info.size else None)
        archive = root / "a.tgz"
        archive.write_bytes(buffer.getvalue())
        before = set(root.rglob("*"))
        try:
            files = extract_files(archive, dest, (".pth", ".pkl"))
        except ValueError as err:
            assert str(archive) in str(err)
        else:
            assert set(files.values()) == set(dest.iterdir())
        assert_contained(root, dest, before)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, 3 * 512 - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_corrupted_archives_are_refused_or_extracted_inside_the_folder(edits):
    raw = bytearray(tar_bytes({"m/a.pth": b"w" * 700, "m/i.pkl": PKL}))
    for position, value in edits:  # the headers and the first data blocks
        raw[position] = value
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dest = root / "dest"
        dest.mkdir()
        archive = root / "a.tgz"
        archive.write_bytes(gz(bytes(raw)))
        before = set(root.rglob("*"))
        try:
            extract_files(archive, dest, (".pth", ".pkl"), limits=ArchiveLimits(max_total_bytes="1M"))
        except ValueError as err:
            assert str(archive) in str(err)
        assert_contained(root, dest, before)
        assert sum(p.stat().st_size for p in dest.iterdir()) <= 1 << 20


# ----------------------------------------------------------------------------------------------------------------
# Downloads: size cap, total time limit, a file in place of the cache folder, SIGTERM
# ----------------------------------------------------------------------------------------------------------------


class _Server:
    """A local HTTP server whose handler is `respond(handler)`; `url` ends with `/`."""

    def __init__(self, respond):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                respond(self)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server():
    servers = []

    def start(respond) -> _Server:
        servers.append(_Server(respond))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def test_a_download_larger_than_the_cap_is_refused(zoo, tmp_path, monkeypatch):  # noqa: F811
    zoo.files["wt103-fwd.tgz"] = zoo_archive()
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match=r"announces .* more than the limit of 1\.0 KiB"):
        cached_download(zoo.base_url + "wt103-fwd.tgz", cache / "a.tgz", max_bytes="1K")
    monkeypatch.setenv("HF_BPT3C_MAX_DOWNLOAD_BYTES", "2K")
    with pytest.raises(DownloadError, match="HF_BPT3C_MAX_DOWNLOAD_BYTES"):
        fetch_fastai("wt103-fwd", tmp_path / "out", base_url=zoo.base_url, cache_dir=cache)
    assert list(cache.iterdir()) == []


def test_a_body_without_length_is_cut_at_the_cap(server, tmp_path):
    def endless(handler):
        handler.send_response(200)
        handler.send_header("Connection", "close")
        handler.end_headers()
        try:
            for _ in range(1000):
                handler.wfile.write(bytes(64 * 1024))
        except OSError:
            pass

    url = server(endless).url + "a.tgz"
    with pytest.raises(DownloadError, match=r"exceeds the limit of 1\.0 MiB"):
        cached_download(url, tmp_path / "c" / "a.tgz", max_bytes="1M")
    assert list((tmp_path / "c").iterdir()) == []


def test_a_trickling_server_hits_the_total_time_limit(server, tmp_path):
    def trickle(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "1000000")
        handler.end_headers()
        try:
            for _ in range(100):
                handler.wfile.write(b"x")
                handler.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass

    url = server(trickle).url + "a.tgz"
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"took more than 0\.5 s.*HF_BPT3C_DOWNLOAD_TIME_LIMIT"):
        cached_download(url, tmp_path / "c" / "a.tgz", time_limit=0.5, timeout=5)
    assert time.monotonic() - start < 3
    assert list((tmp_path / "c").iterdir()) == []


def test_a_cache_dir_that_is_a_file_is_named(tmp_path, capsys):
    (tmp_path / "cache").write_text("not a folder")
    args = ["fetch-fastai", "wt103-fwd", "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]
    assert main([*args, "--base-url", "http://127.0.0.1:9/"]) == 2
    err = capsys.readouterr().err
    assert "cache_dir (--cache-dir)" in err and "is a file" in err and "Traceback" not in err
    with pytest.raises(ValueError, match="is a file, not a folder"):
        cached_download("http://127.0.0.1:9/a.tgz", tmp_path / "cache" / "a.tgz")


SIGTERM_SCRIPT = """
import sys, time
sys.path.insert(0, {src!r})
from hf_bpt3c.convert import from_fastai
if {slow_convert!r}:
    def slow(*args, **kwargs):
        print("converting", flush=True)
        time.sleep(60)
    from_fastai.convert_fastai = slow
from hf_bpt3c.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_and_terminate(tmp_path: Path, args: list[str], ready, slow_convert: bool = False) -> int:
    """Run `hf-bpt3c ARGS` in a subprocess with its own TMPDIR, send SIGTERM once `ready()` holds, return its
    status."""
    (tmp_path / "proc_tmp").mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmp_path / "proc_tmp"), "no_proxy": "127.0.0.1", "NO_PROXY": "127.0.0.1"}
    script = SIGTERM_SCRIPT.format(src=str(REPO_ROOT / "src"), slow_convert=slow_convert)
    process = subprocess.Popen([sys.executable, "-c", script, *args], env=env, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not ready(process) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.slow
def test_sigterm_during_a_download_leaves_no_part_file(server, tmp_path):
    def half_then_stall(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", str(10 << 20))
        handler.end_headers()
        try:
            handler.wfile.write(bytes(1 << 20))
            handler.wfile.flush()
            time.sleep(30)
        except OSError:
            pass

    url, cache = server(half_then_stall).url, tmp_path / "cache"
    args = ["fetch-fastai", "wt103-fwd", "--out", str(tmp_path / "out"), "--base-url", url, "--cache-dir", str(cache)]
    status = run_and_terminate(tmp_path, args, lambda p: any(cache.glob(".*.part")))
    assert status == 128 + signal.SIGTERM
    assert list(cache.iterdir()) == [] and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_sigterm_during_the_conversion_removes_the_extraction_folder(tmp_path):
    archive = write(tmp_path, zoo_archive())
    args = ["fetch-fastai", "wt103-fwd", "--out", str(tmp_path / "out"), "--archive", str(archive)]
    seen = []

    def converting(process) -> bool:
        seen.extend(p.name for p in (tmp_path / "proc_tmp").iterdir())
        return bool(seen) and any(True for _ in (tmp_path / "proc_tmp").glob("hf_bpt3c-fastai-*/*.pth"))

    status = run_and_terminate(tmp_path, args, converting, slow_convert=True)
    assert status == 128 + signal.SIGTERM
    assert any(name.startswith("hf_bpt3c-fastai-") for name in seen)  # it was there while converting
    assert list((tmp_path / "proc_tmp").iterdir()) == []
