"""Tables at a URI, read and written by training and scoring jobs the same way on every backend.

A training set is named by ``MLOPS_TRAINING_SET_URI``: a plain local path, ``file://...`` or an object-store URI
(``s3://bucket/key`` in production). The job opens it with a pyarrow filesystem built from the URI (pyarrow is in
every training environment, with S3 and GCS built in: no extra package), so a subprocess on the worker and a pod
on a GPU node run the same code. A scheme pyarrow does not know goes through fsspec, when a package for it is
installed.

S3 settings come from the job's environment (what the training operators pass; boto3's names)::

    AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3)       the store's endpoint (MinIO, another S3-compatible store)
    AWS_DEFAULT_REGION (or AWS_REGION)              its region
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY        credentials (a pod gets them from a Kubernetes secret);
    AWS_SESSION_TOKEN                               without them the SDK's default chain applies (IRSA, ...)

Standard library at import; pyarrow (and pandas for frames) only when called. Errors never name a credential.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

ENDPOINT_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
REGION_ENV = ("AWS_DEFAULT_REGION", "AWS_REGION")
#: The environment variables of the store's credentials (secret: never a plain value of a pod spec, never logged).
CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


class DataAccessError(Exception):
    """A table could not be read or written: ``cause`` names the URI, ``next_step`` what to do.

    :param retryable: the store was unreachable or refused access (a retry may help); else the data is missing or
        is not Parquet (it will not).
    """

    def __init__(self, cause: str, next_step: str, *, retryable: bool) -> None:
        super().__init__(f"{cause}; {next_step}")
        self.cause, self.next_step, self.retryable = cause, next_step, retryable


def uri_scheme(uri: str) -> str:
    """``file`` for plain paths and ``file://`` URIs, else the URI's scheme."""
    scheme = urlsplit(str(uri)).scheme if "://" in str(uri) else ""
    return "file" if scheme in ("", "file", "local") else scheme


def _first(environ: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    return next((environ[n].strip() for n in names if environ.get(n, "").strip()), None)


def _s3(environ: Mapping[str, str]) -> Any:
    from pyarrow import fs

    kwargs: dict[str, Any] = {}
    endpoint = _first(environ, ENDPOINT_ENV)
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs.update(endpoint_override=parts.netloc + parts.path.rstrip("/"), scheme=parts.scheme)
    region = _first(environ, REGION_ENV)
    if region:
        kwargs["region"] = region
    key, secret = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        kwargs.update(access_key=key, secret_key=secret, session_token=environ.get("AWS_SESSION_TOKEN") or None)
    return fs.S3FileSystem(**kwargs)


def filesystem(uri: str, environ: Mapping[str, str] | None = None) -> tuple[Any, str]:
    """(pyarrow filesystem, path inside it) of ``uri``.

    :param environ: where the S3 settings are read (default ``os.environ``).
    """
    from pyarrow import fs

    env = os.environ if environ is None else environ
    text = str(uri).strip()
    scheme = uri_scheme(text)
    if scheme == "file":
        path = unquote(urlsplit(text).path) if "://" in text else text
        return fs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path))
    if scheme in ("s3", "s3a"):
        parts = urlsplit(text)
        bucket = parts.netloc.rsplit("@", 1)[-1]  # an Airflow conn id in the authority is not the bucket's
        return _s3(env), f"{bucket}{unquote(parts.path)}"
    try:
        return fs.FileSystem.from_uri(text)
    except Exception:  # noqa: BLE001 - not a pyarrow scheme (ArrowInvalid): try fsspec
        import fsspec
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        fsspec_fs, path = fsspec.core.url_to_fs(text)
        return PyFileSystem(FSSpecHandler(fsspec_fs)), path


def _access_hint(uri: str) -> str:
    if uri_scheme(uri) == "file":
        return "check the path and that this job can read it (a pod reads only object-store URIs)"
    return (f"check that the job reaches the store of {uri} (AWS_ENDPOINT_URL) with valid credentials "
            "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY: for a pod, the secret of [mlops] training_storage_secret)")


def read_table(uri: str, environ: Mapping[str, str] | None = None, *, what: str = "table") -> Any:
    """The Parquet file (or folder of files) at ``uri`` as a pandas DataFrame.

    :raises DataAccessError: not found, unreachable or not Parquet (the URI and the next step).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        filesys, path = filesystem(uri, environ)
        info = filesys.get_file_info(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow/AWS SDK raise many types; one message names the URI
        raise DataAccessError(f"cannot open {what} {uri} ({type(exc).__name__}: {_short(exc)})",
                              _access_hint(uri), retryable=True) from None
    from pyarrow.fs import FileType

    if info.type == FileType.NotFound:
        raise DataAccessError(f"{what} not found: {uri}", "check the URI the upstream step returned",
                              retryable=False)
    try:
        return pq.read_table(path, filesystem=filesys).to_pandas()
    except pa.ArrowInvalid as exc:
        raise DataAccessError(f"cannot read {what} {uri} as Parquet ({_short(exc)})",
                              "check the file the upstream step wrote", retryable=False) from None
    except Exception as exc:  # noqa: BLE001 - I/O: the store went away mid-read
        raise DataAccessError(f"cannot read {what} {uri} ({type(exc).__name__}: {_short(exc)})",
                              _access_hint(uri), retryable=True) from None


def write_table(frame: Any, uri: str, environ: Mapping[str, str] | None = None, *, what: str = "table") -> str:
    """Write ``frame`` as one Parquet file at ``uri`` (a local file through a temporary name; an object-store PUT
    is whole by itself); returns the URI (a local target: its absolute path).

    :raises DataAccessError: the store is unreachable or refuses the write.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        filesys, path = filesystem(uri, environ)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if uri_scheme(uri) == "file":
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.tmp-{os.getpid()}"
            pq.write_table(table, tmp)
            os.replace(tmp, path)
            return path
        pq.write_table(table, path, filesystem=filesys)
    except Exception as exc:  # noqa: BLE001
        raise DataAccessError(f"cannot write {what} {uri} ({type(exc).__name__}: {_short(exc)})",
                              _access_hint(uri), retryable=True) from None
    return str(uri)


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
