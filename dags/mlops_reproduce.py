"""Reproduce a registered model version from its reproducibility record.

read_record -> rebuild_training_set (Feast, at the record's DVC revision) -> check_hash
            -> [retrain? (param)] -> retrain_model -> compare_metrics

The training set is rebuilt with the model's own feature repository: the record's ``features.feast_conn_id`` /
``features.feast_repo`` (written for models built with ``continuous_training``), else the ``feast_conn_id`` param,
else ``feast_default``; a rebuild that reads another Feast project than the record's fails, naming the param.
``check_hash`` fails, naming the likely cause, when the rebuilt training set's content hash differs
from the record's. With ``retrain`` the record's entrypoint (the code that trained the version, whose sha256
must still match: ``retrain_requested`` fails naming the change otherwise), its requirements, task type and
training config (seed included) are trained again, and ``compare_metrics`` reports the metric differences (GPU
non-determinism shows up here) and whether the retrained run hashed the same code.

Thin composition of the pack's operators; parsing imports no heavy library and reads no connection.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.configuration import conf
from airflow.sdk import DAG, Param, task
from mlops_airflow._summary import summary_line
from mlops_airflow.operators.feast_features import FeastTrainingSetOperator
from mlops_airflow.operators.training import train_model_task

DATA_ROOT = conf.get("mlops", "data_root", fallback="/tmp/mlops-data")


class RebuildTrainingSetOperator(FeastTrainingSetOperator):
    """``FeastTrainingSetOperator`` whose feature repository (connection, folder) comes from the record."""

    template_fields = (*FeastTrainingSetOperator.template_fields, "feast_conn_id", "repo_path")

    def execute(self, context):  # noqa: ANN001, ANN201 - the base operator's signature
        self.repo_path = self.repo_path or None  # "" (the record names no folder): the connection's repository
        return super().execute(context)


with DAG(
    dag_id="mlops_reproduce",
    description="Rebuild a model version's training set from its reproducibility record; optionally retrain",
    schedule=None,
    catchup=False,
    render_template_as_native_obj=True,
    tags=["mlops", "reproducibility", "reference"],
    default_args={"owner": "ml-platform", "retries": 2, "retry_delay": timedelta(seconds=20)},
    params={
        "model_name": Param("churn_classifier", type="string", description="Registered model name"),
        "version": Param("1", type="string", description="Model version to reproduce"),
        "retrain": Param(False, type="boolean", description="Also retrain with the record's config and compare"),
        "feast_conn_id": Param(None, type=["null", "string"],
                               description="Feast connection of the model's feature repository (empty = the one the "
                                           "record names, else feast_default)"),
    },
    doc_md=__doc__,
) as dag:

    @task(retries=2)
    def read_record(params: dict) -> dict:
        """The version's record (tags + reproducibility/record.json), integrity-checked, as rebuild inputs."""
        from mlops_airflow.hooks.mlflow_registry import MlflowHook
        from mlops_airflow.record import load_record, reproduction_inputs

        hook = MlflowHook()
        hook.ensure_reachable()
        record = load_record(hook, params["model_name"], params["version"])
        inputs = reproduction_inputs(record)
        run = hook.get_run(inputs["mlflow_run_id"])
        inputs["original_metrics"] = {k: v for k, v in run.data.metrics.items() if k.startswith("val_")}
        inputs["feast_conn_id"] = params.get("feast_conn_id") or inputs.get("feast_conn_id") or "feast_default"
        inputs["feast_repo"] = inputs.get("feast_repo") or ""
        dataset = inputs["dataset_version"]
        feast = inputs["feast_conn_id"] + (f" {inputs['feast_repo']}" if inputs["feast_repo"] else "")
        print(summary_line("reproduce-read", model=params["model_name"], version=params["version"],
                           dataset=f"{dataset['path']}@{str(dataset['rev'])[:12]}", service=inputs["feature_service"],
                           feast=feast, expected_hash=inputs["expected_hash"][:16]))
        return inputs

    inputs = read_record()

    rebuild = RebuildTrainingSetOperator(
        task_id="rebuild_training_set",
        feast_conn_id="{{ ti.xcom_pull(task_ids='read_record')['feast_conn_id'] }}",
        repo_path="{{ ti.xcom_pull(task_ids='read_record')['feast_repo'] }}",
        dataset_version="{{ ti.xcom_pull(task_ids='read_record')['dataset_version'] }}",
        feature_service="{{ ti.xcom_pull(task_ids='read_record')['feature_service'] }}",
        label_column="{{ ti.xcom_pull(task_ids='read_record')['label'] }}",
        entity_start="{{ ti.xcom_pull(task_ids='read_record')['entity_window']['start'] }}",
        entity_end="{{ ti.xcom_pull(task_ids='read_record')['entity_window']['end'] }}",
        output_dir=f"{DATA_ROOT}/reproduce/{{{{ params.model_name }}}}-v{{{{ params.version }}}}",
    )

    @task(retries=2)
    def check_hash(inputs: dict, rebuilt: dict) -> dict:
        """Fails (RegistryError, with the cause) unless the rebuilt training set has the recorded hash."""
        from mlops_airflow.record import verify_rebuild

        result = verify_rebuild(inputs, rebuilt)
        print(summary_line("reproduce-check", match=result["match"], hash=result["rebuilt_hash"][:16],
                           rows=result["rebuilt_rows"], dataset=result["dataset"]))
        return result

    checked = check_hash(inputs, rebuild.output)

    @task.short_circuit(retries=2)
    def retrain_requested(params: dict, inputs: dict) -> bool:
        """Retrain only when asked, and only with the code that trained the version (same sha256)."""
        if not params.get("retrain"):
            return False
        from mlops_airflow.record import verify_code

        code = verify_code(inputs)
        print(summary_line("reproduce-code", entrypoint=code["entrypoint"], sha256=str(code["sha256"])[:12],
                           match=code["match"]))
        return True

    retrain = train_model_task(
        task_id="retrain_model",
        training_set=rebuild.output,
        dataset_version="{{ ti.xcom_pull(task_ids='read_record')['dataset_version'] }}",
        experiment_name="{{ params.model_name }}-reproduce",
        training_config="{{ ti.xcom_pull(task_ids='read_record')['training_config'] }}",
        entrypoint="{{ ti.xcom_pull(task_ids='read_record')['entrypoint'] }}",
        requirements="{{ ti.xcom_pull(task_ids='read_record')['requirements'] }}",
        task_type="{{ ti.xcom_pull(task_ids='read_record')['task_type'] }}",
        execution_timeout=timedelta(hours=2),
    )

    @task(retries=2)
    def compare_metrics(inputs: dict, retrained: dict) -> dict:
        """Metric differences between the original run and the retrained one."""
        from mlops_airflow.record import metric_differences

        diffs = metric_differences(inputs["original_metrics"], retrained["metrics"])
        worst = max((abs(d["diff"]) for d in diffs.values()), default=0.0)
        same_code = retrained.get("entrypoint_sha256") == inputs.get("entrypoint_sha256")
        print(summary_line("reproduce-retrain", original_run=inputs["mlflow_run_id"],
                           retrained_run=retrained["run_id"], max_abs_diff=f"{worst:.6f}", same_code=same_code,
                           diffs=diffs))
        return {"differences": diffs, "max_abs_diff": worst, "retrained_run_id": retrained["run_id"],
                "same_code": same_code, "entrypoint": retrained.get("entrypoint"),
                "entrypoint_sha256": retrained.get("entrypoint_sha256")}

    checked >> retrain_requested(inputs=inputs) >> retrain
    compare_metrics(inputs, retrain.output)
