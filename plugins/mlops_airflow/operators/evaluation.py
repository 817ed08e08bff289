"""Challenger vs champion on the same fresh holdout: metrics, paired bootstrap CI, McNemar, verdict.

Both models score the same labelled Parquet through ``score.py`` in the training environment
(``_scoring.score_parquet``). The verdict (a TFX-style blessing) is
``{passed, reasons, metrics, evidence_uri}`` plus the versions compared; the full evidence JSON is
logged on the challenger's MLflow run.

Pass rule:

- the challenger meets every absolute threshold (``min_metrics``: higher is better, e.g. ``auc``,
  ``accuracy``; ``max_metrics``: lower is better, e.g. ``logloss``). None configured = never passes;
- with a champion: the improvement on ``primary_metric`` (challenger minus champion; champion minus
  challenger for ``logloss``) is at least ``min_improvement`` (None configured = never passes) and,
  with ``require_significance`` (default), the lower bound of its paired-bootstrap confidence interval
  is above 0. McNemar's exact test on the two models' classification errors is reported as evidence;
- without a champion: the absolute thresholds alone decide.

The statistics (ROC AUC, bootstrap, McNemar, thresholds) are in ``mlops_airflow.stats``; the names below stay.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_airflow import stats
from mlops_airflow.config import mlops_conf
from mlops_airflow.exceptions import RegistryError
from mlops_airflow.hooks.mlflow_registry import MlflowHook
from mlops_airflow.links.mlflow import EvidenceLink, MlflowModelVersionLink, MlflowRunLink
from mlops_airflow.operators._common import as_dict, run_identity, safe_part
from mlops_airflow.operators._scoring import file_sha256, score_parquet
from mlops_airflow.registry.versions import check_version_usable, now_iso
from mlops_airflow.registry.versions import registered_model as _registered_model

if TYPE_CHECKING:
    from airflow.sdk import Context

# The statistics live in mlops_airflow.stats; these names stay importable from here.
LOWER_IS_BETTER = stats.spellings(stats.LOWER_IS_BETTER)  # logloss, log_loss
EPS = stats.LOG_LOSS_EPS
PRIMARY_METRICS = ("auc", "accuracy", "logloss")
roc_auc = stats.roc_auc
improvement = stats.improvement


# ----------------------------------------------------------------------------------- statistics
def binary_metrics(y: Any, proba: Any, threshold: float = 0.5) -> dict[str, float]:
    """AUC, accuracy and log loss of probabilities ``proba`` for labels ``y`` (0/1), under their verdict keys."""
    import numpy as np

    p = np.clip(np.asarray(proba, dtype=np.float64), EPS, 1 - EPS)
    return {
        "auc": round(stats.roc_auc(y, p), 6),
        "accuracy": round(stats.accuracy(y, p, threshold), 6),
        "logloss": round(stats.log_loss(y, p, EPS), 6),
    }


def paired_bootstrap(y: Any, p_challenger: Any, p_champion: Any, *, metric: str = "auc", n_boot: int = 1000,
                     seed: int = 0, alpha: float = 0.05) -> dict[str, Any]:
    """Paired bootstrap of the challenger's improvement over the champion (``stats.paired_bootstrap``)."""
    return stats.paired_bootstrap(y, p_challenger, p_champion, metric=metric, n_boot=n_boot, seed=seed, alpha=alpha)


def mcnemar(y: Any, pred_challenger: Any, pred_champion: Any) -> dict[str, Any]:
    """McNemar's exact test on the two models' classification errors (:func:`mlops_airflow.stats.mcnemar`).

    ``b`` = rows the champion gets right and the challenger wrong, ``c`` = the reverse; p-value to 6 digits.
    """
    import numpy as np

    y = np.asarray(y, dtype=np.int64)
    test = stats.mcnemar(np.asarray(pred_challenger) != y, np.asarray(pred_champion) != y)
    return {"b_champion_only_correct": test["only_a_wrong"], "c_challenger_only_correct": test["only_b_wrong"],
            "p_value": float(f"{test['p_value']:.6g}")}


def check_absolute(metrics: dict[str, float], min_metrics: dict[str, Any] | None,
                   max_metrics: dict[str, Any] | None = None) -> tuple[bool, list[str]]:
    """Absolute thresholds (:func:`mlops_airflow.stats.check_thresholds`). None/empty never pass (safe default)."""
    return stats.check_thresholds(metrics, min_metrics, max_metrics)


# ------------------------------------------------------------------------------------- helpers
def scores_dir(output_dir: str | None) -> Path:
    if output_dir:
        return Path(output_dir)
    root = mlops_conf("data_root") or "/tmp/mlops-data"
    return Path(root) / "scores"


def read_scored(path: str, label: str) -> tuple[Any, Any]:
    import numpy as np
    import pandas as pd

    df = pd.read_parquet(path)
    if label not in df.columns:
        raise RegistryError(f"the holdout has no label column {label!r} (columns {list(df.columns)}); evaluation "
                            "needs labelled data: pass label_column or a labelled holdout_path")
    if df[label].isna().any():
        raise RegistryError(f"the holdout's label column {label!r} has {int(df[label].isna().sum())} nulls; "
                            "drop unlabelled rows before evaluating")
    return df[label].to_numpy(dtype=np.int64), df["proba"].to_numpy(dtype=np.float64)


def model_cache_key(mv: Any) -> str:
    """The immutable model behind a version (its logged model, else its source): the scoring cache key."""
    return str(getattr(mv, "model_id", None) or mv.source or f"{mv.name}-v{mv.version}")


def version_of(value: Any) -> str | None:
    """A version from ``"3"``, ``3`` or the register task's XCom ``{version: "3", ...}``."""
    if value in (None, ""):
        return None
    if isinstance(value, str) and value.strip().startswith("{"):
        value = as_dict(value, "version")
    return str(value.get("version") if isinstance(value, dict) else value)


# ------------------------------------------------------------------------------------ operator
class EvaluateChallengerOperator(BaseOperator):
    """Score challenger and champion on the same holdout and return a verdict (a "blessing").

    :param model_name: registered model (templated).
    :param challenger: challenger version, or the register task's XCom (templated); default: the
        version holding ``challenger_alias``.
    :param holdout_path: labelled Parquet neither model was trained on (templated).
    :param min_metrics: absolute minimums for the challenger, e.g. ``{"auc": 0.7}`` (templated).
    :param max_metrics: absolute maximums (lower is better), e.g. ``{"logloss": 0.6}`` (templated).
    :param min_improvement: minimum improvement of ``primary_metric`` over the champion (templated).
    :param primary_metric: ``auc`` (default), ``accuracy`` or ``logloss``.
    :param n_boot: bootstrap resamples (fixed ``seed``); ``alpha``: 1 - confidence level.
    :param require_significance: the CI's lower bound must be above 0 (default True).
    :param output_dir: where scored predictions are cached (default ``[mlops] data_root``/scores).
    """

    template_fields: Sequence[str] = ("model_name", "challenger", "holdout_path", "min_metrics", "max_metrics",
                                      "min_improvement", "output_dir")
    operator_extra_links = (EvidenceLink(), MlflowModelVersionLink(), MlflowRunLink())
    ui_color = "#9b59b6"

    def __init__(
        self,
        *,
        model_name: str,
        holdout_path: str,
        challenger: Any = None,
        min_metrics: dict[str, Any] | None = None,
        max_metrics: dict[str, Any] | None = None,
        min_improvement: float | str | None = None,
        primary_metric: str = "auc",
        n_boot: int = 1000,
        seed: int = 0,
        alpha: float = 0.05,
        require_significance: bool = True,
        label_column: str = "churned",
        champion_alias: str = "champion",
        challenger_alias: str = "challenger",
        output_dir: str | None = None,
        python: str | None = None,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if primary_metric not in PRIMARY_METRICS:
            raise ValueError(f"primary_metric={primary_metric!r} is not one of: {', '.join(PRIMARY_METRICS)}")
        self.model_name, self.holdout_path, self.challenger = model_name, holdout_path, challenger
        self.min_metrics, self.max_metrics, self.min_improvement = min_metrics, max_metrics, min_improvement
        self.primary_metric, self.n_boot, self.seed, self.alpha = primary_metric, int(n_boot), int(seed), alpha
        self.require_significance, self.label_column = require_significance, label_column
        self.champion_alias, self.challenger_alias = champion_alias, challenger_alias
        self.output_dir, self.python, self.mlflow_conn_id = output_dir, python, mlflow_conn_id

    @cached_property
    def hook(self) -> MlflowHook:
        return MlflowHook(mlflow_conn_id=self.mlflow_conn_id)

    def _score(self, mv: Any) -> tuple[Any, Any]:
        scored = score_parquet(
            hook=self.hook, model_uri=f"models:/{self.model_name}/{mv.version}", input_path=self.holdout_path,
            output_dir=scores_dir(self.output_dir), cache_key=model_cache_key(mv), log=self.log, python=self.python,
        )
        return read_scored(scored["output"], self.label_column)

    def execute(self, context: Context) -> dict[str, Any]:
        import numpy as np

        self.hook.ensure_reachable()
        client = self.hook.get_client()
        rm = _registered_model(client, self.model_name)
        challenger = version_of(self.challenger) or (
            str(rm.aliases[self.challenger_alias]) if self.challenger_alias in rm.aliases else None)
        if not challenger:
            raise RegistryError(f"no challenger to evaluate for {self.model_name}: pass challenger= (a version or the "
                                f"register task's XCom) or set the {self.challenger_alias!r} alias")
        champion = rm.aliases.get(self.champion_alias)
        champion = str(champion) if champion is not None else None
        mv = check_version_usable(self.hook, client, self.model_name, challenger)

        champion_mv = None
        if champion is not None and champion != challenger:
            try:
                champion_mv = check_version_usable(self.hook, client, self.model_name, champion)
            except RegistryError as err:
                raise RegistryError(
                    f"champion {self.model_name} v{champion} (alias {self.champion_alias!r}) could not be scored on "
                    f"the holdout: {err}. The comparison cannot be made; fix or roll back the champion first"
                ) from None
        # Both models are scored side by side (two score.py processes): each one mostly waits on imports.
        with ThreadPoolExecutor(max_workers=2) as pool:
            chal_future = pool.submit(self._score, mv)
            champ_future = pool.submit(self._score, champion_mv) if champion_mv is not None else None
            try:
                y, p_chal = chal_future.result()
            except RegistryError as err:
                raise RegistryError(
                    f"challenger {self.model_name} v{challenger} could not be scored on the holdout: {err}. Nothing "
                    "was promoted; check the model artifact and the training environment ([mlops] training_python), "
                    "then clear this task"
                ) from None
            try:
                y_champ, p_champ = champ_future.result() if champ_future else (None, None)
            except RegistryError as err:
                raise RegistryError(
                    f"champion {self.model_name} v{champion} (alias {self.champion_alias!r}) could not be scored on "
                    f"the holdout: {err}. The comparison cannot be made; fix or roll back the champion first"
                ) from None

        reasons: list[str] = []
        chal_metrics = binary_metrics(y, p_chal)
        passed, abs_reasons = check_absolute(chal_metrics, self.min_metrics, self.max_metrics)
        reasons += [f"challenger v{challenger}: {r}" for r in abs_reasons]
        metrics: dict[str, Any] = {"challenger": chal_metrics, "champion": None, "primary_metric": self.primary_metric,
                                   "holdout_rows": int(len(y))}
        comparison: dict[str, Any] = {}
        if champion == challenger:
            passed = False
            reasons.append(f"v{challenger} already holds {self.champion_alias!r}: nothing to compare or promote")
        elif champion is not None:
            if len(y_champ) != len(y) or not np.array_equal(y_champ, y):
                raise RegistryError("the champion's and challenger's scored holdouts differ (row count/labels); "
                                    "score.py must keep input rows and order")
            champ_metrics = binary_metrics(y, p_champ)
            boot = paired_bootstrap(y, p_chal, p_champ, metric=self.primary_metric, n_boot=self.n_boot,
                                    seed=self.seed, alpha=self.alpha)
            test = mcnemar(y, (p_chal >= 0.5).astype(np.int64), (p_champ >= 0.5).astype(np.int64))
            metrics.update({"champion": champ_metrics, "delta": boot["delta"], "ci": boot["ci"],
                            "p_not_better": boot["p_not_better"], "n_boot": self.n_boot,
                            "mcnemar_p": test["p_value"], "mcnemar": test})
            comparison = {"bootstrap": boot, "mcnemar": test}
            if self.min_improvement in (None, ""):
                passed = False
                reasons.append("no min_improvement configured: a challenger never replaces a champion without it")
            else:
                minimum = float(self.min_improvement)
                if boot["delta"] < minimum:
                    passed = False
                    reasons.append(f"{self.primary_metric} improvement {boot['delta']:+.4f} over champion v{champion} "
                                   f"< min_improvement {minimum}")
                lo = boot["ci"][0]
                if self.require_significance and (lo is None or lo <= 0):
                    passed = False
                    reasons.append(f"improvement not significant: {int((1 - self.alpha) * 100)}% paired-bootstrap CI "
                                   f"[{lo}, {boot['ci'][1]}] includes 0 (n_boot={self.n_boot})")
        if passed:
            reasons.append(f"challenger v{challenger} passed: " + (
                f"{self.primary_metric} {metrics['delta']:+.4f} over champion v{champion}, CI {metrics['ci']}"
                if champion else "no champion yet; absolute thresholds met"))

        evidence = {
            "kind": "challenger-vs-champion", "model": self.model_name, "challenger_version": challenger,
            "champion_version": champion, "passed": passed, "reasons": reasons, "metrics": metrics,
            "comparison": comparison,
            "config": {"min_metrics": self.min_metrics, "max_metrics": self.max_metrics,
                       "min_improvement": self.min_improvement, "primary_metric": self.primary_metric,
                       "require_significance": self.require_significance, "alpha": self.alpha,
                       "n_boot": self.n_boot, "seed": self.seed},
            "holdout": {"path": self.holdout_path, "sha256": file_sha256(self.holdout_path), "rows": int(len(y)),
                        "positive_rate": round(float(np.mean(y)), 6)},
            "at": now_iso(), "airflow": run_identity(context),
        }
        name = f"vs-v{champion}" if champion else "no-champion"
        evidence_uri = self.hook.log_json_artifact(client, mv.run_id, evidence,
                                                   f"evaluation/{safe_part(name)}.json")
        run = client.get_run(mv.run_id)
        run_url = self.hook.run_url(run.info.experiment_id, mv.run_id)
        EvidenceLink.persist(context, f"{run_url}/artifacts/evaluation")
        MlflowRunLink.persist(context, run_url)
        MlflowModelVersionLink.persist(context, self.hook.model_version_url(self.model_name, challenger))
        verdict = {"passed": passed, "reasons": reasons, "metrics": metrics, "evidence_uri": evidence_uri,
                   "model_name": self.model_name, "version": challenger, "challenger_version": challenger,
                   "champion_version": champion, "run_url": run_url}
        self.log.info(
            "SUMMARY evaluate model=%s challenger=v%s champion=%s passed=%s %s=%s delta=%s ci=%s mcnemar_p=%s "
            "reasons=%s evidence=%s", self.model_name, challenger, f"v{champion}" if champion else "none", passed,
            self.primary_metric, chal_metrics.get(self.primary_metric), metrics.get("delta"), metrics.get("ci"),
            metrics.get("mcnemar_p"), reasons, evidence_uri,
        )
        return verdict
