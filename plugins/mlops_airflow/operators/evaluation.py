"""Challenger vs champion on the same fresh holdout: metrics, paired bootstrap CI, a paired test, verdict.

Both models score the same labelled Parquet through ``score.py`` in the training environment
(``_scoring.score_parquet``). The verdict (a TFX-style blessing) is
``{passed, reasons, metrics, evidence_uri}`` plus the versions compared, the ``task_type`` and the
``primary_metric``; the full evidence JSON is logged on the challenger's MLflow run.

What is measured depends on the task type (:mod:`mlops_airflow.task_types`; default: the challenger
version's ``mlops.task_type`` tag, else binary classification):

- binary classification: ``auc``, ``accuracy``, ``logloss`` of the scored ``proba``; McNemar's exact test
  on the two models' classification errors (``mcnemar``, ``mcnemar_p``);
- regression: ``rmse``, ``mae``, ``r2`` of the scored ``prediction``; a paired t-test on the two models'
  absolute errors (``paired_t``: ``statistic`` > 0 = the challenger errs less).

Pass rule:

- the challenger meets every absolute threshold (``min_metrics``: higher is better, e.g. ``auc``, ``r2``;
  ``max_metrics``: lower is better, e.g. ``logloss``, ``rmse``). None configured = never passes;
- with a champion: the improvement on ``primary_metric`` (challenger minus champion; champion minus
  challenger for a lower-is-better metric such as ``logloss`` or ``rmse``) is at least ``min_improvement``
  (None configured = never passes) and, with ``require_significance`` (default), the lower bound of its
  paired-bootstrap confidence interval is above 0. The paired test is reported as evidence;
- without a champion: the absolute thresholds alone decide.

The statistics (ROC AUC, errors, bootstrap, McNemar, t-tests, thresholds) are in ``mlops_airflow.stats``.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_airflow import task_types
from mlops_airflow._summary import log_summary
from mlops_airflow.exceptions import RegistryError
from mlops_airflow.hooks.mlflow_registry import MlflowHook
from mlops_airflow.links.mlflow import EvidenceLink, MlflowModelVersionLink, MlflowRunLink
from mlops_airflow.operators._common import run_identity, safe_part
from mlops_airflow.operators._holdout import (  # noqa: F401 - re-exported: importable from here as before
    ALL_PRIMARY_METRICS,
    EPS,
    EVALUATION_TAG_PREFIX,
    LOWER_IS_BETTER,
    PRIMARY_METRICS,
    binary_metrics,
    check_absolute,
    improvement,
    mcnemar,
    model_cache_key,
    outcome_of,
    paired_bootstrap,
    paired_t,
    read_scored,
    resolve_task,
    roc_auc,
    scores_dir,
    tag_evaluation,
    task_metrics,
    version_of,
)
from mlops_airflow.operators._scoring import score_parquet
from mlops_airflow.registry.versions import check_version_usable, now_iso
from mlops_airflow.registry.versions import registered_model as _registered_model

if TYPE_CHECKING:
    from airflow.sdk import Context


# ------------------------------------------------------------------------------------ operator
class EvaluateChallengerOperator(BaseOperator):
    """Score challenger and champion on the same holdout and return a verdict (a "blessing").

    :param model_name: registered model (templated).
    :param challenger: challenger version, or the register task's XCom (templated); default: the
        version holding ``challenger_alias``.
    :param holdout_path: labelled Parquet neither model was trained on, a URI or a local path (templated).
    :param min_metrics: absolute minimums for the challenger, e.g. ``{"auc": 0.7}``, ``{"r2": 0.3}`` (templated).
    :param max_metrics: absolute maximums (lower is better), e.g. ``{"logloss": 0.6}``, ``{"rmse": 70}`` (templated).
    :param min_improvement: minimum improvement of ``primary_metric`` over the champion (templated).
    :param primary_metric: a holdout metric of the task type (``auc``, ``accuracy``, ``logloss``; ``rmse``,
        ``mae``, ``r2``); None = :func:`~mlops_airflow.task_types.default_primary_metric` (``auc`` / ``rmse``).
    :param task_type: ``binary_classification`` or ``regression`` (templated); None = the challenger version's
        ``mlops.task_type`` tag (else its MLmodel metadata, else binary classification).
    :param label_column: the holdout's label column (templated); None = the challenger version's ``mlops.label``
        tag (else its MLmodel metadata ``label``); neither is an error.
    :param n_boot: bootstrap resamples (fixed ``seed``); ``alpha``: 1 - confidence level.
    :param require_significance: the CI's lower bound must be above 0 (default True).
    :param output_dir: where scored predictions are cached, a URI (default ``<[mlops] data_root>/scores``).

    The verdict is also written on the challenger version as tags (what the models page shows; a rerun rewrites
    them and drops stale ones): ``mlops.evaluation.passed`` (``true``/``false``), ``.primary_metric``,
    ``.champion_version`` (``none`` without one), ``.evidence_uri`` and ``mlops.evaluation.<metric>`` for each
    holdout metric of the challenger. Not when the challenger already is the champion (nothing compared).
    """

    template_fields: Sequence[str] = ("model_name", "challenger", "holdout_path", "min_metrics", "max_metrics",
                                      "min_improvement", "output_dir", "model_task_type", "label_column")
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
        primary_metric: str | None = None,
        n_boot: int = 1000,
        seed: int = 0,
        alpha: float = 0.05,
        require_significance: bool = True,
        label_column: str | None = None,
        task_type: str | None = None,
        champion_alias: str = "champion",
        challenger_alias: str = "challenger",
        output_dir: str | None = None,
        python: str | None = None,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if task_type and "{{" not in str(task_type):
            task_type = task_types.validate_task_type(task_type)
            primary_metric = task_types.check_primary_metric(task_type, primary_metric)
        elif primary_metric is not None and primary_metric not in ALL_PRIMARY_METRICS:
            raise ValueError(f"primary_metric={primary_metric!r} is not one of: {', '.join(ALL_PRIMARY_METRICS)}")
        self.model_name, self.holdout_path, self.challenger = model_name, holdout_path, challenger
        self.min_metrics, self.max_metrics, self.min_improvement = min_metrics, max_metrics, min_improvement
        self.primary_metric, self.n_boot, self.seed, self.alpha = primary_metric, int(n_boot), int(seed), alpha
        self.require_significance, self.label_column = require_significance, label_column
        self.model_task_type = task_type  # not self.task_type: BaseOperator.task_type is the operator's class name
        self.champion_alias, self.challenger_alias = champion_alias, challenger_alias
        self.output_dir, self.python, self.mlflow_conn_id = output_dir, python, mlflow_conn_id

    @cached_property
    def hook(self) -> MlflowHook:
        return MlflowHook(mlflow_conn_id=self.mlflow_conn_id)

    def _score(self, mv: Any, label: str, task_type: str, override: bool) -> tuple[Any, Any, str]:
        scored = score_parquet(
            hook=self.hook, model_uri=f"models:/{self.model_name}/{mv.version}", input_path=self.holdout_path,
            output_dir=scores_dir(self.output_dir), cache_key=model_cache_key(mv), log=self.log, python=self.python,
            **({"task_type": task_type} if override else {}),
        )
        return (*read_scored(scored["output"], label, task_type), scored.get("input_sha256") or "")

    def execute(self, context: Context) -> dict[str, Any]:
        import numpy as np

        self.hook.ensure_reachable()
        rm = _registered_model(self.hook, self.model_name)
        challenger = version_of(self.challenger) or (
            str(rm.aliases[self.challenger_alias]) if self.challenger_alias in rm.aliases else None)
        if not challenger:
            raise RegistryError(f"no challenger to evaluate for {self.model_name}: pass challenger= (a version or the "
                                f"register task's XCom) or set the {self.challenger_alias!r} alias")
        champion = rm.aliases.get(self.champion_alias)
        champion = str(champion) if champion is not None else None
        mv = check_version_usable(self.hook, self.model_name, challenger)
        task_type, label, task_source = resolve_task(self.hook, self.model_name, challenger,
                                                     task_type=self.model_task_type, label_column=self.label_column)
        try:
            primary = task_types.check_primary_metric(task_type, self.primary_metric)
        except ValueError as err:
            raise RegistryError(f"{err}; {self.model_name} v{challenger} is a {task_type} model") from None
        classifier = task_types.is_classification(task_type)
        override = not task_source["task_type"].startswith("default")  # else the scorer's default is the same

        champion_mv = None
        if champion is not None and champion != challenger:
            try:
                champion_mv = check_version_usable(self.hook, self.model_name, champion)
            except RegistryError as err:
                raise RegistryError(
                    f"champion {self.model_name} v{champion} (alias {self.champion_alias!r}) could not be scored on "
                    f"the holdout: {err}. The comparison cannot be made; fix or roll back the champion first"
                ) from None
        # Both models are scored side by side (two score.py processes): each one mostly waits on imports.
        with ThreadPoolExecutor(max_workers=2) as pool:
            chal_future = pool.submit(self._score, mv, label, task_type, override)
            champ_future = pool.submit(self._score, champion_mv, label, task_type, override) if champion_mv else None
            try:
                y, p_chal, holdout_sha = chal_future.result()
            except RegistryError as err:
                raise RegistryError(
                    f"challenger {self.model_name} v{challenger} could not be scored on the holdout: {err}. Nothing "
                    "was promoted; check the model artifact and the training environment ([mlops] training_python), "
                    "then clear this task"
                ) from None
            try:
                y_champ, p_champ, _ = champ_future.result() if champ_future else (None, None, None)
            except RegistryError as err:
                raise RegistryError(
                    f"champion {self.model_name} v{champion} (alias {self.champion_alias!r}) could not be scored on "
                    f"the holdout: {err}. The comparison cannot be made; fix or roll back the champion first"
                ) from None

        reasons: list[str] = []
        chal_metrics = task_metrics(task_type, y, p_chal)
        passed, abs_reasons = check_absolute(chal_metrics, self.min_metrics, self.max_metrics)
        reasons += [f"challenger v{challenger}: {r}" for r in abs_reasons]
        metrics: dict[str, Any] = {"challenger": chal_metrics, "champion": None, "primary_metric": primary,
                                   "task_type": task_type, "holdout_rows": int(len(y))}
        comparison: dict[str, Any] = {}
        if champion == challenger:
            passed = False
            reasons.append(f"v{challenger} already holds {self.champion_alias!r}: nothing to compare or promote")
        elif champion is not None:
            if len(y_champ) != len(y) or not np.array_equal(y_champ, y):
                raise RegistryError("the champion's and challenger's scored holdouts differ (row count/labels); "
                                    "score.py must keep input rows and order")
            boot = paired_bootstrap(y, p_chal, p_champ, metric=primary, n_boot=self.n_boot, seed=self.seed,
                                    alpha=self.alpha)
            metrics.update({"champion": task_metrics(task_type, y, p_champ), "delta": boot["delta"],
                            "ci": boot["ci"], "p_not_better": boot["p_not_better"], "n_boot": self.n_boot})
            if classifier:
                test = mcnemar(y, (p_chal >= 0.5).astype(np.int64), (p_champ >= 0.5).astype(np.int64))
                metrics.update({"mcnemar_p": test["p_value"], "mcnemar": test})
                comparison = {"bootstrap": boot, "mcnemar": test}
            else:
                test = paired_t(y, p_chal, p_champ)
                metrics["paired_t"] = test
                comparison = {"bootstrap": boot, "paired_t": test}
            if self.min_improvement in (None, ""):
                passed = False
                reasons.append("no min_improvement configured: a challenger never replaces a champion without it")
            else:
                minimum = float(self.min_improvement)
                if boot["delta"] < minimum:
                    passed = False
                    reasons.append(f"{primary} improvement {boot['delta']:+.4f} over champion v{champion} "
                                   f"< min_improvement {minimum}")
                lo = boot["ci"][0]
                if self.require_significance and (lo is None or lo <= 0):
                    passed = False
                    reasons.append(f"improvement not significant: {int((1 - self.alpha) * 100)}% paired-bootstrap CI "
                                   f"[{lo}, {boot['ci'][1]}] includes 0 (n_boot={self.n_boot})")
        if passed:
            reasons.append(f"challenger v{challenger} passed: " + (
                f"{primary} {metrics['delta']:+.4f} over champion v{champion}, CI {metrics['ci']}"
                if champion else "no champion yet; absolute thresholds met"))

        holdout: dict[str, Any] = {"path": self.holdout_path, "sha256": holdout_sha,
                                   "rows": int(len(y)), "label": label}
        if classifier:
            holdout["positive_rate"] = round(float(np.mean(y)), 6)
        else:
            holdout.update({"target_mean": round(float(np.mean(y)), 6), "target_std": round(float(np.std(y)), 6)})
        evidence = {
            "kind": "challenger-vs-champion", "model": self.model_name, "challenger_version": challenger,
            "champion_version": champion, "passed": passed, "reasons": reasons, "metrics": metrics,
            "comparison": comparison, "task_type": task_type, "primary_metric": primary, "task_source": task_source,
            "config": {"min_metrics": self.min_metrics, "max_metrics": self.max_metrics,
                       "min_improvement": self.min_improvement, "primary_metric": primary, "task_type": task_type,
                       "label_column": label, "require_significance": self.require_significance,
                       "alpha": self.alpha, "n_boot": self.n_boot, "seed": self.seed},
            "holdout": holdout, "at": now_iso(), "airflow": run_identity(context),
        }
        name = f"vs-v{champion}" if champion else "no-champion"
        evidence_uri = self.hook.write_json_artifact(mv.run_id, evidence, f"evaluation/{safe_part(name)}.json")
        run = self.hook.get_run(mv.run_id)
        run_url = self.hook.run_url(run.info.experiment_id, mv.run_id)
        if champion == challenger:  # no comparison made: the version keeps the verdict that made it champion
            self.log.info("v%s already holds %r: its mlops.evaluation.* tags are left as they are", challenger,
                          self.champion_alias)
        else:
            tag_evaluation(self.hook, mv, {"passed": str(passed).lower(), "primary_metric": primary,
                                        "champion_version": champion or "none", "evidence_uri": evidence_uri,
                                        **{k: str(v) for k, v in chal_metrics.items()}})
        EvidenceLink.persist(context, self.hook.artifact_url(evidence_uri, run_url=run_url)
                             or f"{run_url}/artifacts/evaluation")
        MlflowRunLink.persist(context, run_url)
        MlflowModelVersionLink.persist(context, self.hook.model_version_url(self.model_name, challenger))
        verdict = {"passed": passed, "reasons": reasons, "metrics": metrics, "evidence_uri": evidence_uri,
                   "model_name": self.model_name, "version": challenger, "challenger_version": challenger,
                   "champion_version": champion, "run_url": run_url, "task_type": task_type,
                   "primary_metric": primary, "evidence_url": self.hook.artifact_url(evidence_uri, run_url=run_url),
                   "outcome": outcome_of(passed, champion == challenger)}
        test_shown = (f"mcnemar_p={metrics.get('mcnemar_p')}" if classifier
                      else f"paired_t_p={(metrics.get('paired_t') or {}).get('p_value')}")
        test_key, test_p = test_shown.split("=", 1)
        log_summary(self.log, "evaluate", model=self.model_name, task_type=task_type, challenger=f"v{challenger}",
                    champion=f"v{champion}" if champion else "none", passed=passed,
                    **{primary: chal_metrics.get(primary)}, delta=metrics.get("delta"), ci=metrics.get("ci"),
                    **{test_key: test_p}, outcome=verdict["outcome"], reasons=reasons, evidence=evidence_uri)
        return verdict
