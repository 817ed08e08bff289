"""The promotion lock: mutual exclusion of the alias moves of one model, held in the MLflow registry itself.

It works across workers with nothing but the registry. The lock is a registered model
``<name>.promotion-lock`` created with ``create_registered_model``: the registry makes that atomic (a
unique name), so exactly one caller gets it. It is a **lease**: its ``mlops.lock.expires_at`` tag is
``ttl_s`` (default :data:`DEFAULT_TTL_S` = 30 s) ahead, and a heartbeat thread of the holder renews it
every ``ttl_s / 3`` while the holder works. The holder deletes it when the move ends.

A holder that dies (SIGKILL, OOM, a lost node) stops renewing, so its lease runs out within ``ttl_s``, well
inside the promote task's retry window (``retries=2``, ``retry_delay=20 s``, ``lock_timeout_s=120 s``
a try): the next promotion **takes the lease over** instead of failing for good. Taking over is atomic
too: the expired lock is *renamed* to ``<lock>.broken.<token>``, a name unique to that one lease, so of
two promotions breaking the same dead lease only one succeeds, and neither can break a lease a peer has
just taken (its token differs). The taker then creates its own lock as usual.

Before it moves an alias the holder calls :meth:`PromotionLock.ensure_held`: its token is still on the
lock, the lease has at least ``ttl_s / 3`` left, and it is renewed at once. A holder that lost its
lease (frozen longer than ``ttl_s``, or the registry unreachable for that long) stops there with
nothing moved. The registry has no conditional alias update, so this check is the fence; the window it
leaves is the one REST call between the check and the move, against a margin of ``ttl_s / 3``.
No Airflow operator here.
"""

from __future__ import annotations

import random
import socket
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from mlops_airflow.exceptions import RegistryError

if TYPE_CHECKING:
    import logging

    from mlops_airflow.hooks.mlflow_registry import MlflowHook

LOCK_SUFFIX = ".promotion-lock"
BROKEN_INFIX = ".broken."
DEFAULT_TTL_S = 30.0
TOKEN, OWNER, EXPIRES = "mlops.lock.token", "mlops.lock.owner", "mlops.lock.expires_at"


def lock_owner(ident: dict[str, str]) -> str:
    """Who holds the lock, for the person who finds it: ``dag/run/task#try@host``."""
    return f"{ident['dag_id']}/{ident['run_id']}/{ident['task_id']}#{ident['try_number']}@{socket.gethostname()}"


def _expires(ttl_s: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=ttl_s)).isoformat()


def _seconds_left(tags: dict[str, str]) -> float:
    try:
        return (datetime.fromisoformat(tags.get(EXPIRES, "")) - datetime.now(UTC)).total_seconds()
    except ValueError:
        return -1.0  # no or garbled expiry: treated as expired (a lock written by hand, or a very old one)


class PromotionLock:
    """Mutual exclusion of alias moves of one model: a renewed lease held in the registry (works across workers).

    ``create_registered_model`` of ``<model>.promotion-lock`` succeeds for exactly one caller (unique
    name); a heartbeat renews its expiry every ``ttl_s / 3``; the holder deletes it. A lease past its
    expiry belongs to a dead (or cut-off) holder and is taken over by renaming it (see the module doc).

    :param timeout_s: how long to wait for a live holder before failing (the task's retry then waits again).
    :param ttl_s: the lease; a dead holder blocks others for at most this long.
    """

    def __init__(
        self,
        hook: MlflowHook,
        model_name: str,
        owner: str,
        *,
        timeout_s: float = 120,
        ttl_s: float = DEFAULT_TTL_S,
        log: logging.Logger | None = None,
    ) -> None:
        self.hook, self.name, self.owner = hook, f"{model_name}{LOCK_SUFFIX}", owner
        self.timeout_s, self.ttl_s, self.log = timeout_s, ttl_s, log
        self.token = uuid.uuid4().hex
        self.lost = False
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    # ------------------------------------------------------------------------------------ taking it
    def __enter__(self) -> PromotionLock:
        from mlflow.exceptions import MlflowException

        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                self.hook.create_registered_model(
                    self.name,
                    tags={TOKEN: self.token, OWNER: self.owner, EXPIRES: _expires(self.ttl_s)},
                    description="Promotion in progress (airflow-provider-mlops); deleted when the alias move ends, "
                    "taken over when its mlops.lock.expires_at has passed (the holder died).",
                )
                break
            except MlflowException as err:
                if err.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            holder = self._holder()
            if holder and _seconds_left(holder) < 0:
                self._take_over(holder)
                continue
            if time.monotonic() > deadline:
                raise RegistryError(
                    f"another promotion of {self.name.removesuffix(LOCK_SUFFIX)} holds the lock {self.name!r} "
                    f"(owner {holder.get(OWNER) if holder else '?'}) for over {self.timeout_s:.0f}s; "
                    "nothing was moved. Airflow retries this task; a dead holder's lease expires within "
                    f"{self.ttl_s:.0f}s and is then taken over"
                )
            time.sleep(0.2 + random.random() * 0.3)
        self._heartbeat = threading.Thread(target=self._renew_loop, name=f"lease {self.name}", daemon=True)
        self._heartbeat.start()
        return self

    def _take_over(self, holder: dict[str, str]) -> None:
        """Retire the expired lease ``holder`` by renaming it to a name unique to its token (atomic, once)."""
        from mlflow.exceptions import MlflowException

        dead = holder.get(TOKEN) or "unknown"
        tombstone = f"{self.name}{BROKEN_INFIX}{dead}"[:250]
        again = self._holder()  # take over only *that* expired lease, not one a peer just took
        if not again or again.get(TOKEN) != holder.get(TOKEN):
            return
        try:
            self.hook.rename_registered_model(self.name, tombstone)
        except MlflowException:
            return  # a peer renamed it first (or the holder released it): back to create_registered_model
        if self.log:
            self.log.warning(
                "Breaking expired promotion lock %s held by %s (its lease expired at %s: the holder is dead or cut "
                "off); taken over",
                self.name,
                holder.get(OWNER),
                holder.get(EXPIRES),
            )
        self._delete(tombstone)

    # ------------------------------------------------------------------------------------ holding it
    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self._renew()
            except Exception as err:  # noqa: BLE001 - a failed renewal is caught by ensure_held before a move
                if self.log:
                    self.log.warning("Could not renew the promotion lock %s: %s", self.name, err)
            if self.lost:
                return

    def _renew(self) -> float:
        """Push the expiry ``ttl_s`` ahead when the lease is still ours; return the seconds it had left."""
        holder = self._holder()
        if not holder or holder.get(TOKEN) != self.token:
            self.lost = True
            return -1.0
        left = _seconds_left(holder)
        if left > 0:
            self.hook.set_registered_model_tag(self.name, EXPIRES, _expires(self.ttl_s))
        return left

    def ensure_held(self) -> None:
        """Fence before a move: the lease is ours with at least ``ttl_s / 3`` left; renewed now. Else an error."""
        left = self._renew()
        if self.lost or left < self.ttl_s / 3:
            self.lost = True
            raise RegistryError(
                f"the promotion lock {self.name!r} is no longer held by this task ({self.owner}): its lease "
                f"{'was taken over' if left < 0 else f'had only {left:.1f}s left'}; nothing was moved. Airflow "
                "retries this task (the next holder completes or drops the recorded intent)"
            )

    def _holder(self) -> dict[str, str] | None:
        from mlflow.exceptions import MlflowException

        try:
            return dict(self.hook.get_registered_model(self.name).tags)
        except MlflowException:
            return None

    def _delete(self, name: str | None = None) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.hook.delete_registered_model(name or self.name)
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
        holder = self._holder()
        if holder and holder.get(TOKEN) == self.token:
            self._delete()
