"""Artefact storage: every artefact that moves between tasks lives at a URI under ``[mlops] data_root``.

Workers share no disk. A landed batch, a quarantined batch, a validation result, a training set, a holdout, a
score file, an inference log, a drift report and a run summary are each written to, and read back from, a URI
through Airflow's own ``airflow.sdk.ObjectStoragePath`` (fsspec underneath): ``file:///...`` on the local stack,
``s3://bucket/...`` in production (credentials from the Airflow connection ``[mlops] storage_conn_id``, an ``aws``
connection whose extra may name ``endpoint_url`` for MinIO or another S3-compatible store).

Where a library needs a local file (DVC add, Great Expectations, Evidently HTML, pyarrow on a big file), the task
stages it in a temporary folder of its own run (``local_copy`` / ``staged_output``) and writes results back.

Conventions every operator follows:
- XCom carries URIs (``to_uri(...)``: a plain local path becomes ``file:///abs/path``; a URI keeps its scheme and
  loses any connection id ObjectStoragePath puts in its authority), never a worker's path.
- Every reader accepts a URI or a plain local path (old XCom values and users' own paths keep working).
- Writes are whole: a local target is written through a temporary name and renamed; an object store's PUT is
  atomic by itself. A reader never sees half an artefact.
- The store unreachable -> ``StorageError`` naming the URI, the cause and the next step (the task may be retried:
  every write is idempotent).

No pandas or pyarrow at import; ``read_parquet``/``write_parquet`` import them when called.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from mlops_airflow.exceptions import MLOpsError

DEFAULT_DATA_ROOT = "/tmp/mlops-data"
_CHUNK = 1 << 20


class StorageError(MLOpsError):
    """An artefact could not be read from or written to the object store (or a local path)."""


# ---------------------------------------------------------------------------------------------------- locations
def to_uri(location: str | os.PathLike[str]) -> str:
    """``location`` as a URI: a plain path -> ``file:///absolute/path``; a URI -> the same URI without the
    connection id that ``ObjectStoragePath`` may carry in its authority (``s3://conn@bucket/k`` -> ``s3://bucket/k``).
    """
    if hasattr(location, "protocol") and hasattr(location, "path") and not isinstance(location, Path):
        protocol = location.protocol  # type: ignore[union-attr]
        protocol = protocol[0] if isinstance(protocol, tuple | list) else protocol
        if protocol in ("file", "local"):
            return Path(location.path).absolute().as_uri()  # type: ignore[union-attr]
        return f"{protocol}://{str(location.path).lstrip('/')}"  # type: ignore[union-attr]
    text = os.fspath(location)
    if "://" not in text:
        return Path(text).expanduser().absolute().as_uri()
    parts = urlsplit(text)
    if parts.scheme in ("file", "local"):
        return Path(unquote(parts.path)).absolute().as_uri()
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{netloc}{parts.path}"


def scheme(uri: str | os.PathLike[str]) -> str:
    """``file`` for local paths and ``file://`` URIs, else the URI's scheme (``s3``, ``gs``, ...)."""
    text = to_uri(uri)
    found = urlsplit(text).scheme
    return "file" if found in ("file", "local") else found


def is_local(uri: str | os.PathLike[str]) -> bool:
    return scheme(uri) == "file"


def local_path(uri: str | os.PathLike[str]) -> Path:
    """The local path of a ``file://`` URI (or plain path); ``ValueError`` for a remote URI (stage it instead)."""
    text = to_uri(uri)
    if not is_local(text):
        raise ValueError(f"{text} is not on this worker's disk; read it with storage.local_copy(...) instead")
    return Path(unquote(urlsplit(text).path))


def join(base: str | os.PathLike[str], *parts: str) -> str:
    """``base`` (URI or path) joined with ``parts`` by ``/``, as a URI."""
    out = to_uri(base).rstrip("/")
    for part in parts:
        part = str(part).strip("/")
        if part:
            out = f"{out}/{part}"
    return out


def name(uri: str | os.PathLike[str]) -> str:
    """The last segment of ``uri`` (the file name; percent-decoded for a local path)."""
    text = to_uri(uri)
    last = text.rstrip("/").rsplit("/", 1)[-1]
    return unquote(last) if is_local(text) else last


def parent(uri: str | os.PathLike[str]) -> str:
    return to_uri(uri).rstrip("/").rsplit("/", 1)[0]


def data_root(override: str | None = None) -> str:
    """The artefact root as a URI: ``override``, else ``[mlops] data_root``, else ``file:///tmp/mlops-data``."""
    if override:
        return to_uri(override)
    from mlops_airflow.config import mlops_conf

    return to_uri(mlops_conf("data_root", DEFAULT_DATA_ROOT) or DEFAULT_DATA_ROOT)


def storage_conn_id() -> str | None:
    """``[mlops] storage_conn_id``: the Airflow connection of a remote store (``None``: the scheme's default)."""
    from mlops_airflow.config import mlops_conf

    return mlops_conf("storage_conn_id", None) or None


def object_path(uri: str | os.PathLike[str], conn_id: str | None = None) -> Any:
    """An ``airflow.sdk.ObjectStoragePath`` for ``uri`` (remote: through ``conn_id`` or ``[mlops] storage_conn_id``)."""
    from airflow.sdk import ObjectStoragePath

    text = to_uri(uri)
    if is_local(text):
        return ObjectStoragePath(text)
    return ObjectStoragePath(text, conn_id=conn_id or storage_conn_id())


def _failed(action: str, uri: str, err: BaseException) -> StorageError:
    remote = not is_local(uri)
    where = "the object store" if remote else "the local disk"
    next_step = (f"check that {where} is reachable from this worker and the connection "
                 f"{storage_conn_id() or '(default)'} holds valid credentials, then clear the task (a retry is safe: "
                 "every write is whole and idempotent)" if remote else
                 "check the path and the worker's permissions, then clear the task")
    return StorageError(f"could not {action} {uri}: {type(err).__name__}: {err}; {next_step}",
                        cause=f"{action} failed", evidence_uri=uri, next_step=next_step)


@contextlib.contextmanager
def _guard(action: str, uri: str) -> Iterator[None]:
    try:
        yield
    except (StorageError, FileNotFoundError):
        raise
    except Exception as err:  # noqa: BLE001 - fsspec/botocore/aiohttp raise many types; all become one error
        raise _failed(action, uri, err) from err


# ---------------------------------------------------------------------------------------------------- reads
def exists(uri: str | os.PathLike[str]) -> bool:
    text = to_uri(uri)
    if is_local(text):
        return local_path(text).exists()
    with _guard("check", text):
        return bool(object_path(text).exists())


def read_bytes(uri: str | os.PathLike[str]) -> bytes:
    text = to_uri(uri)
    if is_local(text):
        return local_path(text).read_bytes()
    with _guard("read", text):
        return object_path(text).read_bytes()


def read_text(uri: str | os.PathLike[str]) -> str:
    return read_bytes(uri).decode("utf-8")


def read_json(uri: str | os.PathLike[str]) -> Any:
    return json.loads(read_bytes(uri))


def listdir(uri: str | os.PathLike[str], suffix: str = "") -> list[str]:
    """URIs of the files directly under ``uri`` ending in ``suffix``, sorted; ``[]`` when the folder is absent."""
    text = to_uri(uri).rstrip("/")
    if is_local(text):
        folder = local_path(text)
        return sorted(p.as_uri() for p in folder.iterdir() if p.is_file() and p.name.endswith(suffix)) \
            if folder.is_dir() else []
    with _guard("list", text):
        folder = object_path(text)
        if not folder.exists():
            return []
        return sorted(to_uri(p) for p in folder.iterdir() if p.is_file() and p.name.endswith(suffix))


@contextlib.contextmanager
def local_copy(uri: str | os.PathLike[str]) -> Iterator[Path]:
    """A local file with the content of ``uri`` for the ``with`` block: a ``file://`` URI is its own path (no copy);
    a remote object is downloaded into a temporary folder of this task that is removed afterwards.

    :raises FileNotFoundError: nothing at ``uri`` (the message names it).
    """
    text = to_uri(uri)
    if is_local(text):
        path = local_path(text)
        if not path.exists():
            raise FileNotFoundError(f"no artefact at {text}")
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="mlops-stage-") as tmp:
        dest = Path(tmp) / name(text)
        with _guard("download", text):
            source = object_path(text)
            if not source.exists():
                raise FileNotFoundError(f"no artefact at {text}")
            if source.is_dir():
                source.fs.get(source.path.rstrip("/") + "/", str(dest), recursive=True)
            else:
                with source.open("rb") as fin, open(dest, "wb") as fout:
                    shutil.copyfileobj(fin, fout, _CHUNK)
        yield dest


# ---------------------------------------------------------------------------------------------------- writes
def put_file(local: str | os.PathLike[str], uri: str | os.PathLike[str]) -> dict[str, Any]:
    """Copy the local file ``local`` to ``uri`` whole; returns ``{uri, md5, bytes}`` (md5 of what was sent)."""
    text = to_uri(uri)
    local = Path(local)
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    if is_local(text):
        from mlops_airflow._io import write_atomic

        target = local_path(text)
        if target.resolve() != local.resolve():
            def copy(tmp: Path) -> None:
                shutil.copyfile(local, tmp)

            write_atomic(target, copy)
        with open(target, "rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                digest.update(chunk)
                size += len(chunk)
        return {"uri": text, "md5": digest.hexdigest(), "bytes": size}
    with _guard("write", text):
        target = object_path(text)
        with open(local, "rb") as fin, target.open("wb") as fout:
            for chunk in iter(lambda: fin.read(_CHUNK), b""):
                digest.update(chunk)
                size += len(chunk)
                fout.write(chunk)
    return {"uri": text, "md5": digest.hexdigest(), "bytes": size}


@contextlib.contextmanager
def staged_output(uri: str | os.PathLike[str]) -> Iterator[Path]:
    """A local path to write ``uri``'s content to in the ``with`` block; on success it is put at ``uri`` whole (an
    exception leaves ``uri`` as it was). A local target is written beside itself and renamed."""
    text = to_uri(uri)
    if is_local(text):
        target = local_path(text)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        try:
            yield tmp
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
        return
    with tempfile.TemporaryDirectory(prefix="mlops-out-") as folder:
        tmp = Path(folder) / name(text)
        yield tmp
        put_file(tmp, text)


def write_atomic(uri: str | os.PathLike[str], write: Callable[[Path], object] | str | bytes) -> str:
    """Write ``uri`` whole; ``write`` is text (UTF-8), bytes, or a callable that writes the local file it is given
    (e.g. ``lambda tmp: frame.to_parquet(tmp, index=False)``). Returns the URI."""
    with staged_output(uri) as tmp:
        if isinstance(write, str):
            tmp.write_text(write, encoding="utf-8")
        elif isinstance(write, bytes):
            tmp.write_bytes(write)
        else:
            write(tmp)
    return to_uri(uri)


def write_json(uri: str | os.PathLike[str], obj: Any, *, indent: int | None = 2) -> str:
    return write_atomic(uri, json.dumps(obj, indent=indent, sort_keys=True, default=str))


def remove(uri: str | os.PathLike[str]) -> None:
    """Remove the file at ``uri`` (nothing there is not an error)."""
    text = to_uri(uri)
    if is_local(text):
        local_path(text).unlink(missing_ok=True)
        return
    with _guard("remove", text):
        target = object_path(text)
        if target.exists():
            target.unlink()


def md5(uri: str | os.PathLike[str]) -> str:
    """md5 of the content at ``uri``, streamed."""
    text = to_uri(uri)
    digest = hashlib.md5(usedforsecurity=False)
    if is_local(text):
        with open(local_path(text), "rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                digest.update(chunk)
        return digest.hexdigest()
    with _guard("read", text), object_path(text).open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------- tables
def read_table(uri: str | os.PathLike[str], **kwargs: Any) -> Any:
    """A Parquet or CSV artefact (by suffix) as a pandas DataFrame; ``kwargs`` go to the pandas reader."""
    import pandas as pd

    with local_copy(uri) as path:
        if path.suffix.lower() == ".csv":
            return pd.read_csv(path, **kwargs)
        return pd.read_parquet(path, **kwargs)


def write_table(uri: str | os.PathLike[str], frame: Any) -> str:
    """``frame`` as Parquet (or CSV, by suffix) at ``uri``, whole. Returns the URI."""
    text = to_uri(uri)
    if text.lower().endswith(".csv"):
        return write_atomic(text, lambda tmp: frame.to_csv(tmp, index=False))
    return write_atomic(text, lambda tmp: frame.to_parquet(tmp, index=False))
