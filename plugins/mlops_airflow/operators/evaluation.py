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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_airflow import stats, task_types
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
LOWER_IS_BETTER = stats.spellings(stats.LOWER_IS_BETTER)  # logloss, log_loss, rmse, mae, mse
EPS = stats.LOG_LOSS_EPS
PRIMARY_METRICS = task_types.HOLDOUT_METRICS[task_types.BINARY_CLASSIFICATION]  # auc, accuracy, logloss
ALL_PRIMARY_METRICS = tuple(m for names in task_types.HOLDOUT_METRICS.values() for m in names)
roc_auc = stats.roc_auc
improvement = stats.improvement
EVALUATION_TAG_PREFIX = "mlops.evaluation."  # the verdict on the challenger version


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


def task_metrics(task_type: str, y: Any, scores: Any) -> dict[str, float]:
    """The holdout metrics of ``scores`` (probabilities of a classifier, values of a regressor)."""
    if task_types.is_classification(task_type):
        return binary_metrics(y, scores)
    return task_types.holdout_metrics(task_type, y, scores)


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


def paired_t(y: Any, pred_challenger: Any, pred_champion: Any) -> dict[str, Any]:
    """Paired t-test on the absolute errors of two regressors on the same rows (``scipy.stats.ttest_rel``).

    ``statistic`` > 0 = the champion errs more (the challenger is better), like ``delta``; p-value to 6 digits.
    """
    test = stats.paired_t(task_types.absolute_errors(y, pred_champion), task_types.absolute_errors(y, pred_challenger))
    return {"statistic": round(test["statistic"], 6), "p_value": float(f"{test['p_value']:.6g}"),
            "champion_mean_abs_error": round(test["mean_a"], 6),
            "challenger_mean_abs_error": round(test["mean_b"], 6), "rows": test["n"]}


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


def read_scored(path: str, label: str, task_type: str = task_types.BINARY_CLASSIFICATION) -> tuple[Any, Any]:
    """``(labels, scores)`` of a scored holdout: 0/1 labels and ``proba`` for a classifier, numeric targets and
    ``prediction`` for a regressor."""
    import numpy as np
    import pandas as pd

    df = pd.read_parquet(path)
    if label not in df.columns:
        raise RegistryError(f"the holdout has no label column {label!r} (columns {list(df.columns)}); evaluation "
                            "needs labelled data: pass label_column or a labelled holdout_path")
    if df[label].isna().any():
        raise RegistryError(f"the holdout's label column {label!r} has {int(df[label].isna().sum())} nulls; "
                            "drop unlabelled rows before evaluating")
    classifier = task_types.is_classification(task_type)
    column = "proba" if classifier else "prediction"
    if column not in df.columns:
        raise RegistryError(f"the scored holdout {path} has no {column!r} column (columns {list(df.columns)}): the "
                            f"scorer did not score it as a {task_type} model; check the model's task_type (its "
                            "mlops.task_type tag or MLmodel metadata) or pass task_type=")
    if classifier:
        values = set(pd.unique(df[label]).tolist())
        if not values <= {0, 1}:
            raise RegistryError(f"the holdout's label column {label!r} holds {sorted(values, key=str)[:10]}, not 0/1: "
                                "a binary classifier needs 0/1 labels; for a regressor pass task_type='regression'")
        return df[label].to_numpy(dtype=np.int64), df["proba"].to_numpy(dtype=np.float64)
    try:
        y = df[label].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise RegistryError(f"the holdout's label column {label!r} is not numeric ({df[label].dtype}): a regressor "
                            "needs numeric targets; check label_column") from err
    return y, df["prediction"].to_numpy(dtype=np.float64)


def resolve_task(hook: MlflowHook, client: Any, model_name: str, version: str, *, task_type: str | None,
                 label_column: str | None) -> tuple[str, str, dict[str, str]]:
    """``(task_type, label, source)`` of a version: the parameters, else its ``mlops.task_type``/``mlops.label``
    tags, else its MLmodel metadata; the task type defaults to binary classification, a missing label is an error.
    """
    from mlops_airflow.registry.tags import LABEL_TAG, TASK_TYPE_TAG, model_task

    source = {"task_type": "parameter", "label": "parameter"}
    if task_type and label_column:
        return task_types.validate_task_type(task_type), str(label_column), source
    info = model_task(client, model_name, version)
    if not (task_type or info["task_type"]) or not (label_column or info["label"]):
        try:
            info = model_task(client, model_name, version, hook.settings.tracking_uri)
        except Exception as err:  # noqa: BLE001 - the label error below names what is missing
            info["error"] = f"{type(err).__name__}: {err}"
    label = label_column or info["label"]
    if not label:
        why = f" ({info['error']})" if "error" in info else ""
        raise RegistryError(
            f"no label column for {model_name} v{version}: label_column is not given and the version has no "
            f"{LABEL_TAG} tag nor a 'label' in its MLmodel metadata{why}; pass label_column= (the holdout's label "
            "column), or register the version with its label"
        )
    task = task_types.validate_task_type(task_type or info["task_type"])
    source = {"task_type": "parameter" if task_type else info["source"].get("task_type", "default"),
              "label": "parameter" if label_column else info["source"].get("label", "tags")}
    if source["task_type"] == "default":
        source["task_type"] = f"default (no {TASK_TYPE_TAG} tag nor metadata)"
    return task, str(label), source


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


def tag_evaluation(client: Any, mv: Any, values: dict[str, str]) -> None:
    """Write ``values`` as ``mlops.evaluation.<key>`` tags of version ``mv``; stale ones go (idempotent)."""
    current = {k: v for k, v in dict(mv.tags or {}).items() if k.startswith(EVALUATION_TAG_PREFIX)}
    wanted = {f"{EVALUATION_TAG_PREFIX}{k}": str(v) for k, v in values.items()}
    for key in sorted(set(current) - set(wanted)):
        client.delete_model_version_tag(mv.name, mv.version, key)
    for key, value in wanted.items():
        if current.get(key) != value:
            client.set_model_version_tag(mv.name, mv.version, key, value)


# ------------------------------------------------------------------------------------ operator
class EvaluateChallengerOperator(BaseOperator):
    """Score challenger and champion on the same holdout and return a verdict (a "blessing").

    :param model_name: registered model (templated).
    :param challenger: challenger version, or the register task's XCom (templated); default: the
        version holding ``challenger_alias``.
    :param holdout_path: labelled Parquet neither model was trained on (templated).
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
    :param output_dir: where scored predictions are cached (default ``[mlops] data_root``/scores).

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

    def _score(self, mv: Any, label: str, task_type: str, override: bool) -> tuple[Any, Any]:
        scored = score_parquet(
            hook=self.hook, model_uri=f"models:/{self.model_name}/{mv.version}", input_path=self.holdout_path,
            output_dir=scores_dir(self.output_dir), cache_key=model_cache_key(mv), log=self.log, python=self.python,
            **({"task_type": task_type} if override else {}),
        )
        return read_scored(scored["output"], label, task_type)

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
        task_type, label, task_source = resolve_task(self.hook, client, self.model_name, challenger,
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
                champion_mv = check_version_usable(self.hook, client, self.model_name, champion)
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

        holdout: dict[str, Any] = {"path": self.holdout_path, "sha256": file_sha256(self.holdout_path),
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
        evidence_uri = self.hook.log_json_artifact(client, mv.run_id, evidence,
                                                   f"evaluation/{safe_part(name)}.json")
        run = client.get_run(mv.run_id)
        run_url = self.hook.run_url(run.info.experiment_id, mv.run_id)
        if champion == challenger:  # no comparison made: the version keeps the verdict that made it champion
            self.log.info("v%s already holds %r: its mlops.evaluation.* tags are left as they are", challenger,
                          self.champion_alias)
        else:
            tag_evaluation(client, mv, {"passed": str(passed).lower(), "primary_metric": primary,
                                        "champion_version": champion or "none", "evidence_uri": evidence_uri,
                                        **{k: str(v) for k, v in chal_metrics.items()}})
        EvidenceLink.persist(context, f"{run_url}/artifacts/evaluation")
        MlflowRunLink.persist(context, run_url)
        MlflowModelVersionLink.persist(context, self.hook.model_version_url(self.model_name, challenger))
        verdict = {"passed": passed, "reasons": reasons, "metrics": metrics, "evidence_uri": evidence_uri,
                   "model_name": self.model_name, "version": challenger, "challenger_version": challenger,
                   "champion_version": champion, "run_url": run_url, "task_type": task_type,
                   "primary_metric": primary}
        test_shown = (f"mcnemar_p={metrics.get('mcnemar_p')}" if classifier
                      else f"paired_t_p={(metrics.get('paired_t') or {}).get('p_value')}")
        self.log.info(
            "SUMMARY evaluate model=%s task_type=%s challenger=v%s champion=%s passed=%s %s=%s delta=%s ci=%s %s "
            "reasons=%s evidence=%s", self.model_name, task_type, challenger, f"v{champion}" if champion else "none",
            passed, primary, chal_metrics.get(primary), metrics.get("delta"), metrics.get("ci"), test_shown,
            reasons, evidence_uri,
        )
        return verdict
