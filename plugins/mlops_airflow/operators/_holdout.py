"""The holdout evaluation's helpers: metrics of a scored holdout, the paired statistics' verdict keys, the task a
version predicts, the scores cache location and the verdict tags on a version. Used by
:class:`~mlops_airflow.operators.evaluation.EvaluateChallengerOperator` and the rollback validation (both import
them from :mod:`mlops_airflow.operators.evaluation`, which re-exports them). No operator here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlops_airflow import stats, task_types
from mlops_airflow.exceptions import RegistryError
from mlops_airflow.operators._common import as_dict

if TYPE_CHECKING:
    from mlops_airflow.hooks.mlflow_registry import MlflowHook

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
def scores_dir(output_dir: str | None = None) -> str:
    """Where scored predictions are cached: ``output_dir`` (a URI or a local path) or ``<data_root>/scores``."""
    from mlops_airflow import storage

    return storage.to_uri(output_dir) if output_dir else storage.join(storage.data_root(), "scores")


def read_scored(path: str, label: str, task_type: str = task_types.BINARY_CLASSIFICATION) -> tuple[Any, Any]:
    """``(labels, scores)`` of a scored holdout (a URI or a local path): 0/1 labels and ``proba`` for a classifier,
    numeric targets and ``prediction`` for a regressor."""
    import numpy as np
    import pandas as pd

    from mlops_airflow import storage

    df = storage.read_table(path)
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


def resolve_task(hook: MlflowHook, model_name: str, version: str, *, task_type: str | None,
                 label_column: str | None) -> tuple[str, str, dict[str, str]]:
    """``(task_type, label, source)`` of a version: the parameters, else its ``mlops.task_type``/``mlops.label``
    tags, else its MLmodel metadata; the task type defaults to binary classification, a missing label is an error.
    """
    from mlops_airflow.registry.tags import LABEL_TAG, TASK_TYPE_TAG, model_task

    source = {"task_type": "parameter", "label": "parameter"}
    if task_type and label_column:
        return task_types.validate_task_type(task_type), str(label_column), source
    info = model_task(hook, model_name, version)
    if not (task_type or info["task_type"]) or not (label_column or info["label"]):
        try:
            info = model_task(hook, model_name, version, hook.settings.tracking_uri)
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


def outcome_of(passed: bool, already_champion: bool = False) -> str:
    """The verdict's ``outcome``: ``promotable`` (approval and promotion run), ``refused`` (thresholds or the
    comparison said no: approval and promotion are skipped, with the reasons), ``already-champion`` (nothing to do)."""
    return "promotable" if passed else ("already-champion" if already_champion else "refused")


def version_of(value: Any) -> str | None:
    """A version from ``"3"``, ``3`` or the register task's XCom ``{version: "3", ...}``."""
    if value in (None, ""):
        return None
    if isinstance(value, str) and value.strip().startswith("{"):
        value = as_dict(value, "version")
    return str(value.get("version") if isinstance(value, dict) else value)


def tag_evaluation(hook: MlflowHook, mv: Any, values: dict[str, str]) -> None:
    """Write ``values`` as ``mlops.evaluation.<key>`` tags of version ``mv``; stale ones go (idempotent)."""
    current = {k: v for k, v in dict(mv.tags or {}).items() if k.startswith(EVALUATION_TAG_PREFIX)}
    wanted = {f"{EVALUATION_TAG_PREFIX}{k}": str(v) for k, v in values.items()}
    for key in sorted(set(current) - set(wanted)):
        hook.delete_model_version_tag(mv.name, mv.version, key)
    for key, value in wanted.items():
        if current.get(key) != value:
            hook.set_model_version_tag(mv.name, mv.version, key, value)
