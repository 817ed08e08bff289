"""``FeatureSkewCheckOperator``: training-serving skew, online values against offline point-in-time values."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_airflow import storage
from mlops_airflow._summary import log_summary
from mlops_airflow.exceptions import FeatureStoreError
from mlops_airflow.hooks.dvc_repo import DvcHook
from mlops_airflow.hooks.feast_store import FeastHook
from mlops_airflow.operators._common import as_dict
from mlops_airflow.operators._feast_common import parse_instant, read_version

if TYPE_CHECKING:
    from airflow.sdk import Context


class FeatureSkewCheckOperator(BaseOperator):
    """Training-serving skew: do the online store and the offline store give the same feature values?

    For a deterministic sample of entities, the online values (``get_online_features``) are compared with the
    offline point-in-time values (``get_historical_features``) *at the online row's own event time*, one feature
    view at a time. Both must then be the same source row, so any difference is skew: a materialisation bug,
    a stale or partial write, a changed transformation, data rewritten after it was served.

    Entities come from ``entity_df_path`` (Parquet/CSV, a path or a URI), else ``dataset_version`` (a DVC version,
    read at its revision; or a local version from its path or URI), else the newest rows of each view's offline
    source in ``[as_of - lookback, as_of)``. Works with any feature repository the connection points at (entity keys
    and views come from its registry).

    Returns the verdict ``{passed, reasons, metrics: {sampled, compared, mismatch_rate: {feature: rate},
    missing_online_rate: {feature: rate}, max_mismatch_rate}, evidence_uri}``; the evidence JSON lists
    examples of every mismatch. Fails with ``FeatureStoreError`` when the verdict does not pass and
    ``fail_on_skew`` (default).

    :param feature_service: the feature service to check (templated); or ``features`` (``view:feature`` refs).
    :param report_dir: folder or URI (``s3://...``) under which ``<dag>/<run>/<task>/feature_skew.json`` goes
        (templated); ``evidence_uri`` is its URI.
    :param sample_size: entities compared (default 500).
    :param max_mismatch_rate: highest share of mismatching values per feature that still passes (default 0).
    :param max_missing_rate: highest share of sampled entities absent from the online store (default 0).
    :param tolerance: absolute tolerance for floating-point values.
    :param feast_conn_id: Airflow connection of the feature repository.
    :param repo_path: the feature repository (a folder with ``feature_store.yaml``); wins over the connection.
    """

    template_fields: Sequence[str] = (
        "feature_service",
        "features",
        "entity_df_path",
        "dataset_version",
        "report_dir",
        "as_of",
    )
    ui_color = "#e8734a"

    def __init__(
        self,
        *,
        report_dir: str,
        feature_service: str | None = None,
        features: list[str] | None = None,
        entity_df_path: str | None = None,
        dataset_version: dict[str, Any] | str | None = None,
        as_of: str | None = None,
        lookback: timedelta = timedelta(days=7),
        sample_size: int = 500,
        seed: int = 0,
        max_mismatch_rate: float = 0.0,
        max_missing_rate: float = 0.0,
        tolerance: float = 1e-9,
        fail_on_skew: bool = True,
        feast_conn_id: str = FeastHook.default_conn_name,
        dvc_conn_id: str = DvcHook.default_conn_name,
        repo_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.repo_path = repo_path
        if not feature_service and not features:
            raise ValueError("FeatureSkewCheckOperator needs feature_service or features")
        if sample_size < 1:
            raise ValueError(f"sample_size must be >= 1, got {sample_size}")
        self.feature_service, self.features = feature_service, features
        self.entity_df_path, self.dataset_version, self.report_dir = entity_df_path, dataset_version, report_dir
        self.as_of, self.lookback, self.sample_size, self.seed = as_of, lookback, sample_size, seed
        self.max_mismatch_rate, self.max_missing_rate = max_mismatch_rate, max_missing_rate
        self.tolerance = tolerance
        self.fail_on_skew = fail_on_skew
        self.feast_conn_id = feast_conn_id
        self.dvc_conn_id = dvc_conn_id

    # -- which features, which entities -----------------------------------------------------
    def _refs_by_view(self, hook: FeastHook, store: Any) -> dict[str, list[str]]:
        refs: list[str] = []
        if self.feature_service:
            service = hook.get_feature_service(store, self.feature_service)
            for projection in service.feature_view_projections:
                refs += [f"{projection.name_to_use()}:{f.name}" for f in projection.features]
        else:
            refs = list(self.features or [])
        by_view: dict[str, list[str]] = {}
        for ref in refs:
            view, _, feature = ref.partition(":")
            if not feature:
                raise FeatureStoreError(f"feature reference {ref!r} is not 'view:feature'; fix the features argument")
            by_view.setdefault(view, []).append(feature)
        return by_view

    def _candidate_entities(self, store: Any, views: list[Any], keys: list[str]) -> Any:
        import pandas as pd

        if self.entity_df_path:
            where = str(self.entity_df_path)
            try:
                frame = storage.read_table(where)
            except FileNotFoundError:
                raise FeatureStoreError(
                    f"entity rows {where} do not exist; point entity_df_path at a Parquet/CSV file (a path or a URI) "
                    "of the upstream step, or leave it unset to sample the offline sources",
                    cause="entity rows missing", evidence_uri=where, next_step="fix entity_df_path",
                ) from None
        elif self.dataset_version not in (None, ""):
            version = as_dict(self.dataset_version, "dataset_version")
            frame = read_version(version, self.dvc_conn_id, columns=keys)
            where = f"{version['path']}@{version['rev'][:12]}"
        else:
            from feast.infra.offline_stores.offline_utils import get_offline_store_from_config

            as_of = parse_instant(self.as_of, "as_of") if self.as_of else datetime.now(UTC)
            offline = get_offline_store_from_config(store.config.offline_store)
            parts = []
            for view in views:
                source = view.batch_source
                job = offline.pull_latest_from_table_or_query(
                    config=store.config,
                    data_source=source,
                    join_key_columns=keys,
                    feature_name_columns=[],
                    timestamp_field=source.timestamp_field,
                    created_timestamp_column=source.created_timestamp_column or None,
                    start_date=as_of - self.lookback,
                    end_date=as_of,
                )
                parts.append(job.to_df()[keys])
            frame = pd.concat(parts, ignore_index=True)
            where = f"the offline sources of {[v.name for v in views]} in the {self.lookback} before {as_of}"
        missing = [k for k in keys if k not in frame.columns]
        if missing:
            raise FeatureStoreError(
                f"entity rows from {where} lack the join keys {missing}; they have {list(frame.columns)}. Pass "
                "entity rows that carry the feature views' join keys"
            )
        frame = frame[keys].dropna().drop_duplicates()
        if frame.empty:
            raise FeatureStoreError(
                f"no entities to sample from {where}: nothing to compare. Check the window "
                "(as_of, lookback) or pass entity_df_path"
            )
        frame = frame.sort_values(keys, kind="stable").reset_index(drop=True)
        return frame.sample(n=min(self.sample_size, len(frame)), random_state=self.seed).reset_index(drop=True)

    # -- comparison --------------------------------------------------------------------------
    def _same(self, online: Any, offline: Any) -> bool:
        import math

        online_null = online is None or (isinstance(online, float) and math.isnan(online))
        offline_null = offline is None or (isinstance(offline, float) and math.isnan(offline))
        if online_null or offline_null:
            return online_null and offline_null
        if isinstance(online, float | int) and isinstance(offline, float | int):
            return math.isclose(float(online), float(offline), rel_tol=1e-9, abs_tol=self.tolerance)
        return online == offline

    def execute(self, context: Context) -> dict[str, Any]:
        hook = FeastHook(feast_conn_id=self.feast_conn_id, repo_path=self.repo_path)
        with hook.feature_repo():  # per task: the data repository cloned for this task, its file sources pulled
            return self._check(hook, context)

    def _check(self, hook: FeastHook, context: Context) -> dict[str, Any]:
        import json

        import pandas as pd
        from feast.protos.feast.serving.ServingService_pb2 import FieldStatus

        from mlops_airflow.links.mlflow import EvidenceLink
        from mlops_airflow.operators._common import run_uri

        store = hook.get_store()
        by_view = self._refs_by_view(hook, store)
        views = [store.get_feature_view(name) for name in by_view]
        keys = sorted({c.name for v in views for c in v.entity_columns})
        sample = self._candidate_entities(store, views, keys)
        rows = sample.to_dict("records")
        mismatch: dict[str, int] = {}
        missing: dict[str, int] = {}
        compared: dict[str, int] = {}
        examples: dict[str, list[dict[str, Any]]] = {}
        for view_name, features in by_view.items():
            refs = [f"{view_name}:{f}" for f in features]
            response = store.get_online_features(features=refs, entity_rows=rows, full_feature_names=True)
            names = list(response.proto.metadata.feature_names.val)
            values = response.to_dict()
            times: list[Any] = [None] * len(rows)
            present = [True] * len(rows)
            for name, vector in zip(names, response.proto.results, strict=False):
                if name not in {f"{view_name}__{f}" for f in features}:
                    continue
                for i, (status, ts) in enumerate(zip(vector.statuses, vector.event_timestamps, strict=False)):
                    if status != FieldStatus.PRESENT:
                        present[i] = False
                    elif times[i] is None and (ts.seconds or ts.nanos):
                        times[i] = ts.ToDatetime(tzinfo=UTC)
            index = [i for i in range(len(rows)) if present[i] and times[i] is not None]
            for feature in features:
                col = f"{view_name}__{feature}"
                missing[col] = len(rows) - len(index)
                compared[col], mismatch[col], examples[col] = len(index), 0, []
            if not index:
                continue
            entity_df = pd.DataFrame([rows[i] for i in index])
            entity_df["event_timestamp"] = pd.to_datetime([times[i] for i in index], utc=True)
            entity_df["_row"] = index
            offline = store.get_historical_features(entity_df=entity_df, features=refs, full_feature_names=True).to_df()
            offline = offline.set_index("_row")
            for feature in features:
                col = f"{view_name}__{feature}"
                for i in index:
                    got, want = values[col][i], offline.at[i, col] if i in offline.index else None
                    want = want.item() if hasattr(want, "item") else want
                    if not self._same(got, want):
                        mismatch[col] += 1
                        if len(examples[col]) < 5:
                            examples[col].append(
                                {
                                    **{k: _plain(rows[i][k]) for k in keys},
                                    "online": _plain(got),
                                    "offline": _plain(want),
                                    "event_timestamp": times[i].isoformat(),
                                }
                            )
        mismatch_rate = {c: round(mismatch[c] / compared[c], 6) if compared[c] else 0.0 for c in mismatch}
        missing_rate = {c: round(missing[c] / len(rows), 6) for c in missing}
        reasons = [
            f"{c}: {mismatch[c]} of {compared[c]} online values differ from the offline point-in-time value "
            f"({mismatch_rate[c]:.2%} > {self.max_mismatch_rate:.2%}), e.g. {examples[c][:2]}"
            for c in sorted(mismatch)
            if mismatch_rate[c] > self.max_mismatch_rate
        ] + [
            f"{c}: {missing[c]} of {len(rows)} sampled entities have no online value ({missing_rate[c]:.2%} > "
            f"{self.max_missing_rate:.2%}): not materialised, or expired"
            for c in sorted(missing)
            if missing_rate[c] > self.max_missing_rate
        ]
        metrics = {
            "sampled": len(rows),
            "compared": compared,
            "mismatch_rate": mismatch_rate,
            "missing_online_rate": missing_rate,
            "max_mismatch_rate": max(mismatch_rate.values(), default=0.0),
        }
        evidence = storage.join(run_uri(self.report_dir, context), "feature_skew.json")
        verdict = {
            "passed": not reasons,
            "reasons": reasons,
            "metrics": metrics,
            "evidence_uri": evidence,
            "project": store.project,
            "feature_service": self.feature_service,
        }
        evidence_doc = {**verdict, "examples": examples, "entity_keys": keys}
        storage.write_atomic(evidence, json.dumps(evidence_doc, indent=2, default=str))
        ti = context.get("ti") if hasattr(context, "get") else None
        if ti is not None and hasattr(ti, "xcom_push"):
            EvidenceLink.persist(context, evidence)
        for reason in reasons:
            self.log.error("reason: %s", reason)
        log_summary(
            self.log, "feature-skew", passed=str(verdict["passed"]).lower(), project=store.project,
            service=self.feature_service, sampled=len(rows),
            max_mismatch_rate=f"{metrics['max_mismatch_rate']:.4f}", evidence=evidence,
        )
        if reasons and self.fail_on_skew:
            raise FeatureStoreError(
                f"training-serving skew in project {store.project}: {'; '.join(reasons[:6])}. Evidence: {evidence}. "
                "Next step: re-materialise the affected window (clear the materialise task) and compare the "
                "feature definitions serving uses with the ones training used"
            )
        return verdict


def _plain(value: Any) -> Any:
    """A JSON-friendly scalar (numpy scalars and timestamps included)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, datetime):
        return value.isoformat()
    return value
