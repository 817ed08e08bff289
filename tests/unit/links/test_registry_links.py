"""The promotion tasks' extra links: the ledger entry a move wrote and the version it moved."""

from __future__ import annotations

import pytest
from conftest import make_context
from mlops_airflow.hooks.mlflow_registry import MlflowHook
from mlops_airflow.links.mlflow import MlflowModelVersionLink
from mlops_airflow.links.registry import LedgerEntryLink, ledger_entry_url, persist_promotion_links

pytestmark = pytest.mark.unit

UI = "http://mlflow.example:5000"


@pytest.fixture
def hook() -> MlflowHook:
    return MlflowHook(tracking_uri=UI)


def test_the_ledger_link_has_its_own_name_and_key():
    link = LedgerEntryLink()
    assert link.name == "Promotion ledger entry" and link.xcom_key == "_link_LedgerEntryLink"
    assert link.xcom_key != MlflowModelVersionLink().xcom_key


def test_ledger_entry_url_from_the_promote_result(hook):
    assert ledger_entry_url(hook, {"model_name": "m", "version": "2", "ledger_seq": 3}) == f"{UI}/#/models/m"
    assert ledger_entry_url(hook, {"model_name": "a b/c", "ledger_seq": 0}) == f"{UI}/#/models/a%20b%2Fc"
    assert ledger_entry_url(hook, {"model_name": "m", "ledger_seq": None}) is None  # no entry written
    assert ledger_entry_url(hook, {}) is None


def test_persist_promotion_links_pushes_both_urls(hook):
    ctx = make_context("promote_model")
    persist_promotion_links(ctx, hook, {"model_name": "m", "version": "2", "ledger_seq": 3})
    assert ctx["ti"].xcom == {"_link_LedgerEntryLink": f"{UI}/#/models/m",
                              "_link_MlflowModelVersionLink": f"{UI}/#/models/m/versions/2"}
    quiet = make_context("promote_model")
    persist_promotion_links(quiet, hook, {"model_name": "m", "version": None, "ledger_seq": None})
    assert quiet["ti"].xcom == {}  # nothing moved, nothing to link


def test_promotion_operators_register_the_ledger_link():
    from mlops_airflow.operators.promotion import PromoteModelOperator, RollbackCanaryOperator, RollbackModelOperator

    for cls in (PromoteModelOperator, RollbackModelOperator, RollbackCanaryOperator):
        assert any(isinstance(link, LedgerEntryLink) for link in cls.operator_extra_links), cls
