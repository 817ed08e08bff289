"""Files, written once and whole: content hashes, and writes that go to a temporary name beside the target and
are renamed over it (a reader never sees half a file; a failed write leaves no partial target behind).

Standard library only. For object storage (``s3://``) the store's own put is atomic; these are for local paths.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

_CHUNK = 1 << 20


def _digest(path: str | Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_md5(path: str | Path) -> str:
    """The file's md5 (DVC's content hash of a file), read in 1 MiB chunks."""
    return _digest(path, "md5")


def file_sha256(path: str | Path) -> str:
    """The file's sha256, read in 1 MiB chunks."""
    return _digest(path, "sha256")


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries (a rename into it survives a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | Path, write: Callable[[Path], object] | str) -> Path:
    """Write ``path`` through ``.<name>.tmp`` beside it, then rename it over ``path``.

    :param write: the text to write (UTF-8), or a callable that writes the file at the path it is given (e.g.
        ``lambda tmp: frame.to_parquet(tmp, index=False)``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if isinstance(write, str):
            tmp.write_text(write, encoding="utf-8")
        else:
            write(tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def copy_atomic(source: str | Path, dest: str | Path, *, verify: bool = False) -> Path:
    """Copy ``source`` to ``dest`` through a temporary name; with ``verify`` the copy's md5 must equal the source's
    (``OSError`` otherwise, and ``dest`` is left as it was)."""

    def copy(tmp: Path) -> None:
        shutil.copyfile(source, tmp)
        if verify and file_md5(tmp) != file_md5(source):
            raise OSError(f"the copy of {source} to {dest} is corrupt (md5 differs)")

    return write_atomic(dest, copy)
