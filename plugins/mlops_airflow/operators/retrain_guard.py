"""``RetrainGuardOperator``: the first task of a retraining DAG scheduled on ``mlops://monitoring/<model>``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_airflow._summary import log_summary
from mlops_airflow.exceptions import MonitoringError

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mlops_airflow.hooks.mlflow_registry import MlflowHook


def _cooldown(value: Any) -> timedelta:
    """A cool-down from a ``timedelta`` or a number of hours (int, float or its text)."""
    if isinstance(value, timedelta):
        return value
    return timedelta(hours=float(value))


def _read_uri(value: Any) -> Any:
    """A verdict named by a URI (``s3://.../verdict.json``, ``file://...``) read through storage; else ``value``."""
    text = value.strip() if isinstance(value, str) else ""
    if "://" not in text or text.startswith(("{", "[")):
        return value
    from mlops_airflow import storage

    return storage.read_json(text)


class RetrainGuardOperator(BaseOperator):
    """First task of a retraining DAG scheduled on ``mlops://monitoring/<model>``: retrain only when it is safe.

    Blocks (skips itself and, by the default trigger rule, everything downstream) when
    - the latest data gate failed: ``data_gate`` is its verdict (an XCom dict, its JSON, or a path or URI -
      ``file://``, ``s3://`` - of the JSON the gate wrote); ``require_data_gate`` also blocks when there is none;
    - the model was retrained less than ``cooldown`` ago: the registered model's tag ``mlops.last_retrain_at``
      (ISO time) when set, else the newest model version's creation time in the MLflow registry. Runs without a
      triggering asset event (manual) skip the cool-down unless ``cooldown_applies_to_manual``.

    Otherwise returns (XCom) ``{"proceed": True, "reason", "triggered_by", "asset_extra", "events",
    "last_retrain_at", "cooldown_s", "data_gate", ...}``, the trigger read from Airflow 3's
    ``context["triggering_asset_events"]``: the training task tags the new model with ``reason``/``triggered_by``
    (reproducibility record). When blocked, the same dict (``proceed: False``, ``blocked_by: [...]``) is pushed as
    XCom key ``decision`` before the skip; with ``on_block="return"`` it is returned instead (for a
    ``ShortCircuitOperator``-style check of ``proceed`` downstream).

    :param model_name: registered model to retrain (templated).
    :param cooldown: least time between two retrainings.
    :param data_gate: the latest data gate's verdict (templated), e.g.
        ``"{{ ti.xcom_pull(dag_id='ingest', task_ids='validate_batch', include_prior_dates=True) }}"``.
    :param require_data_gate: block when no data-gate verdict is found.
    :param cooldown_applies_to_manual: apply the cool-down to manual runs too.
    :param on_block: ``skip`` (raise ``AirflowSkipException``) or ``return`` the decision.
    :param as_of: the time the decision is made at (templated; ISO text or datetime); empty = the wall clock. A
        simulated timeline (``make demo``) passes the simulated day so the cool-down counts simulated time.
    :param mlflow_conn_id: MLflow connection (type ``mlflow``).
    :param tracking_uri: explicit MLflow tracking URI; wins over the connection.

    ``cooldown`` is templated too: a ``timedelta``, or a number of hours (e.g. ``"{{ params.cooldown_hours }}"``).
    """

    template_fields: Sequence[str] = ("model_name", "data_gate", "cooldown", "as_of")
    ui_color = "#c3e6cb"

    def __init__(
        self,
        *,
        model_name: str,
        cooldown: timedelta | float | str = timedelta(hours=24),
        data_gate: Any = None,
        require_data_gate: bool = False,
        cooldown_applies_to_manual: bool = False,
        on_block: str = "skip",
        as_of: datetime | str | None = None,
        mlflow_conn_id: str = "mlflow_default",
        tracking_uri: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if on_block not in ("skip", "return"):
            raise ValueError(f"on_block must be 'skip' or 'return', got {on_block!r}")
        if not (isinstance(cooldown, str) and "{{" in cooldown):
            try:
                parsed = _cooldown(cooldown)
            except (TypeError, ValueError):
                raise ValueError(f"cooldown must be a timedelta or a number of hours, got {cooldown!r}") from None
            if parsed < timedelta(0):
                raise ValueError(f"cooldown must not be negative, got {cooldown}")
        self.model_name = model_name
        self.cooldown = cooldown
        self.as_of = as_of
        self.data_gate = data_gate
        self.require_data_gate = require_data_gate
        self.cooldown_applies_to_manual = cooldown_applies_to_manual
        self.on_block = on_block
        self.mlflow_conn_id = mlflow_conn_id
        self.tracking_uri = tracking_uri

    @cached_property
    def hook(self) -> MlflowHook:
        from mlops_airflow.hooks.mlflow_registry import MlflowHook

        return MlflowHook(self.mlflow_conn_id, tracking_uri=self.tracking_uri)

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from mlops_airflow.monitoring.retrain import decide_retrain, load_gate_verdict, parse_time, trigger_from_events

        get = context.get if hasattr(context, "get") else (lambda _k, _d=None: _d)
        trigger = trigger_from_events(get("triggering_asset_events"))
        try:
            gate = load_gate_verdict(_read_uri(self.data_gate))
        except (ValueError, SyntaxError, FileNotFoundError) as err:
            raise MonitoringError(
                f"cannot read the data-gate verdict {str(self.data_gate)[:200]!r}: {err}; pass the gate task's "
                "XCom (a dict) or the path of its verdict JSON"
            ) from err
        try:
            cooldown = _cooldown(self.cooldown)
            now = parse_time(self.as_of) or datetime.now(UTC)
        except (TypeError, ValueError) as err:
            raise MonitoringError(
                f"cannot read cooldown={self.cooldown!r} / as_of={self.as_of!r}: {err}; pass a timedelta or a number "
                "of hours as cooldown, and an ISO time (or nothing) as as_of"
            ) from err
        last, source = self.last_retrain(str(self.model_name))
        decision = decide_retrain(
            model_name=str(self.model_name),
            trigger=trigger,
            gate=gate,
            last_retrain_at=last,
            now=now,
            cooldown=cooldown,
            require_gate=self.require_data_gate,
            cooldown_applies_to_manual=self.cooldown_applies_to_manual,
            last_retrain_source=source,
        )
        for reason in decision["blocked_by"]:
            self.log.info("blocked: %s", reason)
        summary = log_summary(
            self.log, "retrain-guard", model=self.model_name, proceed=decision["proceed"],
            triggered_by=repr(decision["triggered_by"]), reason=repr(decision["reason"]),
            last_retrain_at=decision["last_retrain_at"], cooldown=cooldown, as_of=now.isoformat(),
        )
        if decision["proceed"] or self.on_block == "return":
            return decision
        ti = get("ti")
        if ti is not None and hasattr(ti, "xcom_push"):
            ti.xcom_push(key="decision", value=decision)
        raise AirflowSkipException(f"{summary}; blocked by: {' | '.join(decision['blocked_by'])}")

    def last_retrain(self, model_name: str) -> tuple[datetime | None, str]:
        """(time, where it came from) of the model's last retraining in the MLflow registry; (None, why) if never."""
        from mlops_airflow.monitoring.retrain import LAST_RETRAIN_TAG, parse_time

        try:
            self.hook.ensure_reachable()
            model = self.hook.find_registered_model(model_name)
            if model is None:
                return None, "no registered model yet"
            tag = (model.tags or {}).get(LAST_RETRAIN_TAG)
            if tag:
                try:
                    return parse_time(tag), f"tag {LAST_RETRAIN_TAG}"
                except ValueError:
                    self.log.warning("tag %s=%r is not an ISO time; using the newest version", LAST_RETRAIN_TAG, tag)
            if "'" in model_name:
                return None, "model name not searchable"
            versions = self.hook.model_versions(model_name, max_results=1000)
        except MonitoringError:
            raise
        except Exception as err:
            raise MonitoringError(
                f"cannot read the last retraining of {model_name!r} from the MLflow registry: {err}; check the MLflow "
                "connection (the guard never retrains blind)"
            ) from err
        if not versions:
            return None, "no model version yet"
        newest = max(versions, key=lambda v: int(v.creation_timestamp or 0))
        return parse_time(int(newest.creation_timestamp)), f"version {newest.version} creation time"
