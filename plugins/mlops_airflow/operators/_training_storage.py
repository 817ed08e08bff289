"""How a training job reaches the object store that holds its training set (issue #11: workers share no disk).

The training set's URI is ``s3://...`` in production. The job reads it with ``mlops_airflow.training.data``, whose
S3 settings are environment variables (boto3's names). They come from the Airflow connection of the store
(``[mlops] storage_conn_id``, an ``aws`` connection: login/password or ``extra.aws_access_key_id`` /
``aws_secret_access_key``, ``extra.endpoint_url``, ``extra.region_name``):

- the local backend puts them into its subprocess's environment (never logged);
- the GPU pod gets the endpoint and the region as plain values, and the credentials only as references to a
  Kubernetes secret (``[mlops] training_storage_secret``, keys ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``):
  never as values of its spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlops_airflow import storage
from mlops_airflow.k8s.validation import PodSpecError

if TYPE_CHECKING:
    from kubernetes.client import models as k8s

ENDPOINT_ENV = "AWS_ENDPOINT_URL"
REGION_ENV = "AWS_DEFAULT_REGION"
#: Env var -> key in the Kubernetes secret of the store's credentials (override with storage_secret_keys=).
DEFAULT_STORAGE_SECRET_KEYS = {name: name for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}


@dataclass(frozen=True)
class StorageAccess:
    """The store of a remote training set as its job reaches it.

    :param uri: the training set's URI.
    :param conn_id: the Airflow connection of the store (None: the job's own identity, e.g. IRSA).
    :param endpoint_url: the store's endpoint (None: the provider's default).
    :param region: the store's region.
    :param credentials: env var -> value (secret: only a subprocess's environment may hold them).
    """

    uri: str
    conn_id: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    credentials: dict[str, str] = field(default_factory=dict, repr=False)

    def settings_env(self) -> dict[str, str]:
        """The non-secret settings: endpoint and region."""
        env = {ENDPOINT_ENV: self.endpoint_url, REGION_ENV: self.region}
        return {k: v for k, v in env.items() if v}

    def job_env(self) -> dict[str, str]:
        """Settings and credentials, for a child process's environment only (never a pod spec, never a log)."""
        return {**self.settings_env(), **self.credentials}

    def describe(self) -> str:
        """What the task log may say about it (no credential)."""
        return (f"{self.uri} through connection {self.conn_id or '(none: the job identity)'}, endpoint "
                f"{self.endpoint_url or '(default)'}")


def storage_access(uri: str) -> StorageAccess | None:
    """How a job reaches the store of ``uri`` (None: a local file, nothing to pass).

    :raises StorageError: the connection ``[mlops] storage_conn_id`` does not exist (named, with the next step).
    """
    if storage.is_local(uri):
        return None
    conn_id = storage.storage_conn_id()
    if not conn_id:
        return StorageAccess(uri=storage.to_uri(uri))
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        step = (f"create the aws connection {conn_id!r} (login/password, extra.endpoint_url) or unset [mlops] "
                "storage_conn_id to let the job use its own identity")
        raise storage.StorageError(
            f"the training set {uri} is on an object store, but the connection {conn_id!r} of [mlops] "
            f"storage_conn_id does not exist; {step}", cause="storage connection missing", evidence_uri=uri,
            next_step=step) from None
    extra: dict[str, Any] = conn.extra_dejson or {}
    key = conn.login or extra.get("aws_access_key_id")
    secret = conn.password or extra.get("aws_secret_access_key")
    credentials = {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret} if key and secret else {}
    if credentials and extra.get("aws_session_token"):
        credentials["AWS_SESSION_TOKEN"] = extra["aws_session_token"]
    endpoint = extra.get("endpoint_url") or ((extra.get("service_config") or {}).get("s3") or {}).get("endpoint_url")
    return StorageAccess(uri=storage.to_uri(uri), conn_id=conn_id, endpoint_url=endpoint or None,
                         region=extra.get("region_name") or None, credentials=credentials)


def storage_env_vars(access: StorageAccess | None, secret_name: str | None, secret_keys: dict[str, str],
                     namespace: str | None) -> list[k8s.V1EnvVar]:
    """The pod's env for the store: settings as values, credentials as ``secretKeyRef`` of ``secret_name``.

    :raises PodSpecError: the connection holds credentials but no Kubernetes secret is configured for the pod.
    """
    from kubernetes.client import models as k8s

    if access is None:
        return []
    env = [k8s.V1EnvVar(name=k, value=v) for k, v in access.settings_env().items()]
    if not secret_name:
        if access.credentials:
            raise PodSpecError(
                f"the training set {access.uri} is read with the credentials of connection {access.conn_id!r}, "
                "but no Kubernetes secret holds them for the training pod: create one (kubectl -n "
                f"{namespace or '<namespace>'} create secret generic mlops-storage-credentials "
                "--from-literal=AWS_ACCESS_KEY_ID=... --from-literal=AWS_SECRET_ACCESS_KEY=...) and set "
                "storage_secret_name= or [mlops] training_storage_secret. Credentials never go into a pod as plain "
                "env values"
            )
        return env  # no credentials anywhere: the pod's own identity (IRSA, workload identity)
    env += [
        k8s.V1EnvVar(name=name, value_from=k8s.V1EnvVarSource(
            secret_key_ref=k8s.V1SecretKeySelector(name=secret_name, key=key)))
        for name, key in secret_keys.items()
    ]
    return env


def check_no_plain_credentials(user: list[k8s.V1EnvVar], names: tuple[str, ...], how: str) -> None:
    """Refuse a user env var that sets a credential as a plain value (it would be visible in the pod spec)."""
    for var in user:
        if var.name in names and var.value is not None:
            raise PodSpecError(f"env_vars sets {var.name} as a plain value; pass it through {how} instead (it "
                               "would be visible in the pod spec)")

