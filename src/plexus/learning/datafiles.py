"""Where downloaded data and decoded caches live, and how files are fetched safely.

Datasets are never stored in the repository. A download goes to ``--data DIR`` when one was given, otherwise
to the cache folder (``$PLEXUS_CACHE``, default ``~/.cache/plexus``), which also holds decoded arrays (e.g. the
60,000 CIFAR-10 JPEGs as one ``.npz``) so that a second run skips the slow decoding. A download is written to a
``.part`` file and renamed only after its md5 matches, so an interrupted download never looks complete.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path

import numpy as np

from plexus.errors import DataError

CHUNK = 1 << 20


def cache_dir() -> Path:
    """The folder for downloads and decoded caches (created on first use by the writers, not here)."""
    override = os.environ.get("PLEXUS_CACHE")
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "plexus"


def file_key(*paths: Path, extra: str = "") -> str:
    """A short key that changes when any source file is replaced: its resolved path, size and mtime."""
    digest = hashlib.sha1(extra.encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(url: str, dest: Path, md5: str | None = None, timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest`` atomically; raises DataError (naming the URL) on network or checksum failure.

    The bytes go to ``dest.part`` first and are renamed only when complete and (if given) md5-verified, so a
    partial download is never mistaken for data.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            for chunk in iter(lambda: response.read(CHUNK), b""):
                out.write(chunk)
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        part.unlink(missing_ok=True)
        raise DataError(f"download of {url} failed ({error}); fetch it by hand into {dest.parent}") from None
    if md5 is not None:
        got = md5_of(part)
        if got != md5:
            part.unlink(missing_ok=True)
            raise DataError(f"download of {url} is corrupt (md5 {got}, expected {md5}); try again")
    os.replace(part, dest)
    return dest


def load_npz_cache(path: Path) -> dict[str, np.ndarray] | None:
    """Arrays of a cache file, or None when it is absent or unreadable (a broken cache is rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error):
        return None


def save_npz_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write a cache atomically; failure to write (read-only home, full disk) is not an error, only slower."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
