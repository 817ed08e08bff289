"""Version a new data batch with DVC and announce it as an Airflow Asset event."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, BaseOperator

from mlops_airflow._io import copy_atomic
from mlops_airflow._summary import log_summary
from mlops_airflow.exceptions import DatasetVersionError
from mlops_airflow.hooks.dvc_repo import DvcHook, file_md5
from mlops_airflow.lineage import DvcVersionLineageMixin
from mlops_airflow.links.dvc import DvcCommitLink
from mlops_airflow.operators._common import parquet_rows, run_identity

if TYPE_CHECKING:
    from airflow.sdk import Context


def parquet_columns(path: Path) -> dict[str, str]:
    """``{column: Arrow type}`` of a Parquet file, from its footer only (``pyarrow.parquet.read_schema``)."""
    import pyarrow.parquet as pq

    return {field.name: str(field.type) for field in pq.read_schema(path)}


def schema_differences(expected: dict[str, str], actual: dict[str, str]) -> dict[str, list[str]]:
    """What ``actual`` (a new batch) changes against ``expected`` (the dataset); column order is not compared.

    Returns ``{"missing": [...], "extra": [...], "retyped": ["col: old -> new", ...]}``, all empty when compatible.
    """
    return {
        "missing": sorted(set(expected) - set(actual)),
        "extra": sorted(set(actual) - set(expected)),
        "retyped": [f"{c}: {expected[c]} -> {actual[c]}" for c in sorted(set(expected) & set(actual))
                    if expected[c] != actual[c]],
    }


class DvcVersionDatasetOperator(DvcVersionLineageMixin, BaseOperator):
    """Add a batch to a DVC-tracked dataset, commit the pointer in git and push data + pointer.

    The dataset (``dataset_path``, a file or a directory inside the repository) gets a new version;
    the return value (XCom) is the dataset version ``{repo, rev, path, md5, size, rows, nfiles}``
    and every ``dvc://`` asset in ``outlets`` receives an event with ``{rev, md5, size, rows}``. The working copy
    is the connection's (``DvcHook``): a fixed folder, or a clone per task that only this run uses (the dataset is
    ``dvc pull``ed into it, and the clone is removed afterwards); a push that another worker beat re-applies the
    version on the new head. The task's "DVC commit" link opens the commit (GitHub/GitLab ``repo_url``).

    Safe to retry: an identical batch already in place gives the same version without a new commit,
    and a *different* file at the destination is never overwritten (unless ``overwrite=True``).

    Schema check (Parquet batches): the batch's column names and Arrow types (read from its footer) must equal
    those of the dataset's newest existing Parquet file (last by name; for a single-file dataset, the file it
    replaces); column order does not matter. Otherwise ``DatasetVersionError`` names the missing, extra and
    retyped columns, and nothing is written or committed: a dataset whose files disagree is read with one
    file's schema, so a changed export would silently corrupt later training sets.

    :param source_path: the landed batch to add (templated): a URI (``s3://...``, ``file://...``) or a local path;
        a remote batch is staged in the task's temporary folder first.
    :param dataset_path: the tracked path inside the repository, e.g. ``data/events`` (templated).
    :param file_name: name of the batch inside a directory dataset, e.g. ``{{ ds }}.parquet``; None
        when ``dataset_path`` is a single file that the batch replaces (templated).
    :param overwrite: replace a different file already at the destination (default False: fail).
    :param commit_message: git commit message (templated); default names the batch and the DAG run.
    :param schema_check: compare the batch's schema with the dataset's (default True). False only for an
        intended schema change that every reader of the dataset handles.
    :param dvc_conn_id: connection of type ``dvc``.
    """

    template_fields: Sequence[str] = ("source_path", "dataset_path", "file_name", "commit_message")
    ui_color = "#945dd6"
    operator_extra_links = (DvcCommitLink(),)

    def __init__(
        self,
        *,
        source_path: str,
        dataset_path: str,
        file_name: str | None = None,
        overwrite: bool = False,
        commit_message: str | None = None,
        schema_check: bool = True,
        dvc_conn_id: str = DvcHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source_path = source_path
        self.dataset_path = dataset_path
        self.file_name = file_name
        self.overwrite = overwrite
        self.commit_message = commit_message
        self.schema_check = schema_check
        self.dvc_conn_id = dvc_conn_id

    @cached_property
    def hook(self) -> DvcHook:
        return DvcHook(dvc_conn_id=self.dvc_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_airflow import storage

        source_uri = storage.to_uri(self.source_path)
        try:
            with storage.local_copy(source_uri) as source:  # a remote batch is staged in this task's temp folder
                if not source.is_file():
                    raise FileNotFoundError(source_uri)
                return self._version(source, source_uri, context)
        except FileNotFoundError:
            raise DatasetVersionError(
                f"Batch {source_uri} does not exist: nothing to version. Check the landing task's output path.",
                cause="batch missing", evidence_uri=source_uri, next_step="check the landing task's output",
            ) from None

    def _version(self, source: Path, source_uri: str, context: Context) -> dict[str, Any]:
        if source.suffix == ".parquet":
            try:
                parquet_rows(source)  # footer only: a corrupt batch must not become a data version
            except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
                raise DatasetVersionError(
                    f"Batch {source_uri} is not readable Parquet ({type(err).__name__}: {err}); nothing was "
                    "versioned and the batch stays where it is. Run the validation gate first (it quarantines "
                    "corrupt batches), then re-land a readable batch"
                ) from None
        rel_dest = f"{self.dataset_path.rstrip('/')}/{self.file_name}" if self.file_name else self.dataset_path
        ident = run_identity(context)
        # A per-task clone (or the fixed working copy) with this dataset pulled; the clone goes when the block ends.
        with self.hook.working_copy(self.dataset_path) as repo, self.hook.locked():
            dest = repo / rel_dest  # checked under the lock: no other run adds a file between check and commit
            self._check_schema(source, dest)
            self._place(source, dest)
            message = self.commit_message or (
                f"data: {rel_dest} into {self.dataset_path} ({ident['dag_id']} {ident['run_id']})"
            )
            version = self.hook.version_path(self.dataset_path, message)
            version["rows"] = parquet_rows(repo / self.dataset_path) if dest.suffix == ".parquet" else None
            version["batch"] = rel_dest
            version["batch_md5"] = file_md5(dest)
        DvcCommitLink.persist(context, version)
        extra = {k: version[k] for k in ("rev", "md5", "size", "rows", "path", "batch")}
        extra["dag_run"] = f"{ident['dag_id']}/{ident['run_id']}"
        for outlet in self.outlets or []:
            if isinstance(outlet, Asset) and outlet.uri.startswith("dvc://"):
                context["outlet_events"][outlet].extra = extra
        log_summary(self.log, "dvc-version", path=version["path"], rev=version["rev"][:12], md5=version["md5"],
                    rows=version["rows"], new_commit=version["new_commit"], source=source_uri,
                    remote=self.hook.settings.remote or "default")
        return version

    def _check_schema(self, source: Path, dest: Path) -> None:
        """Fail, before anything is written, when the batch's columns or types differ from the dataset's."""
        if not self.schema_check:
            self.log.warning("schema_check=False: %s is versioned without comparing its schema", source)
            return
        if source.suffix != ".parquet":
            self.log.info("schema check not applicable: %s is not Parquet", source)
            return
        repo = self.hook.settings.repo_path
        if self.file_name:
            existing = self.hook.newest_file(self.dataset_path, exclude=dest)
        else:
            existing = dest if dest.is_file() else None
        if existing is None:
            if (repo / f"{self.dataset_path.rstrip('/')}.dvc").exists():
                self.log.warning(
                    "schema check: %s.dvc exists but the working copy holds no Parquet file of it to compare with "
                    "(not checked out? `dvc checkout %s`); versioning without a comparison",
                    self.dataset_path, self.dataset_path,
                )
            else:
                self.log.info("schema check: %s has no files yet; this batch sets its schema", self.dataset_path)
            return
        rel = existing.relative_to(repo).as_posix()
        try:
            expected = parquet_columns(existing)
        except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
            raise DatasetVersionError(
                f"cannot read the schema of {rel}, the newest file of dataset {self.dataset_path} "
                f"({type(err).__name__}: {err}); nothing was written or committed. The working copy at {repo} may "
                f"be damaged: run `dvc status {self.dataset_path}` and `dvc checkout {self.dataset_path}` there, "
                "then retry the task"
            ) from None
        against = f"its newest file {rel}" if self.file_name else f"{rel}, the file it replaces"
        diff = schema_differences(expected, parquet_columns(source))
        if any(diff.values()):
            parts = [
                f"missing columns {diff['missing']} (in the dataset, not in the batch)" if diff["missing"] else "",
                f"extra columns {diff['extra']} (in the batch only)" if diff["extra"] else "",
                f"retyped columns {diff['retyped']} (dataset -> batch)" if diff["retyped"] else "",
            ]
            raise DatasetVersionError(
                f"batch {source} does not match the schema of dataset {self.dataset_path} (compared with "
                f"{against}): {'; '.join(p for p in parts if p)}. Nothing was written or committed and the "
                "batch stays where it is. Fix the export (rename/cast the columns to the dataset's names and types) "
                "and land the batch again, or version the new schema as a new dataset (another dataset_path); "
                "schema_check=False only if every reader of this dataset handles both schemas"
            )
        self.log.info("schema check: %s matches %s (%d columns)", source.name, rel, len(expected))

    def _place(self, source: Path, dest: Path) -> None:
        if dest.exists():
            if file_md5(dest) == file_md5(source):
                self.log.info("%s already holds this batch (same md5): reusing it", dest)
                return
            if not self.overwrite:
                raise DatasetVersionError(
                    f"{dest} already exists with different content; refusing to overwrite a versioned batch. "
                    "Land the batch under a new name, or set overwrite=True if replacing it is intended "
                    "(the old content stays reachable at its earlier DVC revision)."
                )
        copy_atomic(source, dest)


class DvcResolveVersionOperator(BaseOperator):
    """Materialise one dataset version to a local path and prove it is the recorded content.

    The version is ``dataset_version`` (an upstream ``DvcVersionDatasetOperator`` XCom, the extra of a ``dvc://``
    asset event - from that operator or from a ``DvcNewVersionTrigger`` watcher - or any dict with ``path`` and
    ``rev``), or ``dataset_path`` + ``rev`` (a sha, branch or tag, resolved to the commit sha).
    The data comes from the local DVC cache, else the remote (``dvc get`` at that revision; the working copy is
    not touched), lands in a temporary sibling and is renamed to ``local_dir/<rev[:12]>/<name>`` only after its
    md5 matches the ``.dvc`` file of that revision (a directory's ``.dir`` hash is recomputed from its files).

    Idempotent: a verified copy already at the destination is reused without fetching.

    ``local_dir`` may be an object-store URI (``s3://...``): the version is verified in a temporary folder of the
    task's own, then uploaded file by file to ``<local_dir>/<rev[:12]>/<name>`` with a ``.verified.json`` marker
    written last (a retry that finds the marker reuses the upload).

    Returns (XCom) ``{repo, rev, path, md5, size, nfiles, rows, uri, local_path, reused}`` (``local_path`` is
    ``None`` for an object-store destination: no other task can read this worker's disk).

    :param dataset_version: the version to resolve (templated; dict or its JSON).
    :param dataset_path: the tracked path inside the repository when no ``dataset_version`` is given (templated).
    :param rev: git revision of ``dataset_path`` (templated); default ``HEAD``.
    :param local_dir: folder that receives ``<rev[:12]>/<name>`` (templated).
    :param dvc_conn_id: connection of type ``dvc``.
    """

    template_fields: Sequence[str] = ("dataset_version", "dataset_path", "rev", "local_dir")
    ui_color = "#945dd6"

    def __init__(
        self,
        *,
        local_dir: str,
        dataset_version: dict[str, Any] | str | None = None,
        dataset_path: str | None = None,
        rev: str | None = None,
        dvc_conn_id: str = DvcHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if dataset_version is None and not dataset_path:
            raise ValueError("DvcResolveVersionOperator needs dataset_version or dataset_path")
        self.dataset_version = dataset_version
        self.dataset_path = dataset_path
        self.rev = rev
        self.local_dir = local_dir
        self.dvc_conn_id = dvc_conn_id

    @cached_property
    def hook(self) -> DvcHook:
        return DvcHook(dvc_conn_id=self.dvc_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.operators._common import as_dict

        if self.dataset_version not in (None, ""):
            version = as_dict(self.dataset_version, "dataset_version")
            if isinstance(version.get("payload"), dict):  # an AssetWatcher event's extra: {from_trigger, payload}
                version = version["payload"]
            path, rev = version.get("path"), version.get("rev")
            if not path or not rev:
                raise DatasetVersionError(
                    f"dataset_version {version!r:.200} lacks 'path' or 'rev'; pass the XCom of a DVC version task"
                )
        else:
            path, rev = str(self.dataset_path), self.rev or "HEAD"
        from mlops_airflow import storage

        remote = not storage.is_local(str(self.local_dir))
        with self.hook.working_copy() as repo, contextlib.ExitStack() as stack:  # one clone when per task
            sha = self.hook.resolve_rev(rev)
            out = self.hook.read_dvc_file(path, sha)
            what = f"{path}@{sha[:12]}"
            # An object-store destination: verified in a folder of this task's own, then uploaded whole.
            base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mlops-resolve-"))) if remote \
                else storage.local_path(str(self.local_dir))
            dest = base / sha[:12] / Path(path).name
            target = storage.join(str(self.local_dir), sha[:12], Path(path).name)
            reused = False
            facts: dict[str, Any] | None = None
            marker = f"{target}.verified.json"  # written last: its presence means the upload is complete
            if remote and storage.exists(marker):
                facts = storage.read_json(marker)
                reused = True
                self.log.info("%s already holds %s, verified when it was uploaded: reusing it", target, what)
            elif dest.exists():
                try:
                    facts = self.hook.verify_output(dest, out["md5"], what)
                    reused = True
                    self.log.info("%s already holds %s with the recorded md5: reusing it", dest, what)
                except DatasetVersionError as err:
                    self.log.warning("existing copy at %s does not verify (%s): fetching again", dest, err)
            if facts is None:
                self.hook.materialize_version(path, sha, dest)
                facts = self.hook.verify_output(dest, out["md5"], what)
            if remote and reused:
                rows = facts.get("rows")
            else:
                rows = parquet_rows(dest) if (dest.is_dir() or dest.suffix == ".parquet") else None
            if remote and not reused:
                files = sorted(p for p in dest.rglob("*") if p.is_file()) if dest.is_dir() else [dest]
                for file in files:
                    rel = file.relative_to(dest).as_posix() if dest.is_dir() else ""
                    storage.put_file(file, storage.join(target, rel) if rel else target)
                storage.write_json(marker, {**facts, "rows": rows})
        result = {
            "repo": self.hook.settings.repo_url or str(repo),
            "rev": sha,
            "path": path,
            "md5": out["md5"],
            "size": facts["size"],
            "nfiles": facts["nfiles"],
            "rows": rows,
            "uri": target,
            "local_path": None if remote else str(dest.absolute()),
            "reused": reused,
        }
        log_summary(self.log, "dvc-resolve", path=path, rev=sha[:12], md5=out["md5"], verified="true", rows=rows,
                    uri=target, reused=reused)
        return result
