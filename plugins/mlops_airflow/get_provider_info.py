"""Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``).

Kept import-free: Airflow calls this at every start of every component.
"""

from __future__ import annotations

from typing import Any

from mlops_airflow import __version__

# [mlops] options: name -> (description, example, default). Env: AIRFLOW__MLOPS__<NAME>.
_OPTIONS: dict[str, tuple[str, str, str | None]] = {
    "data_root": ("URI (or local folder) of every artefact that moves between tasks: landed batches, quarantine, "
                  "validation results, training sets, holdouts, scores, reports, run summaries. file:// on one "
                  "machine, s3://bucket/prefix when workers share no disk.",
                  "s3://mlops-artifacts/data", "/tmp/mlops-data"),
    "storage_conn_id": ("Airflow connection of the object store under data_root (an aws connection; its extra may "
                        "set endpoint_url for MinIO or another S3-compatible store). Empty: the scheme's default "
                        "credentials.", "mlops_store", ""),
    "include_dir": ("The project's include/ folder (training entrypoint, GX suites, Feast repo).",
                    "/opt/airflow/include", None),
    "project_root": ("The deployed project (its locks are hashed into the reproducibility record).", "/opt/airflow",
                     None),
    "training_backend": ("Where training runs: local (subprocess) or kubernetes (GPU pod).", "kubernetes", "local"),
    "training_python": ("Interpreter of the training environment (local backend and scoring).",
                        "/opt/train-venv/bin/python", None),
    "training_entrypoint": ("Default training entrypoint of the local backend: a Python file or "
                            "package.module:function (default: include_dir/training/train.py).",
                            "/opt/airflow/include/training/train.py", None),
    "training_envs_dir": ("Where the local backend builds one virtual environment per training requirements file "
                          "(keyed by its sha256), a per-worker cache, never an artefact. Default: "
                          "data_root/training_envs when data_root is local, $XDG_CACHE_HOME (or ~/.cache)"
                          "/mlops-airflow/training_envs when it is an object store.",
                          "/opt/airflow/training-envs", None),
    "scoring_entrypoint": ("Path of a batch-scoring script that replaces the pack's scorer "
                           "(default: python -m mlops_airflow.training.score).",
                           "/opt/airflow/include/training/score.py", None),
    "approval_policy": ("hitl: an ApprovalOperator gates every promotion; auto: logged auto-approval (demo only).",
                        "hitl", "hitl"),
    "approvers": ("Users assigned to approve promotions (HITL), comma-separated Airflow user ids; empty = anyone "
                  "with access to the DAG.", "alice,bob", ""),
    "approval_timeout_hours": ("Hours a promotion waits for a person; then it is rejected (nothing promoted).",
                               "72", "72"),
    "training_image": ("Training image of the Kubernetes backend (pin by digest).",
                       "registry.example.com/mlops-training@sha256:...", f"mlops-training:{__version__}"),
    "training_namespace": ("Namespace of training pods (else the kubernetes connection's).", "ml-training", None),
    "training_gpu_count": ("Whole GPUs per training pod (limit = request).", "1", "1"),
    "training_gpu_type": ("Value of the GPU node label, e.g. NVIDIA-H200.", "NVIDIA-H200", None),
    "training_gpu_node_label": ("Node label carrying the GPU type.", "cloud.google.com/gke-accelerator",
                                "nvidia.com/gpu.product"),
    "training_mlflow_secret": ("Kubernetes secret with the MLflow credentials (keys username/password/token).",
                               "mlflow-credentials", None),
    "training_storage_secret": ("Kubernetes secret holding the object store's credentials for training pods (keys "
                                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), referenced by the pod, never copied "
                                "into its spec.", "mlops-storage-credentials", None),
    "training_mlflow_tracking_uri": ("MLflow URI as training pods reach it, when it differs from the worker's.",
                                     "http://mlflow.mlops.svc:5000", None),
    "training_pod_template": ("Base pod template, validated strictly before use.",
                              "/opt/airflow/include/pod_templates/gpu_training.yaml", None),
    "training_schedule_timeout": ("Seconds a training pod may stay unscheduled before the task fails with a diagnosis.",
                                  "600", "600"),
    "kubernetes_version": ("Kubernetes version whose schema validates pods (default: newest bundled).", "1.33", None),
    "ui_mlflow_conn_id": ("MLflow connection the MLOps models page reads the registry through.", "mlflow_default",
                          "mlflow_default"),
    "monitoring_experiment": ("MLflow experiment whose runs hold the drift and quality verdicts the models page "
                              "shows.", "mlops-monitoring", "mlops-monitoring"),
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-mlops",
        "name": "MLOps (continuous training)",
        "description": "DVC, Great Expectations, Feast, GPU training, MLflow registry and "
        "Evidently monitoring joined into one continuous-training loop.",
        "versions": [__version__],
        "integrations": [
            {"integration-name": "MLflow", "external-doc-url": "https://mlflow.org/docs/latest/", "tags": ["software"]},
            {"integration-name": "DVC", "external-doc-url": "https://dvc.org/doc", "tags": ["software"]},
            {"integration-name": "Feast", "external-doc-url": "https://docs.feast.dev/", "tags": ["software"]},
            {"integration-name": "Great Expectations", "external-doc-url": "https://docs.greatexpectations.io/",
             "tags": ["software"]},
        ],
        "hooks": [
            {"integration-name": "MLflow", "python-modules": ["mlops_airflow.hooks.mlflow_registry"]},
            {"integration-name": "DVC", "python-modules": ["mlops_airflow.hooks.dvc_repo"]},
            {"integration-name": "Feast", "python-modules": ["mlops_airflow.hooks.feast_store"]},
        ],
        "operators": [
            {"integration-name": "MLflow", "python-modules": [
                "mlops_airflow.operators.registry", "mlops_airflow.operators.evaluation",
                "mlops_airflow.operators.approval", "mlops_airflow.operators.promotion",
                "mlops_airflow.operators.training",
                "mlops_airflow.operators.gpu_training", "mlops_airflow.operators.scoring",
                "mlops_airflow.operators.monitoring", "mlops_airflow.operators.drift",
                "mlops_airflow.operators.drift_partitioned",
                "mlops_airflow.operators.quality", "mlops_airflow.operators.retrain_guard"]},
            {"integration-name": "DVC", "python-modules": ["mlops_airflow.operators.dvc_version"]},
            {"integration-name": "Feast", "python-modules": [
                "mlops_airflow.operators.feast_apply", "mlops_airflow.operators.feast_materialize",
                "mlops_airflow.operators.feast_training_set", "mlops_airflow.operators.feast_skew",
                "mlops_airflow.operators.feast_features"]},
            {"integration-name": "Great Expectations", "python-modules": ["mlops_airflow.operators.data_validation"]},
        ],
        "sensors": [{"integration-name": "DVC", "python-modules": ["mlops_airflow.sensors.dvc"]}],
        "triggers": [{"integration-name": "DVC", "python-modules": ["mlops_airflow.triggers.dvc"]}],
        # Connection forms, declared (Airflow >= 3.2 renders these without importing the hooks): the fields are
        # keys of the connection's extra JSON, read by the hooks under the same names.
        "connection-types": [
            {
                "connection-type": "mlflow",
                "hook-class-name": "mlops_airflow.hooks.mlflow_registry.MlflowHook",
                "hook-name": "MLflow",
                "conn-fields": {
                    "tracking_uri": {"label": "Tracking URI", "description": "e.g. https://mlflow.example.com; "
                                     "wins over host/port/scheme", "schema": {"type": ["string", "null"]}},
                    "registry_uri": {"label": "Registry URI", "description": "a separate model registry (default: "
                                     "the tracking URI)", "schema": {"type": ["string", "null"]}},
                    "ui_url": {"label": "UI URL", "description": "the address people open in a browser, when it "
                               "differs from the tracking URI", "schema": {"type": ["string", "null"]}},
                    "token": {"label": "Token", "description": "bearer token (or login/password for basic auth)",
                              "schema": {"type": ["string", "null"], "format": "password"}},
                    "insecure_tls": {"label": "Skip TLS verification", "description": "test servers only",
                                     "schema": {"type": ["boolean", "null"], "default": False}},
                },
                "ui-field-behaviour": {
                    "hidden-fields": [],
                    "relabeling": {"host": "Tracking server host", "schema": "Scheme (http/https)"},
                    "placeholders": {"host": "mlflow.example.com", "tracking_uri": "https://mlflow.example.com"},
                },
            },
            {
                "connection-type": "dvc",
                "hook-class-name": "mlops_airflow.hooks.dvc_repo.DvcHook",
                "hook-name": "DVC repository",
                "conn-fields": {
                    "repo_path": {"label": "Working copy path", "description": "a local clone (default: the host "
                                  "field)", "schema": {"type": ["string", "null"]}},
                    "repo_url": {"label": "Git URL", "description": "the data repository to clone and push to",
                                 "schema": {"type": ["string", "null"]}},
                    "branch": {"label": "Branch", "schema": {"type": ["string", "null"], "default": "main"}},
                    "remote": {"label": "DVC remote name", "schema": {"type": ["string", "null"]}},
                    "remote_url": {"label": "DVC remote URL", "description": "e.g. s3://bucket/dvc",
                                   "schema": {"type": ["string", "null"]}},
                    "endpoint_url": {"label": "DVC remote endpoint", "description": "S3-compatible endpoint (MinIO), "
                                     "written to .dvc/config.local", "schema": {"type": ["string", "null"]}},
                    "working_copy": {"label": "Working copy", "description": "per_task: a clone per task (the "
                                     "default with a Git URL and no working copy path)",
                                     "schema": {"type": ["string", "null"]}},
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {"host": "Working copy path", "login": "Remote access key",
                                   "password": "Remote secret"},
                    "placeholders": {"repo_path": "/data/repo", "repo_url": "git@host:org/data.git",
                                     "remote": "storage", "remote_url": "s3://bucket/dvc"},
                },
            },
            {
                "connection-type": "feast",
                "hook-class-name": "mlops_airflow.hooks.feast_store.FeastHook",
                "hook-name": "Feast feature store",
                "conn-fields": {
                    "repo_path": {"label": "Feature repository path", "description": "the folder with "
                                  "feature_store.yaml", "schema": {"type": ["string", "null"]}},
                    "feature_store_yaml": {"label": "Store configuration file", "schema": {
                        "type": ["string", "null"], "default": "feature_store.yaml"}},
                    "dvc_conn_id": {"label": "DVC connection", "description": "the data repository holding the "
                                    "feature repository and its file sources (cloned per task when that "
                                    "connection has repo_url and no repo_path)",
                                    "schema": {"type": ["string", "null"]}},
                    "repo_subdir": {"label": "Folder in the data repository", "description": "the feature "
                                    "repository's folder, relative to the data repository's root",
                                    "schema": {"type": ["string", "null"], "default": "."}},
                    "data_paths": {"label": "DVC data paths", "description": "comma-separated DVC-tracked paths the "
                                   "file sources read, from the repository root (default: derived from the "
                                   "FileSources)", "schema": {"type": ["string", "null"]}},
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login", "password"],
                    "relabeling": {"host": "Feature repository path"},
                    "placeholders": {"repo_path": "/opt/feature_repo", "dvc_conn_id": "dvc_default",
                                     "data_paths": "data/events"},
                },
            },
        ],
        "asset-uris": [
            {"schemes": ["dvc"], "handler": "mlops_airflow.assets.sanitize_uri",
             "to_openlineage_converter": "mlops_airflow.lineage.asset_to_openlineage"},
            {"schemes": ["mlflow"], "handler": "mlops_airflow.assets.sanitize_uri",
             "to_openlineage_converter": "mlops_airflow.lineage.asset_to_openlineage"},
            {"schemes": ["mlops"], "handler": "mlops_airflow.assets.sanitize_uri",
             "to_openlineage_converter": "mlops_airflow.lineage.asset_to_openlineage"},
            {"schemes": ["feast"], "handler": "mlops_airflow.assets.sanitize_uri",
             "to_openlineage_converter": "mlops_airflow.lineage.asset_to_openlineage"},
        ],
        "extra-links": [
            "mlops_airflow.links.mlflow.MlflowRunLink",
            "mlops_airflow.links.mlflow.MlflowModelVersionLink",
            "mlops_airflow.links.mlflow.EvidenceLink",
            "mlops_airflow.links.registry.LedgerEntryLink",
            "mlops_airflow.links.dvc.DvcCommitLink",
        ],
        "plugins": [{"name": "mlops", "plugin-class": "mlops_airflow.ui.plugin.MLOpsPlugin"}],
        "config": {
            "mlops": {
                "description": "Settings of airflow-provider-mlops (env AIRFLOW__MLOPS__<OPTION>).",
                "options": {
                    name: {"description": d, "version_added": "0.1.0", "type": "string", "example": ex, "default": df}
                    for name, (d, ex, df) in _OPTIONS.items()
                },
            }
        },
    }
