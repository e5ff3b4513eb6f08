"""Download a file into a cache folder, and extract chosen files from a tar archive safely.

- `cached_download(url, path)`: reuse `path` when it exists (no request at all); otherwise stream `url` with
  `urllib.request` (a timeout, a progress bar) into a hidden temporary file next to `path` and rename it into place
  with `os.replace` once every byte announced by Content-Length has arrived. An interrupted download never leaves
  a file at `path`.
- `extract_files(archive, dest, suffixes)`: open a gzip tar, check every member first (no absolute path, no `..`,
  no link or device, at most one top folder) and copy exactly one regular file per suffix into `dest`, under
  names built here; nothing is written anywhere else.

Nothing here knows about fastai or the conversion (see `hf_bpt3c.convert.fetch_fastai`).
"""

from __future__ import annotations

import gzip
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from huggingface_hub import constants
from huggingface_hub.utils import tqdm

TIMEOUT_S = 60.0
CHUNK_BYTES = 1 << 20
URL_SCHEMES = ("http", "https", "file")


class DownloadError(OSError, ValueError):
    """A download failed (offline, HTTP error, timeout, truncated body). Both an `OSError` (a network problem) and a
    `ValueError` (the command line reports it as bad input, exit status 2)."""


def cache_root() -> Path:
    """`<HF_HOME>/hf_bpt3c`: hf_bpt3c's cache folder, read from `huggingface_hub.constants.HF_HOME` at each call."""
    return Path(constants.HF_HOME) / "hf_bpt3c"


def fastai_cache_dir() -> Path:
    """The default cache of fastai's downloads: `<HF_HOME>/hf_bpt3c/fastai` (`HF_HOME` as huggingface_hub reads it)."""
    return cache_root() / "fastai"


def check_url(url: str, name: str = "url") -> str:
    """`url` if its scheme is http, https or file; `ValueError` naming the argument `name` otherwise."""
    if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in URL_SCHEMES:
        raise ValueError(f"{name} must be an http://, https:// or file:// URL, got {url!r}")
    return url


# ----------------------------------------------------------------------------------------------------------------
# Download
# ----------------------------------------------------------------------------------------------------------------


def cached_download(url: str, path: str | os.PathLike, *, hint: str = "", timeout: float | None = None) -> bool:
    """Make `path` hold the file at `url`. Returns True if `path` already existed (nothing was requested).

    `timeout` (seconds, default `TIMEOUT_S`) bounds the connection and each read, not the whole download.

    The body goes to a temporary `.<name>.*.part` file in `path`'s folder, renamed to `path` only when complete
    (as long as Content-Length says, when the server sends it). Any failure removes the temporary file and raises
    `DownloadError` naming the URL, followed by `hint`.
    """
    path = Path(path)
    if path.is_file():
        return True
    check_url(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, part = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            _fetch_into(url, out, path.name, TIMEOUT_S if timeout is None else timeout)
        os.replace(part, path)
    except (OSError, http.client.HTTPException) as err:
        raise DownloadError(f"could not download {url}: {_reason(err)}.{' ' + hint if hint else ''}") from None
    finally:
        if os.path.exists(part):
            os.unlink(part)
    return False


def _fetch_into(url: str, out, label: str, timeout: float) -> None:
    """Stream `url` into the open binary file `out` with a progress bar; `DownloadError` if the body is short."""
    request = urllib.request.Request(url, headers={"User-Agent": "hf_bpt3c"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        received = 0
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label) as progress:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                received += len(chunk)
                progress.update(len(chunk))
    if total is not None and received != total:
        raise DownloadError(f"the connection closed after {received} of {total} bytes")


def _reason(err: BaseException) -> str:
    """A short reason for a failed request: 'HTTP 404 Not Found', 'connection refused', 'timed out', ..."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    if isinstance(err, TimeoutError):
        return "timed out"
    return str(err) or type(err).__name__


# ----------------------------------------------------------------------------------------------------------------
# Safe extraction
# ----------------------------------------------------------------------------------------------------------------


def _open_gzip_tar(archive: Path) -> tuple[tarfile.TarFile, list[tarfile.TarInfo]]:
    """The open tar and its members; `ValueError` naming `archive` if it is not a complete gzip tar."""
    try:
        tar = tarfile.open(archive, mode="r:gz")
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise ValueError(f"ARCHIVE {archive} is not a gzip-compressed tar file (.tgz/.tar.gz): {err}") from None
    try:
        return tar, tar.getmembers()
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error) as err:
        tar.close()
        raise ValueError(f"ARCHIVE {archive} is truncated or corrupted: {err}") from None


def _member_parts(archive: Path, member: tarfile.TarInfo) -> tuple[str, ...]:
    """The path components of a safe member name (`./` removed); `ValueError` for an absolute path, a `..`
    component, a backslash or drive letter, or a member that is neither a regular file nor a directory."""
    name = member.name
    pure = PurePosixPath(name)
    if pure.is_absolute() or "\\" in name or "\0" in name or (len(name) > 1 and name[1] == ":"):
        raise ValueError(f"ARCHIVE {archive} refused: member {name!r} has an absolute or non-POSIX path")
    if ".." in pure.parts:
        raise ValueError(f"ARCHIVE {archive} refused: member {name!r} points outside the archive folder ('..')")
    if not (member.isreg() or member.isdir()):
        kind = "a symbolic link" if member.issym() else "a hard link" if member.islnk() else "not a regular file"
        raise ValueError(f"ARCHIVE {archive} refused: member {name!r} is {kind}; only files and folders are accepted")
    return pure.parts


def select_members(
    archive: Path, members: Sequence[tarfile.TarInfo], suffixes: Sequence[str]
) -> dict[str, tarfile.TarInfo]:
    """Check every member, then pick exactly one regular file per suffix (other files are ignored).

    Files must sit at the top level or inside one common top folder. Raises `ValueError` naming the archive and the
    offending member, or the suffix that is missing or found more than once.
    """
    found: dict[str, list[tarfile.TarInfo]] = {suffix: [] for suffix in suffixes}
    folders = set()
    for member in members:
        parts = _member_parts(archive, member)
        if len(parts) > 2 or (member.isdir() and len(parts) > 1):
            raise ValueError(f"ARCHIVE {archive} refused: unexpected nested member {member.name!r}")
        if member.isdir() or not parts:
            continue
        folders.add(parts[0] if len(parts) == 2 else "")
        for suffix in suffixes:
            if parts[-1].endswith(suffix):
                found[suffix].append(member)
    if len(folders) > 1:
        raise ValueError(f"ARCHIVE {archive} refused: files in several folders {sorted(folders)}; expected one")
    for suffix, picked in found.items():
        if len(picked) != 1:
            names = [m.name for m in picked]
            raise ValueError(f"ARCHIVE {archive} must hold exactly one {suffix} file, found {len(picked)} {names}")
    return {suffix: picked[0] for suffix, picked in found.items()}


def extract_files(archive: str | os.PathLike, dest: str | os.PathLike, suffixes: Sequence[str]) -> dict[str, Path]:
    """Copy exactly one regular file per suffix from the gzip tar `archive` into the existing folder `dest`.

    Every member is checked before anything is written (see `select_members`); each chosen file is written as
    `dest/<its base name>` with exclusive creation, so nothing outside `dest` is touched and no link is followed.
    Returns `{suffix: extracted path}`.
    """
    archive, dest = Path(archive), Path(dest)
    tar, members = _open_gzip_tar(archive)
    with tar:
        chosen = select_members(archive, members, suffixes)
        extracted = {}
        for suffix, member in chosen.items():
            target = dest / PurePosixPath(member.name).name
            source = tar.extractfile(member)
            try:
                with source, open(target, "xb") as out:
                    shutil.copyfileobj(source, out, CHUNK_BYTES)
            except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
                raise ValueError(f"ARCHIVE {archive} is truncated or corrupted at {member.name!r}: {err}") from None
            extracted[suffix] = target
    return extracted


__all__ = [
    "DownloadError",
    "cache_root",
    "cached_download",
    "check_url",
    "extract_files",
    "fastai_cache_dir",
    "select_members",
]
