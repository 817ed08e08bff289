"""The promotion lock: mutual exclusion of the alias moves of one model, held in the MLflow registry itself.

It works across workers with nothing but the registry: the lock is a registered model
``<name>.promotion-lock`` created with ``create_registered_model`` (which the registry makes atomic with a
unique name), deleted when the move ends, broken after ``ttl_s`` if a worker died holding it.
No Airflow operator here.
"""

from __future__ import annotations

import random
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from mlops_airflow.exceptions import RegistryError

if TYPE_CHECKING:
    import logging

LOCK_SUFFIX = ".promotion-lock"


def lock_owner(ident: dict[str, str]) -> str:
    """Who holds the lock, for the person who finds it: ``dag/run/task#try@host``."""
    return f"{ident['dag_id']}/{ident['run_id']}/{ident['task_id']}#{ident['try_number']}@{socket.gethostname()}"


class PromotionLock:
    """Mutual exclusion of alias moves of one model, held in the registry itself (works across workers).

    ``create_registered_model`` of ``<model>.promotion-lock`` succeeds for exactly one caller (unique
    name); the holder deletes it. A lock older than ``ttl_s`` belongs to a dead worker and is broken.
    """

    def __init__(
        self,
        client: Any,
        model_name: str,
        owner: str,
        *,
        timeout_s: float = 120,
        ttl_s: float = 600,
        log: logging.Logger | None = None,
    ) -> None:
        self.client, self.name, self.owner = client, f"{model_name}{LOCK_SUFFIX}", owner
        self.timeout_s, self.ttl_s, self.log = timeout_s, ttl_s, log
        self.token = uuid.uuid4().hex

    def __enter__(self) -> PromotionLock:
        from mlflow.exceptions import MlflowException

        deadline = time.monotonic() + self.timeout_s
        while True:
            expires = (datetime.now(UTC) + timedelta(seconds=self.ttl_s)).isoformat()
            try:
                self.client.create_registered_model(
                    self.name,
                    tags={
                        "mlops.lock.token": self.token,
                        "mlops.lock.owner": self.owner,
                        "mlops.lock.expires_at": expires,
                    },
                    description="Promotion in progress (airflow-provider-mlops); deleted when the alias move ends.",
                )
                return self
            except MlflowException as err:
                if err.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            holder = self._holder()
            if holder and holder.get("mlops.lock.expires_at", "") < datetime.now(UTC).isoformat():
                if self.log:
                    self.log.warning(
                        "Breaking expired promotion lock %s held by %s", self.name, holder.get("mlops.lock.owner")
                    )
                again = self._holder()  # break only *that* expired lock, not one a peer just took
                if again and again.get("mlops.lock.token") == holder.get("mlops.lock.token"):
                    self._delete()
                continue
            if time.monotonic() > deadline:
                raise RegistryError(
                    f"another promotion of {self.name.removesuffix(LOCK_SUFFIX)} holds the lock {self.name!r} "
                    f"(owner {holder.get('mlops.lock.owner') if holder else '?'}) for over {self.timeout_s:.0f}s; "
                    "nothing was moved. Airflow retries this task; if the holder is dead, delete that registered "
                    "model or wait for its expiry"
                )
            time.sleep(0.2 + random.random() * 0.3)

    def _holder(self) -> dict[str, str] | None:
        from mlflow.exceptions import MlflowException

        try:
            return dict(self.client.get_registered_model(self.name).tags)
        except MlflowException:
            return None

    def _delete(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.delete_registered_model(self.name)
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise

    def __exit__(self, *exc: object) -> None:
        holder = self._holder()
        if holder and holder.get("mlops.lock.token") == self.token:
            self._delete()
