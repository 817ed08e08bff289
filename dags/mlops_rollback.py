"""Roll the champion back to a previous version: validate it on current labelled data, approve, move the alias.

The on-call button for "the new champion is worse": trigger it from the UI with the labelled day to validate on
(default: the newest labelled window the monitoring DAG kept) and, optionally, the target version (default: the
version that held ``champion`` before the current one, from the promotion ledger).

validate_rollback (the target scored on the labelled window through score.py; it must reach ``min_auc``)
    -> approval gate ([mlops] approval_policy: a person on the Required Actions page, or the logged auto policy)
    -> rollback_champion (promotion lock, atomic alias move, ledger entry with action ``rollback``, Asset event).

A target that fails on current data stops the run with the evidence; nothing moves. Parsing imports no heavy
library and reads no connection or Variable.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param, task
from mlops_airflow import storage
from mlops_airflow.operators.approval import approval_gate
from mlops_airflow.operators.promotion import RollbackModelOperator, ValidateRollbackOperator

DATA_ROOT = storage.data_root()  # a URI: file:///... locally, s3://bucket/prefix when workers share no disk
MODEL_NAME = "churn_classifier"

with DAG(
    dag_id="mlops_rollback",
    description="Validated, approved rollback of the churn classifier's champion to a previous version",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    tags=["mlops", "registry", "rollback", "reference"],
    default_args={"owner": "ml-platform", "retries": 2, "retry_delay": timedelta(seconds=20)},
    params={
        "target_version": Param(None, type=["null", "string"],
                                description="Version to roll back to; empty = the previous champion (ledger)"),
        "labelled_day": Param(None, type=["null", "string"], format="date",
                              description="Labelled window to validate on (YYYY-MM-DD); empty = the newest one"),
        "min_auc": Param(0.70, type="number", minimum=0, maximum=1,
                         description="Absolute AUC the target must reach on that window"),
    },
    doc_md=__doc__,
) as dag:

    @task(retries=2)
    def labelled_window(params: dict) -> dict:
        """The labelled window (features + labels) the target is validated on, kept by mlops_monitoring."""
        from mlops_airflow._summary import summary_line
        from mlops_airflow.exceptions import RegistryError

        folder = storage.join(DATA_ROOT, "monitoring", "labelled")
        if params.get("labelled_day"):
            uri = storage.join(folder, f"{params['labelled_day']}.parquet")
        else:
            found = storage.listdir(folder, ".parquet")
            uri = found[-1] if found else storage.join(folder, "(none)")
        if not storage.exists(uri):
            raise RegistryError(
                f"no labelled window at {uri}: the rollback target cannot be validated. Pick a day that "
                f"mlops_monitoring has landed (files in {folder}), or run mlops_monitoring first",
                cause="labelled window missing", evidence_uri=uri, next_step="run mlops_monitoring first",
            )
        print(summary_line("rollback-window", path=uri))
        return {"path": uri, "day": storage.name(uri).removesuffix(".parquet")}

    window = labelled_window()

    validate = ValidateRollbackOperator(
        task_id="validate_rollback",
        model_name=MODEL_NAME,
        target_version="{{ params.target_version or '' }}",
        holdout_path="{{ ti.xcom_pull(task_ids='labelled_window')['path'] }}",
        min_metrics={"auc": "{{ params.min_auc }}"},
        output_dir=storage.join(DATA_ROOT, "scores"),
    )
    approve = approval_gate(
        task_id="approve_rollback", model_name=MODEL_NAME, version=validate.output, verdict=validate.output,
    )
    rollback = RollbackModelOperator(
        task_id="rollback_champion", model_name=MODEL_NAME, validation=validate.output, approval=approve.output,
    )

    window >> validate >> approve >> rollback
