"""The comparisons of ``ShadowCanaryAnalysisOperator``, one per task type (no Airflow import).

A shadow is compared with the served model on the *same* rows (classification: McNemar's exact test on the paired
errors; regression: a paired t-test on the absolute errors); the canary with the champion on their *own* rows
(classification: Fisher's exact test of the accuracies; regression: Welch's t-test on the absolute errors). Each
function returns the comparison's evidence entry; a significantly better shadow is returned as a promotion
candidate ``(error, alias)`` and a model problem as a reason.
"""

from __future__ import annotations

from typing import Any

from mlops_airflow.stats import fisher_exact, mcnemar, paired_t, welch_t
from mlops_airflow.task_types import absolute_errors


def error_summary(y: Any, prediction: Any) -> dict[str, float]:
    """MAE and RMSE of ``prediction`` (6 digits)."""
    import numpy as np

    err = absolute_errors(y, prediction)
    return {"mae": round(float(err.mean()), 6), "rmse": round(float(np.sqrt((err**2).mean())), 6)}


def _verdict(name: str, test: str, p: float, alpha: float, better: bool) -> tuple[str, bool]:
    if p < alpha and better:
        return f"{name} significantly better ({test} p={p:.3g})", True
    if p < alpha:
        return f"{name} significantly worse ({test} p={p:.3g})", False
    return f"no significant difference ({test} p={p:.3g})", False


def classification_shadow(log: Any, labelled: Any | None, label: str | None, name: str, *, alpha: float,
                          max_disagreement: float) -> tuple[dict[str, Any], str | None, tuple[float, str] | None]:
    """A shadow classifier against the served one: disagreement rate; with labels, accuracies and McNemar."""
    col = f"{name}_prediction"
    disagreement = float((log[col] != log["prediction"]).mean())
    entry: dict[str, Any] = {"disagreement": round(disagreement, 6)}
    reason = (f"{name} disagrees with the served model on {disagreement:.1%} of rows (> {max_disagreement:.0%})"
              if disagreement > max_disagreement else None)
    candidate = None
    if labelled is not None:
        y = labelled[label].to_numpy()
        err_served, err_shadow = labelled["prediction"].to_numpy() != y, labelled[col].to_numpy() != y
        test = mcnemar(err_served, err_shadow)
        entry.update({"served_accuracy": round(1 - float(err_served.mean()), 6),
                      "shadow_accuracy": round(1 - float(err_shadow.mean()), 6), "mcnemar": test})
        entry["verdict"], better = _verdict(name, "McNemar", test["p_value"], alpha,
                                            err_shadow.mean() < err_served.mean())
        candidate = (float(err_shadow.mean()), name) if better else None
    return entry, reason, candidate


def regression_shadow(log: Any, labelled: Any | None, label: str | None, name: str, *, alpha: float,
                      max_disagreement: float) -> tuple[dict[str, Any], str | None, tuple[float, str] | None]:
    """A shadow regressor against the served one: mean absolute difference of the predictions (relative to the
    mean absolute served prediction = ``disagreement``); with labels, MAE/RMSE and a paired t-test on the absolute
    errors (``statistic`` > 0 = the shadow errs less)."""
    import numpy as np

    col = f"{name}_prediction"
    diff = float(np.abs(log[col].to_numpy(float) - log["prediction"].to_numpy(float)).mean())
    scale = float(np.abs(log["prediction"].to_numpy(float)).mean())
    relative = diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))
    entry: dict[str, Any] = {"disagreement": round(relative, 6), "mean_abs_difference": round(diff, 6)}
    reason = (f"{name} disagrees with the served model: mean absolute difference {diff:.4g} is {relative:.1%} of "
              f"the mean served prediction (> {max_disagreement:.0%})" if relative > max_disagreement else None)
    candidate = None
    if labelled is not None:
        y = labelled[label].to_numpy(float)
        test = paired_t(absolute_errors(y, labelled["prediction"]), absolute_errors(y, labelled[col]))
        served, shadow = error_summary(y, labelled["prediction"]), error_summary(y, labelled[col])
        entry.update({"served_mae": served["mae"], "shadow_mae": shadow["mae"], "served_rmse": served["rmse"],
                      "shadow_rmse": shadow["rmse"], "paired_t": test})
        entry["verdict"], better = _verdict(name, "paired t-test on absolute errors", test["p_value"], alpha,
                                            shadow["mae"] < served["mae"])
        candidate = (shadow["mae"], name) if better else None
    return entry, reason, candidate


def canary_comparison(labelled: Any, label: str, classifier: bool, *, alpha: float) -> tuple[dict[str, Any], str,
                                                                                              str | None]:
    """The canary's rows against the champion's: ``(entry, rollback | promote | hold, reason)``."""
    canary = labelled[labelled["served_by"] == "canary"]
    champ = labelled[labelled["served_by"] == "champion"]
    if canary.empty or champ.empty or (not classifier and (len(canary) < 2 or len(champ) < 2)):
        return {"rows": len(canary), "champion_rows": len(champ),
                "verdict": "no labelled rows on one side: nothing to test"}, "hold", None
    sizes = f"{len(canary)} vs {len(champ)} labelled rows"
    if classifier:
        ok_c = int((canary["prediction"] == canary[label]).sum())
        ok_h = int((champ["prediction"] == champ[label]).sum())
        test = fisher_exact(ok_c, len(canary), ok_h, len(champ))
        ours, theirs = ok_c / len(canary), ok_h / len(champ)
        entry = {"canary_accuracy": round(ours, 6), "champion_accuracy": round(theirs, 6), "rows": len(canary),
                 "champion_rows": len(champ), "fisher": test}
        worse, name = ours < theirs, "Fisher"
        shown = f"canary accuracy {ours:.3f} is significantly below the champion's {theirs:.3f}"
        shown_name = "Fisher exact"
    else:
        test = welch_t(absolute_errors(canary[label], canary["prediction"]),
                       absolute_errors(champ[label], champ["prediction"]))
        mine, theirs_ = error_summary(canary[label], canary["prediction"]), error_summary(champ[label],
                                                                                         champ["prediction"])
        entry = {"canary_mae": mine["mae"], "champion_mae": theirs_["mae"], "canary_rmse": mine["rmse"],
                 "champion_rmse": theirs_["rmse"], "rows": len(canary), "champion_rows": len(champ),
                 "welch_t": test}
        worse, name = mine["mae"] > theirs_["mae"], "Welch t-test on absolute errors"
        shown = f"canary MAE {mine['mae']:.4g} is significantly above the champion's {theirs_['mae']:.4g}"
        shown_name = name
    p = test["p_value"]
    if p < alpha and worse:
        entry["verdict"] = f"canary significantly worse ({name} p={p:.3g}): roll it back"
        return entry, "rollback", f"{shown} on {sizes} ({shown_name} p={p:.3g} < {alpha})"
    if p < alpha:
        entry["verdict"] = f"canary significantly better ({name} p={p:.3g}): promote it"
        return entry, "promote", None
    entry["verdict"] = f"no significant difference ({name} p={p:.3g})"
    return entry, "hold", None
