"""Batch scoring of a data window with the champion, plus canary, shadow and challenger comparison.

The **served** prediction of a row comes from the ``champion``, except for a deterministic share of
entities (hash of the entity key) served by the ``canary`` when that alias exists. The ``shadow``
and ``challenger`` aliases score every row *without* affecting the served output. Everything goes
into one inference log (Parquet, content-addressed path): features, served prediction, proba,
confidence, serving model version, timestamp, and one ``<alias>_prediction/_proba`` pair per
shadow model. Labels are never part of the log: they arrive later (``QualityCheckOperator``).

The statistics (McNemar's and Fisher's exact tests) live in ``mlops_airflow.stats``.

Models load in the training environment (``score.py`` through ``_scoring.score_parquet``); torch is
never imported into the Airflow worker.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_airflow._io import write_atomic
from mlops_airflow.exceptions import MonitoringError
from mlops_airflow.hooks.mlflow_registry import MlflowHook
from mlops_airflow.links.mlflow import MlflowModelVersionLink
from mlops_airflow.operators._common import run_identity
from mlops_airflow.stats import fisher_exact, mcnemar  # mcnemar: importable from here as before

if TYPE_CHECKING:
    from airflow.sdk import Context

SERVED_COLUMNS = ("prediction", "proba", "confidence")


def alias_versions(client: Any, model_name: str, aliases: Sequence[str]) -> dict[str, str]:
    """``{alias: version}`` for the aliases that exist on ``model_name``."""
    from mlflow.exceptions import MlflowException

    found: dict[str, str] = {}
    for alias in aliases:
        try:
            found[alias] = str(client.get_model_version_by_alias(model_name, alias).version)
        except MlflowException:
            continue
    return found


def canary_mask(keys: Any, share: float, salt: str) -> Any:
    """Deterministic canary assignment: an entity is always routed the same way for a given salt."""
    import numpy as np

    if share <= 0:
        return np.zeros(len(keys), dtype=bool)
    buckets = np.array(
        [int(hashlib.sha256(f"{salt}:{k}".encode()).hexdigest()[:8], 16) % 10_000 for k in keys], dtype=np.int64
    )
    return buckets < int(round(share * 10_000))


class BatchScoringOperator(BaseOperator):
    """Score a window with ``champion`` (+ ``canary`` share, + ``shadow``/``challenger`` on all rows).

    Returns ``{uri, rows, served_by, versions, shadow_aliases, mean_confidence, low_confidence_share}``.

    :param model_name: registered model (templated).
    :param input_path: the window to score, Parquet (templated). Label columns are dropped.
    :param output_dir: inference-log folder (templated); the log is ``<model>/<sha16>.parquet``.
    :param canary_share: share of entities served by the ``canary`` alias when it exists (0..1).
    :param shadow_aliases: aliases scored on every row without serving (default shadow, challenger).
    :param label_columns: columns never passed to the models nor kept in the log.
    """

    template_fields: Sequence[str] = ("model_name", "input_path", "output_dir")
    operator_extra_links = (MlflowModelVersionLink(),)
    ui_color = "#6f42c1"

    def __init__(
        self,
        *,
        model_name: str,
        input_path: str,
        output_dir: str,
        canary_share: float = 0.0,
        shadow_aliases: Sequence[str] = ("shadow", "challenger"),
        entity_column: str = "customer_id",
        timestamp_column: str = "event_timestamp",
        label_columns: Sequence[str] = ("churned",),
        low_confidence: float = 0.6,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 0 <= canary_share <= 1:
            raise ValueError(f"canary_share must be within [0, 1], got {canary_share}")
        self.model_name = model_name
        self.input_path = input_path
        self.output_dir = output_dir
        self.canary_share = canary_share
        self.shadow_aliases = list(shadow_aliases)
        self.entity_column = entity_column
        self.timestamp_column = timestamp_column
        self.label_columns = list(label_columns)
        self.low_confidence = low_confidence
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def hook(self) -> MlflowHook:
        return MlflowHook(mlflow_conn_id=self.mlflow_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        import pandas as pd

        from mlops_airflow.operators._scoring import file_sha256, score_parquet

        source = Path(self.input_path)
        if not source.is_file():
            raise MonitoringError(f"window {source} not found: nothing to score; check the landing task")
        window = pd.read_parquet(source)
        if window.empty:
            raise MonitoringError(
                f"window {source} has no rows: nothing to score (an empty window is not a pass); check that the "
                "landing step wrote this interval's batch, then re-run"
            )
        client = self.hook.get_client()
        versions = alias_versions(client, self.model_name, ["champion", "canary", *self.shadow_aliases])
        if "champion" not in versions:
            raise MonitoringError(
                f"{self.model_name} has no champion alias: nothing can serve. Run the CT DAG to register and "
                "promote a first model"
            )
        work = Path(self.output_dir) / self.model_name
        inputs = window.drop(columns=[c for c in self.label_columns if c in window.columns])
        input_file = work / "inputs" / f"{file_sha256(source)[:16]}.parquet"
        if not input_file.exists():
            input_file.parent.mkdir(parents=True, exist_ok=True)
            inputs.to_parquet(input_file, index=False)

        scored: dict[str, Any] = {}
        for alias, version in versions.items():
            result = score_parquet(
                hook=self.hook, model_uri=f"models:/{self.model_name}/{version}", input_path=str(input_file),
                output_dir=work / "scores", cache_key=f"{self.model_name}-v{version}", log=self.log,
            )
            scored[alias] = pd.read_parquet(result["output"] if "output" in result else result["output_path"])

        log = inputs.copy()
        champion = scored["champion"]
        canary = canary_mask(log[self.entity_column].to_numpy(), self.canary_share if "canary" in versions else 0.0,
                             salt=self.model_name)
        for col in SERVED_COLUMNS:
            log[col] = champion[col].to_numpy()
            if canary.any():
                log.loc[canary, col] = scored["canary"][col].to_numpy()[canary]
        log["served_by"] = ["canary" if c else "champion" for c in canary]
        log["model_version"] = [versions["canary"] if c else versions["champion"] for c in canary]
        shadows = [a for a in self.shadow_aliases if a in versions and versions[a] != versions["champion"]]
        for alias in shadows:
            log[f"{alias}_prediction"] = scored[alias]["prediction"].to_numpy()
            log[f"{alias}_proba"] = scored[alias]["proba"].to_numpy()
        digest = hashlib.sha256(pd.util.hash_pandas_object(log, index=False).values.tobytes()).hexdigest()
        out = work / f"{digest[:16]}.parquet"
        if not out.exists():
            write_atomic(out, lambda tmp: log.to_parquet(tmp, index=False))
        ident = run_identity(context)
        summary = {
            "uri": str(out),
            "rows": len(log),
            "model_name": self.model_name,
            "versions": versions,
            "served_by": {"champion": int((~canary).sum()), "canary": int(canary.sum())},
            "shadow_aliases": shadows,
            "mean_confidence": round(float(log["confidence"].mean()), 6),
            "low_confidence_share": round(float((log["confidence"] < self.low_confidence).mean()), 6),
            "positive_rate": round(float(log["prediction"].mean()), 6),
            "dag_run": f"{ident['dag_id']}/{ident['run_id']}",
        }
        (work / f"{digest[:16]}.json").write_text(json.dumps(summary, indent=2))
        MlflowModelVersionLink.persist(context, self.hook.model_version_url(self.model_name, versions["champion"]))
        self.log.info(
            "SUMMARY batch-scoring model=%s champion=v%s canary=%s shadows=%s rows=%d mean_confidence=%.3f log=%s",
            self.model_name, versions["champion"], versions.get("canary"), shadows, len(log),
            summary["mean_confidence"], out,
        )
        return summary


def canary_test(correct_canary: int, n_canary: int, correct_champion: int, n_champion: int) -> dict[str, Any]:
    """Fisher's exact test (two-sided) of the canary's accuracy against the champion's on *different* rows.

    The canary and the champion serve disjoint entities, so the paired McNemar test does not apply; the 2x2 table
    is (correct, wrong) x (canary, champion). See :func:`mlops_airflow.stats.fisher_exact`.
    """
    return fisher_exact(correct_canary, n_canary, correct_champion, n_champion)


class ShadowCanaryAnalysisOperator(BaseOperator):
    """Compare the served model with each shadow/challenger (and the canary with the champion).

    Without labels: disagreement rate. With labels (``labels_path``, joined on entity + timestamp):
    accuracy of each shadow and the served model on the same rows with McNemar's exact test on the
    paired errors, and the canary's accuracy against the champion's on their own (disjoint) rows with
    Fisher's exact test. The verdict's ``recommendation`` feeds the registry's steps:
    ``rollback`` (the canary is significantly worse: take its alias away, ``rollback_alias``),
    ``promote`` (a shadow/challenger, else the canary, is significantly better: ``promote_alias`` names it),
    or ``hold`` when the evidence is not significant.

    Returns ``{passed, reasons, metrics, recommendation, promote_alias, rollback_alias, evidence_uri}``.
    """

    template_fields: Sequence[str] = ("inference_log", "labels_path", "evidence_dir")

    def __init__(
        self,
        *,
        inference_log: str,
        evidence_dir: str,
        labels_path: str | None = None,
        label_column: str = "churned",
        keys: Sequence[str] = ("customer_id", "event_timestamp"),
        alpha: float = 0.05,
        max_disagreement: float = 0.2,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.inference_log = inference_log
        self.labels_path = labels_path
        self.evidence_dir = evidence_dir
        self.label_column = label_column
        self.keys = list(keys)
        self.alpha = alpha
        self.max_disagreement = max_disagreement

    def execute(self, context: Context) -> dict[str, Any]:
        import pandas as pd

        from mlops_airflow.operators._common import run_dir

        log = pd.read_parquet(self.inference_log)
        shadows = sorted(c.removesuffix("_prediction") for c in log.columns if c.endswith("_prediction")
                         and c != "prediction")
        metrics: dict[str, Any] = {"rows": len(log), "comparisons": {}}
        reasons: list[str] = []
        recommendation = "hold"
        promote_alias: str | None = None  # the significantly better shadow with the fewest errors
        best_error = 1.0
        labelled = None
        if self.labels_path:
            labels = pd.read_parquet(self.labels_path, columns=[*self.keys, self.label_column])
            labelled = log.merge(labels, on=self.keys, how="inner")
            if labelled.empty:
                raise MonitoringError(
                    f"0 of {len(labels)} labels joined the inference log on {self.keys}: check the keys and "
                    "timestamps of the label feed"
                )
            metrics["labelled_rows"] = len(labelled)
        pairs = [(s, f"{s}_prediction", "prediction") for s in shadows]
        if "served_by" in log.columns and (log["served_by"] == "canary").any():
            pairs.append(("canary", None, None))
        for name, col, base in pairs:
            if name == "canary":
                if labelled is None:
                    continue
                canary = labelled[labelled["served_by"] == "canary"]
                champ = labelled[labelled["served_by"] == "champion"]
                if canary.empty or champ.empty:
                    metrics["comparisons"]["canary"] = {"rows": len(canary), "champion_rows": len(champ),
                                                        "verdict": "no labelled rows on one side: nothing to test"}
                    continue
                ok_c = int((canary["prediction"] == canary[self.label_column]).sum())
                ok_h = int((champ["prediction"] == champ[self.label_column]).sum())
                test = canary_test(ok_c, len(canary), ok_h, len(champ))
                acc_c, acc_h = ok_c / len(canary), ok_h / len(champ)
                entry = {"canary_accuracy": round(acc_c, 6), "champion_accuracy": round(acc_h, 6),
                         "rows": len(canary), "champion_rows": len(champ), "fisher": test}
                if test["p_value"] < self.alpha and acc_c < acc_h:
                    reasons.append(f"canary accuracy {acc_c:.3f} is significantly below the champion's {acc_h:.3f} "
                                   f"on {len(canary)} vs {len(champ)} labelled rows (Fisher exact p="
                                   f"{test['p_value']:.3g} < {self.alpha})")
                    entry["verdict"] = f"canary significantly worse (Fisher p={test['p_value']:.3g}): roll it back"
                    recommendation = "rollback"
                elif test["p_value"] < self.alpha:
                    entry["verdict"] = f"canary significantly better (Fisher p={test['p_value']:.3g}): promote it"
                    if recommendation != "rollback" and promote_alias is None:
                        recommendation, promote_alias = "promote", "canary"
                else:
                    entry["verdict"] = f"no significant difference (Fisher p={test['p_value']:.3g})"
                metrics["comparisons"]["canary"] = entry
                continue
            disagreement = float((log[col] != log[base]).mean())
            entry: dict[str, Any] = {"disagreement": round(disagreement, 6)}
            if disagreement > self.max_disagreement:
                reasons.append(f"{name} disagrees with the served model on {disagreement:.1%} of rows "
                               f"(> {self.max_disagreement:.0%})")
            if labelled is not None:
                y = labelled[self.label_column].to_numpy()
                err_served = labelled[base].to_numpy() != y
                err_shadow = labelled[col].to_numpy() != y
                test = mcnemar(err_served, err_shadow)
                entry.update({"served_accuracy": round(1 - float(err_served.mean()), 6),
                              "shadow_accuracy": round(1 - float(err_shadow.mean()), 6), "mcnemar": test})
                if test["p_value"] < self.alpha and err_shadow.mean() < err_served.mean():
                    if recommendation != "rollback" and (
                        promote_alias is None or err_shadow.mean() < best_error
                    ):
                        recommendation, promote_alias, best_error = "promote", name, float(err_shadow.mean())
                    entry["verdict"] = f"{name} significantly better (McNemar p={test['p_value']:.3g})"
                elif test["p_value"] < self.alpha:
                    entry["verdict"] = f"{name} significantly worse (McNemar p={test['p_value']:.3g})"
                else:
                    entry["verdict"] = f"no significant difference (McNemar p={test['p_value']:.3g})"
            metrics["comparisons"][name] = entry
        out = run_dir(self.evidence_dir, context) / "shadow_canary.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        if recommendation == "rollback":
            promote_alias = None  # a worse canary is rolled back first; promotions wait for the next window
        verdict = {"passed": not reasons, "reasons": reasons, "metrics": metrics, "recommendation": recommendation,
                   "promote_alias": promote_alias, "rollback_alias": "canary" if recommendation == "rollback" else None,
                   "evidence_uri": out.as_uri()}
        out.write_text(json.dumps(verdict, indent=2, default=str))
        self.log.info("SUMMARY shadow-canary passed=%s recommendation=%s comparisons=%s evidence=%s",
                      verdict["passed"], recommendation, json.dumps(metrics["comparisons"], default=str), out)
        return verdict
