"""Operator extra link: from a dataset-versioning task to its DVC commit in the data repository's web UI.

The versioning task's return value (XCom) is the dataset version ``{repo, rev, path, md5, ...}``. For an
``https`` GitHub or GitLab repository (``https://github.com/org/data.git``, ``https://gitlab.example/group/data``)
the link is ``<repo>/commit/<rev>`` (GitLab redirects it to its ``/-/commit/`` page); for any other repository
(a local path, ``file://``, ``ssh``, ``git://``) there is no web page to open and the link is empty. Credentials
in the URL are dropped. The API server reads the XCom only; it never calls git.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

_SHA = re.compile(r"^[0-9a-fA-F]{7,64}$")


def commit_url(repo_url: Any, rev: Any) -> str:
    """``<repo>/commit/<rev>`` for an https GitHub/GitLab repository; ``""`` for anything else."""
    if not isinstance(repo_url, str) or not isinstance(rev, str) or not _SHA.match(rev):
        return ""
    parts = urlsplit(repo_url.strip())
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or not host:
        return ""
    path = parts.path.rstrip("/").removesuffix(".git").rstrip("/")
    if path.count("/") < 2:  # at least /<owner>/<repository>
        return ""
    port = f":{parts.port}" if parts.port else ""
    base = f"https://{host}{port}{path}"
    if host == "github.com" or host.startswith("github.") or "gitlab" in host:
        return f"{base}/commit/{rev}"
    return ""


class DvcCommitLink(BaseOperatorLink):
    """The commit of the data version (GitHub/GitLab over https); empty for other repositories.

    Airflow 3 serialises a task's links as XCom links (the API server reads the URL stored under ``xcom_key``), so
    the versioning task stores the URL with ``persist`` while it runs; ``get_link`` reads it back, else builds it
    from the task's return value (``{repo, rev, ...}``).
    """

    name = "DVC commit"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.bases.xcom import BaseXCom

        url = BaseXCom.get_value(ti_key=ti_key, key=self.xcom_key)
        if isinstance(url, str) and url:
            return url
        version = BaseXCom.get_value(ti_key=ti_key, key="return_value")
        if not isinstance(version, dict):
            return ""
        return commit_url(version.get("repo_url") or version.get("repo"), version.get("rev"))

    @classmethod
    def persist(cls, context: Any, version: dict[str, Any]) -> str:
        """Store the commit URL of ``version`` for the link (nothing when there is no web page); returns it."""
        url = commit_url(version.get("repo_url") or version.get("repo"), version.get("rev"))
        ti = context.get("ti") if hasattr(context, "get") else None
        if url and ti is not None and hasattr(ti, "xcom_push"):
            ti.xcom_push(key=cls().xcom_key, value=url)
        return url
