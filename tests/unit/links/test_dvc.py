"""The "DVC commit" extra link of the dataset-versioning task: a web page for GitHub/GitLab over https, else none."""

from __future__ import annotations

import pytest
from conftest import make_context
from mlops_airflow.links.dvc import DvcCommitLink, commit_url

pytestmark = pytest.mark.unit
SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("repo", "expected"),
    [
        ("https://github.com/acme/data.git", f"https://github.com/acme/data/commit/{SHA}"),
        ("https://github.com/acme/data/", f"https://github.com/acme/data/commit/{SHA}"),
        ("https://user:token@github.com/acme/data.git", f"https://github.com/acme/data/commit/{SHA}"),
        ("https://gitlab.example.com/group/sub/data.git", f"https://gitlab.example.com/group/sub/data/commit/{SHA}"),
        ("https://github.example.com:8443/acme/data", f"https://github.example.com:8443/acme/data/commit/{SHA}"),
        ("file:///srv/git/data.git", ""),
        ("git://git.example.com/data.git", ""),
        ("ssh://git@github.com/acme/data.git", ""),
        ("git@github.com:acme/data.git", ""),
        ("http://github.com/acme/data.git", ""),
        ("https://bitbucket.org/acme/data.git", ""),
        ("https://github.com/acme", ""),
        ("/srv/data_repo", ""),
        (None, ""),
    ],
)
def test_commit_url(repo, expected):
    assert commit_url(repo, SHA) == expected


def test_not_a_revision_gives_no_link():
    assert commit_url("https://github.com/acme/data", "main; rm -rf /") == ""
    assert commit_url("https://github.com/acme/data", None) == ""


def test_persist_stores_the_url_under_the_link_key_only_when_there_is_a_page():
    ctx = make_context("version_dataset")
    url = DvcCommitLink.persist(ctx, {"repo": "https://github.com/acme/data.git", "rev": SHA, "path": "data/x"})
    assert ctx["ti"].xcom == {DvcCommitLink().xcom_key: url} and url.endswith(f"/commit/{SHA}")
    other = make_context("version_dataset")
    assert DvcCommitLink.persist(other, {"repo": "file:///srv/data.git", "rev": SHA}) == ""
    assert other["ti"].xcom == {}


def test_get_link_reads_the_url_else_the_version(monkeypatch):
    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.comms import XComResult
    from airflow.sdk.types import TaskInstanceKey

    values = {"return_value": {"repo": "https://gitlab.com/acme/data", "rev": SHA}}

    class Comms:
        def send(self, msg):
            return XComResult(key=msg.key, value=values.get(msg.key))

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", Comms(), raising=False)
    key = TaskInstanceKey(dag_id="ct", task_id="version_dataset", run_id="r", try_number=1, map_index=-1)
    assert DvcCommitLink().get_link(None, ti_key=key) == f"https://gitlab.com/acme/data/commit/{SHA}"
    values[DvcCommitLink().xcom_key] = "https://github.com/acme/data/commit/abc1234"
    assert DvcCommitLink().get_link(None, ti_key=key) == "https://github.com/acme/data/commit/abc1234"
    values.clear()
    assert DvcCommitLink().get_link(None, ti_key=key) == ""


def test_the_versioning_operator_registers_the_link():
    from mlops_airflow.operators.dvc_version import DvcVersionDatasetOperator

    assert [type(link) for link in DvcVersionDatasetOperator.operator_extra_links] == [DvcCommitLink]
    assert DvcVersionDatasetOperator.operator_extra_links[0].name == "DVC commit"
