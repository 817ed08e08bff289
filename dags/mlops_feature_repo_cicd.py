"""Feature repository CI/CD: check, apply and verify the Feast definitions - the only place `feast apply` runs.

Applying inside the scheduled materialisation resets Feast's incremental state (feast#2905), so definitions
move in their own DAG, triggered when they change (CI calls the REST API after a merge to the data repository,
or a person triggers it from the UI):

    plan_definitions   `feast plan`: what would change; fails on definitions that do not load
    apply_definitions  `feast apply`; emits an event on ``feast://churn`` (extra: the changes)
    verify_definitions the feature services the pipelines use exist in the registry

The CT DAG's materialisation (bounded, mapped windows) then reads the applied registry. Parsing imports no heavy
library and reads no connection: the feature repository comes from the ``feast_default`` connection at run time.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Asset, Param, task
from mlops_airflow._summary import summary_line
from mlops_airflow.assets import feature_asset_uri
from mlops_airflow.operators.feast_features import FeastApplyOperator

PROJECT = "churn"
DEFINITIONS = Asset(uri=feature_asset_uri(PROJECT), name="feast_churn_definitions")

with DAG(
    dag_id="mlops_feature_repo_cicd",
    description="Feast feature definitions: plan, apply, verify (CI/CD, never in the scheduled materialisation)",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    tags=["mlops", "feast", "ci-cd"],
    default_args={"owner": "ml-platform", "retries": 2, "retry_delay": timedelta(seconds=30)},
    params={
        "feature_services": Param(["churn_model_v1"], type="array", items={"type": "string"},
                                  description="Feature services that must exist after the apply"),
    },
    doc_md=__doc__,
) as dag:
    plan = FeastApplyOperator(task_id="plan_definitions", plan_only=True)

    apply = FeastApplyOperator(task_id="apply_definitions", outlets=[DEFINITIONS])

    @task(retries=2)
    def verify_definitions(params: dict) -> dict:
        """Every feature service the pipelines use resolves, with the views behind it."""
        from mlops_airflow.hooks.feast_store import FeastHook

        hook = FeastHook()
        store = hook.get_store()
        services = {}
        for name in params["feature_services"]:
            service = hook.get_feature_service(store, name)  # names the known services when missing
            services[name] = sorted(p.name for p in service.feature_view_projections)
        views = sorted(fv.name for fv in store.list_feature_views())
        print(summary_line("feast-verify", project=store.project, views=views, services=services))
        return {"project": store.project, "feature_views": views, "feature_services": services}

    plan >> apply >> verify_definitions()
