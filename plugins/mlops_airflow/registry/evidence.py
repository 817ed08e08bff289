"""What an approver reads before a promotion, and when the evidence cannot decide (no Airflow import).

:func:`degenerate_holdout` names the ways a passing verdict can still be meaningless: the holdout cannot tell
the two models apart (no discordant pairs), the metrics are too good to be true (leakage), or the data the
verdict was measured on drifted away from what the model will serve. The auto policy never approves such a
verdict; a person sees the warnings first. :func:`approval_markdown` renders the evidence as the Markdown body
of the HITL request (and the auto policy's log), with browser links for every piece of evidence.
"""

from __future__ import annotations

from typing import Any

NEAR_PERFECT = {"auc": 0.995, "roc_auc": 0.995, "accuracy": 0.995, "r2": 0.999}
MAX_DRIFT_SHARE = 0.75  # share of drifted columns above which the evaluation data is not the serving data


def _fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def degenerate_holdout(
    verdict: dict[str, Any], drift: dict[str, Any] | None = None, *, max_drift_share: float = MAX_DRIFT_SHARE
) -> list[str]:
    """Why this verdict cannot decide a promotion, one reason per problem (empty: it can).

    - no discordant pairs: McNemar's test saw no row where exactly one model is wrong, so the holdout cannot
      tell challenger and champion apart (its p-value is 1 whatever the models);
    - near-perfect metrics on the holdout (AUC or accuracy >= 0.995, R² >= 0.999): usually leakage (the label, or
      rows the model trained on, in the holdout), rarely a real model;
    - the evaluation data drifted: the drift verdict passed along with the evaluation found more than
      ``max_drift_share`` of the columns drifted, so the comparison was made on data unlike the serving data.
    """
    reasons: list[str] = []
    metrics = verdict.get("metrics") or {}
    test = metrics.get("mcnemar") or {}
    pairs = [test.get(k) for k in ("b_champion_only_correct", "c_challenger_only_correct")] if isinstance(
        test, dict) else []
    discordant = sum(pairs) if len(pairs) == 2 and all(isinstance(n, int) for n in pairs) else None
    if verdict.get("champion_version") and discordant == 0:
        reasons.append(
            f"no discordant pairs: challenger and champion are right and wrong on exactly the same "
            f"{metrics.get('holdout_rows', '?')} holdout rows (McNemar p = {_fmt(test.get('p_value'))}); the "
            "holdout cannot tell them apart - use a larger or harder holdout"
        )
    for side in ("challenger", "champion"):
        for name, limit in NEAR_PERFECT.items():
            value = (metrics.get(side) or {}).get(name)
            if isinstance(value, int | float) and value >= limit:
                reasons.append(
                    f"near-perfect {side} {name} = {_fmt(value)} on the holdout (>= {limit}): check it for leakage "
                    "(the label or training rows in the features or the holdout) before trusting the comparison"
                )
                break
    share = (drift or {}).get("drift_share")
    if isinstance(share, int | float) and share > max_drift_share:
        drifted = (drift or {}).get("drifted_columns")
        reasons.append(
            f"the evaluation data drifted: {_fmt(share, 2)} of the columns drifted (> {max_drift_share}) - the "
            f"models were compared on data unlike what they will serve (drifted: {drifted})"
        )
    return reasons


def approval_markdown(
    *,
    model_name: str,
    version: str,
    alias: str,
    verdict: dict[str, Any],
    dataset_version: dict[str, Any] | None,
    drift: dict[str, Any] | None,
    links: dict[str, str],
    training_set: dict[str, Any] | None = None,
    serving_drift: dict[str, Any] | None = None,
    warnings: list[str] | None = None,
) -> tuple[str, str]:
    """Subject and Markdown body shown to the approver (and logged by the auto policy)."""
    metrics = verdict.get("metrics") or {}
    champ = verdict.get("champion_version")
    subject = f"Promote {model_name} v{version} to '{alias}'" + (
        f" (replacing v{champ})" if champ else " (first champion)"
    )
    lines = [f"### {subject}", ""]
    if warnings:
        lines += ["**WARNING: this evidence cannot decide the promotion** (the auto policy refuses it):"]
        lines += [f"- {w}" for w in warnings]
        lines.append("")
    lines += [f"**Evaluation verdict:** {'PASSED' if verdict.get('passed') else 'FAILED'}"
              + (f" ({verdict['task_type']})" if verdict.get("task_type") else "")]
    lines += [f"- {r}" for r in verdict.get("reasons") or []]
    names = sorted(set(metrics.get("challenger") or {}) | set(metrics.get("champion") or {}))
    if names:
        lines += [
            "",
            f"| holdout metric | challenger v{version} | champion {('v' + str(champ)) if champ else '-'} |",
            "|---|---|---|",
        ]
        for name in names:
            lines.append(
                f"| {name} | {_fmt((metrics.get('challenger') or {}).get(name, '-'))} | "
                f"{_fmt((metrics.get('champion') or {}).get(name, '-'))} |"
            )
    if metrics.get("holdout_rows") is not None:
        lines += ["", f"**Holdout:** {metrics['holdout_rows']} labelled rows neither model trained on"]
    if metrics.get("delta") is not None:
        ci = metrics.get("ci") or [None, None]
        test = (f"McNemar p = {_fmt(metrics.get('mcnemar_p'))}" if metrics.get("mcnemar_p") is not None else
                f"paired t-test on absolute errors p = {_fmt((metrics.get('paired_t') or {}).get('p_value'))}"
                if metrics.get("paired_t") else "no paired test")
        lines += [
            "",
            f"**{metrics.get('primary_metric', 'metric')} improvement:** {_fmt(metrics['delta'])} "
            f"(95% paired-bootstrap CI [{_fmt(ci[0])}, {_fmt(ci[1])}], n_boot={metrics.get('n_boot')}); {test}",
        ]
    if training_set:
        window = training_set.get("entity_window") or {}
        span = (f"{window.get('start') or 'all history'} to {window.get('end')}" if window else "all history")
        lines += [
            "",
            f"**Training set:** {training_set.get('rows')} rows, window {span}, hash "
            f"`{str(training_set.get('hash'))[:16]}`",
        ]
    if dataset_version:
        lines += [
            "",
            f"**Data version:** `{dataset_version.get('path')}` rev `{str(dataset_version.get('rev'))[:12]}` "
            f"md5 `{dataset_version.get('md5')}`",
        ]
    if drift:
        lines += ["", _drift_line("Drift of the new batch against the challenger's training set", drift)
                  + f", columns {drift.get('drifted_columns') or []})"]
    if champ:
        if serving_drift:
            title = f"Champion v{champ} in serving (last monitoring check, {serving_drift.get('at')})"
            lines += ["", _drift_line(title, serving_drift) + ")"]
        else:
            lines += ["", f"**Champion v{champ} in serving:** no monitoring verdict recorded yet"]
    evidence = links.get("evaluation evidence")
    lines += ["", f"**Evidence:** [{verdict.get('evidence_uri')}]({evidence})" if evidence
              else f"**Evidence:** `{verdict.get('evidence_uri')}`"]
    lines += [f"- [{name}]({url})" for name, url in links.items() if url]
    return subject, "\n".join(lines)


def _drift_line(title: str, drift: dict[str, Any]) -> str:
    """``**<title>:** no drift|DRIFT (share 0.12`` (the caller closes the parenthesis)."""
    status = "no drift" if drift.get("passed") else "DRIFT"
    return f"**{title}:** {status} (share {_fmt(drift.get('drift_share'), 2)}"
