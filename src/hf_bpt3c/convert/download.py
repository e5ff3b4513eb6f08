"""Download a file into a cache folder, and extract chosen files from a tar archive safely.

- `cached_download(url, path)`: reuse `path` when it exists (no request at all); otherwise stream `url` with
  `urllib.request` (a timeout per read, a size cap and a time limit for the whole download, a progress bar) into
  a hidden temporary file next to `path` and rename it into place with `os.replace` once every byte announced by
  Content-Length has arrived. HTTP redirects (301, 302, 303, 307, 308: short links such as bit.ly) are followed,
  at most `MAX_REDIRECTS` of them and only to http:// or https:// URLs. An interrupted download (an error, a
  limit, SIGTERM) never leaves a file at `path` nor its `.part` file.
- `extract_files(archive, dest, suffixes)`: open a gzip tar, check every member first (no absolute path, no `..`,
  no link, device or sparse file, at most one top folder, sizes and count within `ArchiveLimits`) and copy exactly
  one regular file per suffix into `dest`, under names built here; nothing is written anywhere else. The limits
  are enforced on the decompressed stream itself, not only on the sizes the headers declare.
- `extract_members(archive, dest, choose)`: the same checks and copy for archives of another layout, where the
  function `choose` picks the members (`member_parts` gives it the checked path of each).

Nothing here knows about fastai or the conversion (see `hf_bpt3c.convert.fetch_fastai`); the limits and their
environment variables are in `hf_bpt3c.convert.safety`.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import os
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath

from huggingface_hub import constants
from huggingface_hub.utils import tqdm

from .safety import (
    DEFAULT_DOWNLOAD_TIME_LIMIT_S,
    DEFAULT_MAX_DOWNLOAD_BYTES,
    DOWNLOAD_TIME_LIMIT_ENV,
    MAX_ARCHIVE_MEMBERS_ENV,
    MAX_DOWNLOAD_BYTES_ENV,
    MAX_MEMBER_BYTES_ENV,
    ArchiveLimits,
    LimitExceeded,
    env_positive,
    env_size,
    human,
    parse_positive,
    parse_size,
    terminate_cleanly,
)

TIMEOUT_S = 60.0
CHUNK_BYTES = 1 << 20
URL_SCHEMES = ("http", "https", "file")
MAX_REDIRECTS = 10
REDIRECT_SCHEMES = ("http", "https")


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


def cached_download(
    url: str,
    path: str | os.PathLike,
    *,
    hint: str = "",
    timeout: float | None = None,
    max_bytes: int | str | None = None,
    time_limit: float | None = None,
) -> bool:
    """Make `path` hold the file at `url`. Returns True if `path` already existed (nothing was requested).

    `timeout` (seconds, default `TIMEOUT_S`) bounds the connection and each read; `time_limit` (seconds, default
    `$HF_BPT3C_DOWNLOAD_TIME_LIMIT`, else 7200) the whole download; `max_bytes` (default
    `$HF_BPT3C_MAX_DOWNLOAD_BYTES`, else 4 GiB) its size: a larger Content-Length is refused before the body is
    read, a body that grows past it is cut.

    The body goes to a temporary `.<name>.*.part` file in `path`'s folder, renamed to `path` only when complete
    (as long as Content-Length says, when the server sends it). Any failure, and SIGTERM, removes the temporary
    file; failures raise `DownloadError` naming the URL, followed by `hint`.
    """
    path = Path(path)
    if path.is_file():
        return True
    check_url(url)
    if path.exists():
        raise ValueError(f"{path} exists and is not a file: it cannot receive the download of {url}")
    limit = (
        parse_size(max_bytes, "max_bytes")
        if max_bytes is not None
        else env_size(MAX_DOWNLOAD_BYTES_ENV, DEFAULT_MAX_DOWNLOAD_BYTES)
    )
    seconds = (
        parse_positive(time_limit, "time_limit")
        if time_limit is not None
        else env_positive(DOWNLOAD_TIME_LIMIT_ENV, DEFAULT_DOWNLOAD_TIME_LIMIT_S)
    )
    _make_folder(path.parent)
    with terminate_cleanly():
        handle, part = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as out:
                _fetch_into(url, out, path.name, TIMEOUT_S if timeout is None else timeout, limit, seconds)
            os.replace(part, path)
        except (OSError, http.client.HTTPException, LimitExceeded) as err:
            raise DownloadError(f"could not download {url}: {_reason(err)}.{' ' + hint if hint else ''}") from None
        finally:
            if os.path.exists(part):
                os.unlink(part)
    return False


def _make_folder(folder: Path) -> None:
    """Create `folder` (and its parents); `ValueError` naming it when it is a file or cannot be created."""
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"the cache folder {folder} is a file, not a folder (--cache-dir / cache_dir)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"the cache folder {folder} cannot be created: {err.strerror or err}") from None


def _fetch_into(url: str, out, label: str, timeout: float, max_bytes: int, time_limit: float) -> None:
    """Stream `url` into the open binary file `out` with a progress bar; `DownloadError` if the body is short,
    `LimitExceeded` past `max_bytes` or `time_limit` seconds. Reads return as soon as data arrives (`read1`), so
    that the time limit is checked at least every `timeout` seconds even when a server trickles bytes."""
    deadline = time.monotonic() + time_limit
    request = urllib.request.Request(url, headers={"User-Agent": "hf_bpt3c"})
    with urllib.request.build_opener(_RedirectHandler).open(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        if total is not None and total > max_bytes:
            raise LimitExceeded(
                f"the server announces {human(total)}, more than the limit of {human(max_bytes)} "
                f"(raise {MAX_DOWNLOAD_BYTES_ENV} if it is genuine)"
            )
        received = 0
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label) as progress:
            while chunk := response.read1(CHUNK_BYTES):
                received += len(chunk)
                if received > max_bytes:
                    raise LimitExceeded(
                        f"the body exceeds the limit of {human(max_bytes)} (raise {MAX_DOWNLOAD_BYTES_ENV} if it is "
                        "genuine)"
                    )
                out.write(chunk)
                progress.update(len(chunk))
                if time.monotonic() > deadline:
                    raise LimitExceeded(
                        f"the download took more than {time_limit:g} s ({human(received)} received; raise "
                        f"{DOWNLOAD_TIME_LIMIT_ENV} for a slow connection)"
                    )
    if total is not None and received != total:
        raise DownloadError(f"the connection closed after {received} of {total} bytes")


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """urllib's redirect handling with 308 added (Python < 3.11 lacks it), at most `MAX_REDIRECTS` redirects in
    all, and only to http:// and https:// URLs (urllib itself would also follow one to ftp://)."""

    max_redirections = MAX_REDIRECTS
    inf_msg = f"too many redirects (more than {MAX_REDIRECTS}) or a redirect loop; the last one was "

    def http_error_302(self, req, fp, code, msg, headers):
        target = headers.get("location") or headers.get("uri")
        if target is not None:
            _check_redirect(req.full_url, urllib.parse.urljoin(req.full_url, target), fp)
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if code not in (301, 302, 303, 307, 308) or req.get_method() not in ("GET", "HEAD"):
            raise urllib.error.HTTPError(req.full_url, code, msg, headers, fp)
        _check_redirect(req.full_url, newurl, fp)
        kept = {k: v for k, v in req.headers.items() if k.lower() not in ("content-length", "content-type")}
        return urllib.request.Request(
            newurl.replace(" ", "%20"),
            headers=kept,
            origin_req_host=req.origin_req_host,
            unverifiable=True,
            method="HEAD" if req.get_method() == "HEAD" else "GET",
        )


def _check_redirect(url: str, target: str, fp) -> None:
    """`DownloadError` (the response closed) when `url` redirects to anything but an http:// or https:// URL."""
    if urllib.parse.urlsplit(target).scheme not in REDIRECT_SCHEMES:
        fp.close()
        raise DownloadError(
            f"{url} redirects to {target[:200]!r}, which is not an http:// or https:// URL (not followed)"
        )


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


_READ_ERRORS = (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error)
MAX_HEADER_READ = 16 * 1024 * 1024  # one read of the tar stream: a header (pax, GNU long name) or a data chunk


class _BoundedStream:
    """The decompressed tar stream, read or skipped no further than `limit` bytes (`LimitExceeded` beyond), with no
    single read larger than `MAX_HEADER_READ` (a forged pax or long-name header cannot claim gigabytes of memory).

    `tarfile` skips the data of members it does not extract with `seek`, which decompresses up to the target: the
    check happens before the seek, so a bomb is refused without being expanded."""

    def __init__(self, fileobj, limit: int, archive: Path, why: str):
        self._f, self._limit, self._archive, self._why = fileobj, limit, archive, why
        self.name = str(archive)

    def _refuse(self) -> LimitExceeded:
        return LimitExceeded(f"ARCHIVE {self._archive} refused: {self._why}")

    def read(self, size: int = -1) -> bytes:
        position = self._f.tell()
        if size is None or size < 0 or size > MAX_HEADER_READ:
            if size is not None and size > MAX_HEADER_READ:
                raise ValueError(
                    f"ARCHIVE {self._archive} refused: a member header claims {human(size)} (at most "
                    f"{human(MAX_HEADER_READ)})"
                )
            size = MAX_HEADER_READ
        if position + size > self._limit:
            allowed = max(self._limit - position, 0)
            data = self._f.read(allowed)
            if len(data) == allowed and self._f.read(1):
                raise self._refuse()
            return data
        return self._f.read(size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        target = offset if whence == os.SEEK_SET else self._f.tell() + offset if whence == os.SEEK_CUR else None
        if target is None:
            raise OSError("the tar stream cannot be sought from its end")
        if target > self._limit:
            raise self._refuse()
        return self._f.seek(target)

    def tell(self) -> int:
        return self._f.tell()


@contextlib.contextmanager
def _open_gzip_tar(archive: Path, limits: ArchiveLimits) -> Iterator[tuple[tarfile.TarFile, list[tarfile.TarInfo]]]:
    """The open tar and its checked members (`_check_member`), read through a `_BoundedStream`; `ValueError` naming
    `archive` if it is not a complete gzip tar or breaks a limit."""
    limit, why = limits.stream_limit(archive.stat().st_size)
    with open(archive, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
        try:
            tar = tarfile.open(fileobj=_BoundedStream(unzipped, limit, archive, why), mode="r:")
        except _READ_ERRORS as err:
            raise ValueError(f"ARCHIVE {archive} is not a gzip-compressed tar file (.tgz/.tar.gz): {err}") from None
        with tar:
            members: list[tarfile.TarInfo] = []
            total = 0
            try:
                while (member := tar.next()) is not None:
                    members.append(member)
                    total += member.size
                    _check_member(archive, member, limits, len(members), total)
            except _READ_ERRORS as err:
                raise ValueError(f"ARCHIVE {archive} is truncated or corrupted: {err}") from None
            yield tar, members


def _check_member(archive: Path, member: tarfile.TarInfo, limits: ArchiveLimits, count: int, total: int) -> None:
    """Refuse a sparse member (its holes would be written out as zeros), one larger than `max_member_bytes`, more
    than `max_members` members, or declared sizes adding up to more than `max_total_bytes`."""
    if member.issparse():
        raise ValueError(
            f"ARCHIVE {archive} refused: member {member.name!r} is a sparse file (it would expand to "
            f"{human(member.size)} of zeros); only plain files are accepted"
        )
    if member.size > limits.max_member_bytes:
        raise LimitExceeded(
            f"ARCHIVE {archive} refused: member {member.name!r} holds {human(member.size)}, more than the limit of "
            f"{human(limits.max_member_bytes)} per file (raise {MAX_MEMBER_BYTES_ENV} if it is genuine)"
        )
    if count > limits.max_members:
        raise LimitExceeded(
            f"ARCHIVE {archive} refused: more than {limits.max_members} members (raise {MAX_ARCHIVE_MEMBERS_ENV} "
            "if it is genuine)"
        )
    if total > limits.max_total_bytes:
        raise LimitExceeded(
            f"ARCHIVE {archive} refused: its members hold more than {human(limits.max_total_bytes)} in all"
        )


def member_parts(archive: Path, member: tarfile.TarInfo) -> tuple[str, ...]:
    """The path components of a safe member name (`./` removed); `ValueError` for an absolute path, a `..`
    component, a backslash or drive letter, a control character, or a member that is neither a regular file nor a
    directory."""
    name = member.name
    pure = PurePosixPath(name)
    if pure.is_absolute() or "\\" in name or (len(name) > 1 and name[1] == ":"):
        raise ValueError(f"ARCHIVE {archive} refused: member {name!r} has an absolute or non-POSIX path")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValueError(f"ARCHIVE {archive} refused: member {name!r} has a control character in its name")
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

    Files must sit at the top level or inside one common top folder; a name may appear once. Raises `ValueError`
    naming the archive and the offending member, or the suffix that is missing or found more than once.
    """
    found: dict[str, list[tarfile.TarInfo]] = {suffix: [] for suffix in suffixes}
    folders, names = set(), set()
    for member in members:
        parts = member_parts(archive, member)
        if len(parts) > 2 or (member.isdir() and len(parts) > 1):
            raise ValueError(f"ARCHIVE {archive} refused: unexpected nested member {member.name!r}")
        if member.isdir() or not parts:
            continue
        if parts in names:
            raise ValueError(f"ARCHIVE {archive} refused: member {member.name!r} appears twice")
        names.add(parts)
        folders.add(parts[0] if len(parts) == 2 else "")
        for suffix in suffixes:
            if parts[-1].endswith(suffix) and parts[-1] != suffix:
                found[suffix].append(member)
    if len(folders) > 1:
        raise ValueError(f"ARCHIVE {archive} refused: files in several folders {sorted(folders)}; expected one")
    for suffix, picked in found.items():
        if len(picked) != 1:
            listed = [m.name for m in picked]
            raise ValueError(f"ARCHIVE {archive} must hold exactly one {suffix} file, found {len(picked)} {listed}")
    return {suffix: picked[0] for suffix, picked in found.items()}


def extract_files(
    archive: str | os.PathLike,
    dest: str | os.PathLike,
    suffixes: Sequence[str],
    *,
    limits: ArchiveLimits | None = None,
) -> dict[str, Path]:
    """Copy exactly one regular file per suffix from the gzip tar `archive` into the existing folder `dest`.

    Every member is checked before anything is written (see `select_members` and `ArchiveLimits`: total size,
    size per member, member count, compression ratio; sparse members are refused); each chosen file is written as
    `dest/<its base name>` with exclusive creation, so nothing outside `dest` is touched and no link is followed.
    The limits hold for the bytes actually decompressed and written, whatever the headers declare; a file cut
    short by a limit or an error is removed. Returns `{suffix: extracted path}`.
    """
    return extract_members(archive, dest, lambda path, members: select_members(path, members, suffixes), limits=limits)


Chooser = Callable[[Path, Sequence[tarfile.TarInfo]], Mapping[str, tarfile.TarInfo]]


def extract_members(
    archive: str | os.PathLike,
    dest: str | os.PathLike,
    choose: Chooser,
    *,
    limits: ArchiveLimits | None = None,
) -> dict[str, Path]:
    """Copy the members that `choose(archive, members)` picks (`{key: member}`) from the gzip tar `archive` into
    the existing folder `dest`, as `dest/<base name of the member>`; returns `{key: extracted path}`.

    All members are read and checked first, as for `extract_files` (sizes, count, ratio, sparse members), then
    `choose` sees them; afterwards every member must pass `member_parts` (no absolute path, `..`, link, device),
    whatever `choose` checked itself, each chosen one must be a regular file, and the base names must differ.
    """
    archive, dest = Path(archive), Path(dest)
    limits = (limits or ArchiveLimits()).resolved()
    extracted: dict[str, Path] = {}
    with _open_gzip_tar(archive, limits) as (tar, members):
        chosen = dict(choose(archive, members))
        for member in members:
            member_parts(archive, member)
        names = [PurePosixPath(member.name).name for member in chosen.values()]
        if len(set(names)) != len(names) or not all(member.isreg() for member in chosen.values()):
            raise ValueError(f"ARCHIVE {archive} refused: the chosen members {sorted(names)} are not distinct files")
        try:
            for key, member in chosen.items():
                target = dest / PurePosixPath(member.name).name
                try:
                    _copy_member(tar, member, target, limits.max_member_bytes)
                except _READ_ERRORS as err:
                    raise ValueError(f"ARCHIVE {archive} is truncated or corrupted at {member.name!r}: {err}") from None
                extracted[key] = target
        except BaseException:
            for path in extracted.values():
                path.unlink(missing_ok=True)
            raise
    return extracted


def _copy_member(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, max_bytes: int) -> None:
    """Stream `member` into the new file `target`, at most `min(member.size, max_bytes)` bytes; the file is removed
    if anything fails."""
    budget = min(member.size, max_bytes)
    source = tar.extractfile(member)
    with source, open(target, "xb") as out:
        try:
            written = 0
            while chunk := source.read(CHUNK_BYTES):
                written += len(chunk)
                if written > budget:
                    raise LimitExceeded(f"member {member.name!r} holds more than its {human(budget)}")
                out.write(chunk)
        except BaseException:
            out.close()
            target.unlink(missing_ok=True)
            raise


__all__ = [
    "MAX_REDIRECTS",
    "ArchiveLimits",
    "DownloadError",
    "cache_root",
    "cached_download",
    "check_url",
    "extract_files",
    "extract_members",
    "fastai_cache_dir",
    "member_parts",
    "select_members",
]
