"""From the counts of a :class:`~mlops_airflow.validation._contract_scan.Scan` to one verdict per contract check.

Every check of :data:`~mlops_airflow.validation.spec.CHECKS` gets a verdict, in that order: ``pass``, ``fail``,
``warn`` or ``skipped`` (with the reason). stdlib only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlops_airflow.task_types import REGRESSION

if TYPE_CHECKING:
    from mlops_airflow.validation._contract_scan import Scan
    from mlops_airflow.validation.spec import ContractSpec


def _verdict(
    check: str,
    status: str,
    detail: str,
    *,
    columns: list[str] | None = None,
    count: int = 0,
    total: int = 0,
    examples: list[str] | None = None,
    next_step: str = "",
) -> dict[str, Any]:
    return {
        "check": check,
        "status": status,
        "columns": list(columns or []),
        "count": count,
        "total": total,
        "examples": list(examples or []),
        "detail": detail,
        "next_step": next_step,
    }


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.2f}%" if whole else "n/a"


def _names(columns: list[str], limit: int = 12) -> str:
    shown = ", ".join(columns[:limit])
    return shown + (f", ... ({len(columns)} in all)" if len(columns) > limit else "")


class _Judge:
    def __init__(self, spec: ContractSpec, scan: Scan) -> None:
        self.spec, self.scan, self.k = spec, scan, scan.k
        self.rows = scan.rows
        self.seen = list(scan.columns)

    def nulls(self, column: str) -> int:
        col = self.scan.columns[column]
        return (self.rows - col.present_rows) + col.nulls

    def entity(self) -> list[dict[str, Any]]:
        keys = list(self.spec.entity_columns)
        if not keys:
            why = "no entity_columns given"
            return [_verdict("entity_keys_present", "skipped", why), _verdict("entity_keys_not_null", "skipped", why)]
        missing = [c for c in keys if c not in self.scan.columns]
        present = [c for c in keys if c in self.scan.columns]
        out = [
            _verdict(
                "entity_keys_present",
                "fail" if missing else "pass",
                f"{len(missing)} of {len(keys)} entity column(s) missing; the batch has {_names(self.seen)}"
                if missing
                else f"{len(keys)} entity column(s) present",
                columns=missing or keys,
                count=len(missing),
                total=len(keys),
                examples=missing[: self.k],
                next_step="write the entity column(s) in the export, or fix entity_columns (or key_columns)",
            )
        ]
        if not present:
            out.append(_verdict("entity_keys_not_null", "skipped", "no entity column in the batch (see above)"))
            return out
        bad = {c: self.nulls(c) for c in present if self.nulls(c)}
        examples = [f"{c} row {r}" for c in bad for r in self.scan.columns[c].null_rows][: self.k]
        detail = "; ".join(f"{c}: {n} of {self.rows} rows null ({_pct(n, self.rows)})" for c, n in bad.items())
        out.append(
            _verdict(
                "entity_keys_not_null",
                "fail" if bad else "pass",
                detail or f"no null in {_names(present)}",
                columns=list(bad) or present,
                count=sum(bad.values()),
                total=self.rows,
                examples=examples,
                next_step="every row needs its entity key: repair or drop the rows with a null key upstream, then "
                "re-land the batch",
            )
        )
        return out

    def timestamp(self) -> list[dict[str, Any]]:
        spec, ts = self.spec, self.spec.timestamp_column
        names = ("timestamp_present", "timestamp_not_future", "timestamp_in_interval")
        if not ts:
            return [_verdict(n, "skipped", "no timestamp_column given") for n in names]
        if ts not in self.scan.columns:
            if not spec.timestamp_required:
                why = f"column {ts} not in the batch and not required (no entity_columns or interval given)"
                return [_verdict(n, "skipped", why, columns=[ts]) for n in names]
            why = f"column {ts} missing (see timestamp_present)"
            return [
                _verdict(
                    "timestamp_present",
                    "fail",
                    f"column {ts} missing; the batch has {_names(self.seen)}",
                    columns=[ts],
                    count=self.rows,
                    total=self.rows,
                    next_step=f"write the event time as {ts} (timezone-aware, UTC), or set timestamp_column",
                ),
                *(_verdict(n, "skipped", why, columns=[ts]) for n in names[1:]),
            ]
        col = self.scan.columns[ts]
        wrong = [t for t in col.types if not (t.startswith("timestamp[") and "tz=" in t)]
        nulls = self.nulls(ts)
        problems = [f"column {ts} is {', '.join(wrong)}, not a timezone-aware timestamp"] if wrong else []
        if nulls:
            problems.append(f"{nulls} of {self.rows} rows null ({_pct(nulls, self.rows)})")
        out = [
            _verdict(
                "timestamp_present",
                "fail" if problems else "pass",
                "; ".join(problems) or f"{ts} is a timezone-aware timestamp in every row",
                columns=[ts],
                count=nulls if not wrong else self.rows,
                total=self.rows,
                examples=[f"row {r}" for r in col.null_rows][: self.k],
                next_step=f"write {ts} for every row as a timezone-aware timestamp (UTC), then re-land the batch",
            )
        ]
        if wrong:
            return out + [
                _verdict(n, "skipped", f"{ts} is not a timezone-aware timestamp", columns=[ts]) for n in names[1:]
            ]
        time, limit = self.scan.time, self.scan.now + spec.clock_skew
        out.append(
            _verdict(
                "timestamp_not_future",
                "fail" if time.future else "pass",
                f"{time.future} of {self.rows} timestamps after now + clock_skew ({limit.isoformat()}); "
                f"latest {time.maximum}"
                if time.future
                else f"latest {time.maximum} <= {limit.isoformat()}",
                columns=[ts],
                count=time.future,
                total=self.rows,
                examples=time.future_examples,
                next_step="fix the producer's clock or timezone (a local time written as UTC?); events from the "
                "future must not be trained on. If its clock is known to run ahead, raise clock_skew",
            )
        )
        if spec.interval_start is None and spec.interval_end is None:
            out.append(
                _verdict("timestamp_in_interval", "skipped", "no interval_start/interval_end given", columns=[ts])
            )
            return out
        start = spec.interval_start.isoformat() if spec.interval_start else "-inf"
        end = (spec.interval_end + spec.allowed_lateness).isoformat() if spec.interval_end else "+inf"
        outside = time.early + time.late
        bounds = f"[{start}, {end}] (interval_end + allowed_lateness {spec.allowed_lateness})"
        out.append(
            _verdict(
                "timestamp_in_interval",
                "fail" if outside else "pass",
                f"{outside} of {self.rows} timestamps outside {bounds}: {time.early} before, {time.late} after; "
                f"the batch spans {time.minimum} .. {time.maximum}"
                if outside
                else f"every timestamp inside {bounds}",
                columns=[ts],
                count=outside,
                total=self.rows,
                examples=time.outside_examples,
                next_step="land only the rows of the batch's interval (a re-export of another day? a timezone "
                "shift?), or pass the right interval_start/interval_end; raise allowed_lateness if late events "
                "are expected",
            )
        )
        return out

    def features(self) -> list[dict[str, Any]]:
        spec = self.spec
        roles = {*spec.entity_columns, spec.timestamp_column, spec.label_column}
        features = (
            list(spec.feature_columns) if spec.feature_columns is not None else [c for c in self.seen if c not in roles]
        )
        if not features:
            why = "no feature column (feature_columns empty, or every column is a key, timestamp or label)"
            return [_verdict("features_not_null", "skipped", why), _verdict("features_finite", "skipped", why)]
        bad: dict[str, str] = {}
        for column in features:
            if column not in self.scan.columns:
                bad[column] = "missing"
                continue
            n = self.nulls(column)
            if self.rows and (n == self.rows or n / self.rows > spec.max_null_share):
                bad[column] = f"{n}/{self.rows} null ({_pct(n, self.rows)})"
        limit = "entirely null" if spec.max_null_share >= 1.0 else f"over max_null_share={spec.max_null_share:g} null"
        out = [
            _verdict(
                "features_not_null",
                "fail" if bad else "pass",
                f"{len(bad)} of {len(features)} feature column(s) missing or {limit}"
                if bad
                else f"{len(features)} feature column(s), none {limit}",
                columns=list(bad) or features,
                count=len(bad),
                total=len(features),
                examples=[f"{c}: {why}" for c, why in bad.items()][: self.k],
                next_step="fix the upstream join or export that left the column(s) empty, or drop them from "
                "feature_columns; to accept sparse features raise max_null_share",
            )
        ]
        floats = [
            c
            for c in features
            if c in self.scan.columns and any(t in ("float", "double", "halffloat") for t in self.scan.columns[c].types)
        ]
        infinite = {c: self.scan.columns[c] for c in floats if self.scan.columns[c].infs}
        out.append(
            _verdict(
                "features_finite",
                "fail" if infinite else "pass",
                f"{len(infinite)} of {len(floats)} floating-point feature column(s) hold +/-inf: "
                + "; ".join(f"{c} in {s.infs} of {self.rows} rows" for c, s in infinite.items())
                if infinite
                else f"no +/-inf in {len(floats)} floating-point feature column(s)",
                columns=list(infinite) or floats,
                count=sum(s.infs for s in infinite.values()),
                total=self.rows,
                examples=[f"{c} {e}" for c, s in infinite.items() for e in s.inf_examples][: self.k],
                next_step="replace +/-inf upstream (a division by zero?) with a finite value or null, then re-land "
                "the batch",
            )
        )
        return out

    def label(self) -> list[dict[str, Any]]:
        spec, label = self.spec, self.spec.label_column
        names = ("label_present", "label_in_domain", "label_not_constant")
        if not label:
            return [_verdict(n, "skipped", "no label_column given") for n in names]
        if label not in self.scan.columns:
            why = f"column {label} missing (see label_present)"
            return [
                _verdict(
                    "label_present",
                    "fail",
                    f"column {label} missing; the batch has {_names(self.seen)}",
                    columns=[label],
                    count=1,
                    total=1,
                    next_step=f"write the label column {label} in the export, or set label_column",
                ),
                *(_verdict(n, "skipped", why, columns=[label]) for n in names[1:]),
            ]
        scan, types = self.scan.label, ", ".join(self.scan.columns[label].types)
        missing_rows = self.rows - self.scan.columns[label].present_rows
        bad = scan.bad + missing_rows
        values = ", ".join(repr(v) for v in scan.distinct[:10]) + (", ..." if len(scan.distinct) > 10 else "")
        seen = values
        if spec.task_type == REGRESSION:
            seen = f"finite values from {scan.minimum:g} to {scan.maximum:g}" if scan.minimum is not None else ""
            domain = "a finite number (regression)"
            step = (
                "fill or drop the rows whose label is null, NaN or +/-inf upstream (regression needs a finite "
                "number in every row); for a yes/no label set task_type='binary_classification'"
            )
        else:
            domain = "0 or 1 (binary_classification: exactly the classes 0 and 1, or bool)"
            step = (
                "encode the label as 0/1 (or bool) in every row, with no null; if it is a number to predict, set "
                "task_type='regression'"
            )
        distinct = len(scan.distinct)
        constant = not scan.many_distinct and distinct < 2
        return [
            _verdict("label_present", "pass", f"column {label} present ({types})", columns=[label], count=0, total=1),
            _verdict(
                "label_in_domain",
                "fail" if bad else "pass",
                f"{bad} of {self.rows} label values ({_pct(bad, self.rows)}) not {domain}; column type {types}"
                + (f"; {'' if spec.task_type == REGRESSION else 'values seen: '}{seen}" if seen else "")
                if bad
                else f"every label value is {domain}",
                columns=[label],
                count=bad,
                total=self.rows,
                examples=scan.bad_examples,
                next_step=step,
            ),
            _verdict(
                "label_not_constant",
                "fail" if constant else "pass",
                (
                    "the label is the same in every row: nothing to learn"
                    + ("" if spec.task_type == REGRESSION else ", and AUC is undefined downstream")
                    if distinct == 1
                    else "the label has no value at all"
                )
                if constant
                else f"{'more than ' + str(distinct - 1) if scan.many_distinct else distinct} distinct label values",
                columns=[label],
                count=distinct,
                total=self.rows,
                examples=[values] if values else [],
                next_step="check the label's join or filter upstream (a batch of one class, a default-filled label?) "
                "and re-land the batch",
            ),
        ]

    def extra(self) -> dict[str, Any]:
        spec, policy = self.spec, self.spec.extra_policy
        if policy == "ignore":
            why = (
                "extra_columns='ignore'"
                if spec.extra_columns
                else "no expected column list (no feature_columns, and the suite names no column): pass "
                "feature_columns or name the columns in the suite to judge unexpected columns"
            )
            return _verdict("extra_columns", "skipped", why)
        expected = {
            *spec.entity_columns,
            spec.timestamp_column,
            spec.label_column,
            *(spec.feature_columns or ()),
            *spec.suite_columns,
        }
        extras = [c for c in self.seen if c not in expected]
        return _verdict(
            "extra_columns",
            policy if extras else "pass",
            f"{len(extras)} column(s) not expected (not an entity, timestamp, label, feature or suite column): "
            f"{_names(extras)}"
            if extras
            else f"no unexpected column among {len(self.seen)}",
            columns=extras,
            count=len(extras),
            total=len(self.seen),
            examples=extras[: self.k],
            next_step="drop the column(s) from the export, or add them to the suite or feature_columns if they "
            "belong; extra_columns='warn' reports them without failing",
        )


def judge(spec: ContractSpec, scan: Scan) -> list[dict[str, Any]]:
    """One verdict per check, in :data:`~mlops_airflow.validation.spec.CHECKS` order."""
    j = _Judge(spec, scan)
    return [*j.entity(), *j.timestamp(), *j.features(), *j.label(), j.extra()]
