"""Limits on what is read from outside (archives, downloads, vocabulary pickles) and clean exits on SIGTERM.

Every limit has a default sized for fastai's real files, an environment variable and an argument that override it:

| limit | default | environment variable | argument |
|---|---|---|---|
| bytes extracted from an archive, in all | 2 GiB | `HF_BPT3C_MAX_ARCHIVE_BYTES` | `ArchiveLimits(max_total_bytes=)` |
| bytes of one archive member | 1 GiB | `HF_BPT3C_MAX_MEMBER_BYTES` | `ArchiveLimits(max_member_bytes=)` |
| members of an archive | 256 | `HF_BPT3C_MAX_ARCHIVE_MEMBERS` | `ArchiveLimits(max_members=)` |
| uncompressed / compressed size (past 16 MiB) | 100 | `HF_BPT3C_MAX_COMPRESSION_RATIO` | `max_ratio=` |
| bytes of one download | 4 GiB | `HF_BPT3C_MAX_DOWNLOAD_BYTES` | `cached_download(max_bytes=)` |
| seconds of one download | 7200 | `HF_BPT3C_DOWNLOAD_TIME_LIMIT` | `cached_download(time_limit=)` |
| bytes of a vocabulary pickle | 64 MiB | `HF_BPT3C_MAX_VOCAB_BYTES` | `load_itos(max_bytes=)` |

fastai's WT103 archives hold a ~450 MB checkpoint and a ~1 MB vocabulary (3 members; float32 weights compress
about 1.1x); the IMDb sample a 1.3 MB CSV (2.3x). A compression bomb expands about 1000x. Sizes are bytes, or a
number with K, M, G or T (powers of 1024): `HF_BPT3C_MAX_ARCHIVE_BYTES=8G`.

`terminate_cleanly()` turns SIGTERM into `SystemExit(143)` while it is active (main thread, default handler only),
so that `finally` blocks run: temporary folders and `.part` files are removed when a run is stopped with `kill`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
from dataclasses import dataclass

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
MAX_ARCHIVE_BYTES_ENV = "HF_BPT3C_MAX_ARCHIVE_BYTES"
MAX_MEMBER_BYTES_ENV = "HF_BPT3C_MAX_MEMBER_BYTES"
MAX_ARCHIVE_MEMBERS_ENV = "HF_BPT3C_MAX_ARCHIVE_MEMBERS"
MAX_COMPRESSION_RATIO_ENV = "HF_BPT3C_MAX_COMPRESSION_RATIO"
MAX_DOWNLOAD_BYTES_ENV = "HF_BPT3C_MAX_DOWNLOAD_BYTES"
DOWNLOAD_TIME_LIMIT_ENV = "HF_BPT3C_DOWNLOAD_TIME_LIMIT"
MAX_VOCAB_BYTES_ENV = "HF_BPT3C_MAX_VOCAB_BYTES"

DEFAULT_MAX_ARCHIVE_BYTES = 2 * GIB
DEFAULT_MAX_MEMBER_BYTES = 1 * GIB
DEFAULT_MAX_ARCHIVE_MEMBERS = 256
DEFAULT_MAX_COMPRESSION_RATIO = 100.0
RATIO_FLOOR_BYTES = 16 * MIB  # the ratio applies beyond this: a small tar's padding compresses very well
DEFAULT_MAX_DOWNLOAD_BYTES = 4 * GIB
DEFAULT_DOWNLOAD_TIME_LIMIT_S = 7200.0
DEFAULT_MAX_VOCAB_BYTES = 64 * MIB

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": KIB, "M": MIB, "G": GIB, "T": 1 << 40}


class LimitExceeded(ValueError):
    """Something read from outside is larger (or slower) than its limit; the message names the limit and how to
    raise it."""


def parse_size(value, name: str) -> int:
    """Bytes from an int or a string such as `"1073741824"`, `"500M"` or `"2G"` (powers of 1024); `ValueError`
    naming `name` for anything else or for a size < 1."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a size in bytes (such as 2G or 500M), got {value!r}")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise ValueError(f"{name} must be a size in bytes (such as 2G or 500M), got {value!r}")
        size = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if size < 1:
        raise ValueError(f"{name} must be at least 1 byte, got {value!r}")
    return size


def parse_positive(value, name: str, integer: bool = False) -> float | int:
    """A number > 0 (an int when `integer`) from a number or a string; `ValueError` naming `name` otherwise."""
    try:
        number = int(value) if integer else float(value)
    except (TypeError, ValueError):
        number = None
    if isinstance(value, bool) or number is None or not number > 0 or number == float("inf"):
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {kind} > 0, got {value!r}")
    return number


def env_size(variable: str, default: int) -> int:
    """The size in `$variable` (see `parse_size`), or `default` when it is unset or empty."""
    value = os.environ.get(variable, "").strip()
    return parse_size(value, variable) if value else default


def env_positive(variable: str, default: float | int, integer: bool = False) -> float | int:
    value = os.environ.get(variable, "").strip()
    return parse_positive(value, variable, integer) if value else default


def human(size: float) -> str:
    """`2.0 GiB`, `16.0 MiB`, `512 B`."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} B"


@dataclass(frozen=True)
class ArchiveLimits:
    """The most an archive may expand to: total bytes of its (uncompressed) tar stream, bytes of one member,
    number of members, and uncompressed/compressed ratio beyond `RATIO_FLOOR_BYTES`. Defaults: the environment
    variables of the module docstring, else 2 GiB, 1 GiB, 256 members, 100x."""

    max_total_bytes: int | None = None
    max_member_bytes: int | None = None
    max_members: int | None = None
    max_ratio: float | None = None

    def resolved(self) -> ArchiveLimits:
        """The limits with every unset field read from its environment variable or default, and checked."""
        return ArchiveLimits(
            max_total_bytes=parse_size(self.max_total_bytes, "max_total_bytes")
            if self.max_total_bytes is not None
            else env_size(MAX_ARCHIVE_BYTES_ENV, DEFAULT_MAX_ARCHIVE_BYTES),
            max_member_bytes=parse_size(self.max_member_bytes, "max_member_bytes")
            if self.max_member_bytes is not None
            else env_size(MAX_MEMBER_BYTES_ENV, DEFAULT_MAX_MEMBER_BYTES),
            max_members=parse_positive(self.max_members, "max_members", integer=True)
            if self.max_members is not None
            else env_positive(MAX_ARCHIVE_MEMBERS_ENV, DEFAULT_MAX_ARCHIVE_MEMBERS, integer=True),
            max_ratio=parse_positive(self.max_ratio, "max_ratio")
            if self.max_ratio is not None
            else env_positive(MAX_COMPRESSION_RATIO_ENV, DEFAULT_MAX_COMPRESSION_RATIO),
        )

    def stream_limit(self, compressed_bytes: int) -> tuple[int, str]:
        """The most bytes the tar stream of an archive of `compressed_bytes` may hold, and which limit that is."""
        by_ratio = max(RATIO_FLOOR_BYTES, int(self.max_ratio * compressed_bytes))
        if by_ratio < self.max_total_bytes:
            return by_ratio, (
                f"it expands more than {self.max_ratio:g}x its compressed size of {human(compressed_bytes)} (a "
                f"compression bomb?); raise {MAX_COMPRESSION_RATIO_ENV} if it is genuine"
            )
        return self.max_total_bytes, (
            f"it holds more than {human(self.max_total_bytes)} uncompressed; raise {MAX_ARCHIVE_BYTES_ENV} "
            "(or pass a larger ArchiveLimits / --max-extract-bytes) if it is genuine"
        )


@contextlib.contextmanager
def terminate_cleanly():
    """While active, SIGTERM raises `SystemExit(143)` in the main thread instead of killing the process at once, so
    that `finally` blocks and context managers clean up. Does nothing outside the main thread or when a handler
    other than the default one is installed (the caller's handler is kept)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) not in (
        signal.SIG_DFL,
        None,
    ):
        yield
        return

    def _exit(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


__all__ = [
    "ArchiveLimits",
    "LimitExceeded",
    "env_size",
    "parse_size",
    "terminate_cleanly",
]
