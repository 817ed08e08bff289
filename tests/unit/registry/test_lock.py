"""The promotion lock, held in a real MLflow registry: exclusive across clients, released, broken when expired,
and never released by someone who does not hold it."""

from __future__ import annotations

import logging
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from mlops_airflow.exceptions import RegistryError
from mlops_airflow.registry.lock import LOCK_SUFFIX, PromotionLock, lock_owner

pytestmark = pytest.mark.unit

IDENT = {"dag_id": "ct", "run_id": "run1", "task_id": "promote_model", "try_number": "2"}


def _exists(client, name: str) -> bool:
    return bool(client.search_registered_models(f"name = '{name}'"))


def test_lock_owner_names_the_task_and_the_host():
    assert lock_owner(IDENT) == f"ct/run1/promote_model#2@{socket.gethostname()}"


def test_the_lock_is_a_registered_model_for_the_time_of_the_move(registry_client, model_name):
    lock_name = f"{model_name}{LOCK_SUFFIX}"
    with PromotionLock(registry_client, model_name, "me@host", ttl_s=600) as lock:
        assert lock.name == lock_name
        held = registry_client.get_registered_model(lock_name)
        assert held.tags["mlops.lock.token"] == lock.token and held.tags["mlops.lock.owner"] == "me@host"
        expires = datetime.fromisoformat(held.tags["mlops.lock.expires_at"]) - datetime.now(UTC)
        assert timedelta(seconds=590) < expires <= timedelta(seconds=600)
        assert "Promotion in progress" in held.description
    assert not _exists(registry_client, lock_name)
    with pytest.raises(ValueError, match="boom"), PromotionLock(registry_client, model_name, "me@host"):
        raise ValueError("boom")
    assert not _exists(registry_client, lock_name)  # released on errors too


def test_a_held_lock_times_out_naming_its_owner(registry_client, model_name):
    with PromotionLock(registry_client, model_name, "first@host"):
        started = time.monotonic()
        held_by_first = (
            rf"another promotion of {model_name} holds the lock '{model_name}.promotion-lock' \(owner first@host\) "
            r"for over 1s; nothing was moved"
        )
        with (
            pytest.raises(RegistryError, match=held_by_first),
            PromotionLock(registry_client, model_name, "second@host", timeout_s=1),
        ):
            pass
        assert time.monotonic() - started >= 1
        assert _exists(registry_client, f"{model_name}{LOCK_SUFFIX}")  # the holder's lock is untouched


def test_an_expired_lock_of_a_dead_worker_is_broken(registry_client, model_name, caplog):
    lock_name = f"{model_name}{LOCK_SUFFIX}"
    registry_client.create_registered_model(
        lock_name,
        tags={
            "mlops.lock.token": "dead",
            "mlops.lock.owner": "ct/old/promote#1@gone",
            "mlops.lock.expires_at": "2000-01-01T00:00:00+00:00",
        },
    )
    log = logging.getLogger("test.lock")
    caplog.set_level(logging.WARNING, logger="test.lock")
    with PromotionLock(registry_client, model_name, "new@host", timeout_s=30, log=log) as lock:
        assert registry_client.get_registered_model(lock_name).tags["mlops.lock.token"] == lock.token
    assert f"Breaking expired promotion lock {lock_name} held by ct/old/promote#1@gone" in caplog.text
    assert not _exists(registry_client, lock_name)


def test_exit_leaves_a_lock_it_does_not_hold(registry_client, model_name):
    lock_name = f"{model_name}{LOCK_SUFFIX}"
    lock = PromotionLock(registry_client, model_name, "me@host", ttl_s=600)
    with lock:
        # Our lock expired and a peer took a new one meanwhile: leaving must not delete the peer's.
        registry_client.delete_registered_model(lock_name)
        registry_client.create_registered_model(lock_name, tags={"mlops.lock.token": "peer"})
    assert registry_client.get_registered_model(lock_name).tags["mlops.lock.token"] == "peer"
    registry_client.delete_registered_model(lock_name)
    with lock:
        registry_client.delete_registered_model(lock_name)  # gone already (deleted by hand): exit is quiet
    assert not _exists(registry_client, lock_name)


def test_two_workers_never_hold_it_at_once(registry, model_name):
    from mlops_airflow.hooks.mlflow_registry import MlflowHook

    inside, overlaps, errors = [], [], []

    def worker(n: int) -> None:
        client = MlflowHook(tracking_uri=registry.hook.settings.tracking_uri).get_client()  # its own client
        try:
            for _ in range(2):
                with PromotionLock(client, model_name, f"w{n}@host", timeout_s=60):
                    inside.append(n)
                    if len(inside) > 1:
                        overlaps.append(tuple(inside))
                    time.sleep(0.1)
                    inside.remove(n)
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not overlaps
    assert not _exists(registry.client, f"{model_name}{LOCK_SUFFIX}")


def _expire(client, lock_name: str) -> None:
    client.set_registered_model_tag(lock_name, "mlops.lock.expires_at", "2000-01-01T00:00:00+00:00")


def test_the_lease_is_short_and_renewed_while_the_holder_works(registry_client, model_name):
    from mlops_airflow.registry.lock import DEFAULT_TTL_S

    assert DEFAULT_TTL_S <= 30  # a dead holder blocks for less than one try of the promote task (120 s wait)
    lock_name = f"{model_name}{LOCK_SUFFIX}"
    with PromotionLock(registry_client, model_name, "me@host", ttl_s=1.5):
        time.sleep(3)  # twice the lease: only the heartbeat keeps it
        expires = datetime.fromisoformat(registry_client.get_registered_model(lock_name).tags["mlops.lock.expires_at"])
        assert expires > datetime.now(UTC)
        with pytest.raises(RegistryError, match="holds the lock"), PromotionLock(
            registry_client, model_name, "peer@host", timeout_s=0.5
        ):
            pass
    assert not _exists(registry_client, lock_name)


def test_a_holder_whose_lease_was_taken_over_moves_nothing(registry_client, model_name):
    lock_name = f"{model_name}{LOCK_SUFFIX}"
    frozen = PromotionLock(registry_client, model_name, "frozen@host", ttl_s=600)
    with frozen:
        frozen.ensure_held()  # ours, far from expiry
        _expire(registry_client, lock_name)  # as if it had been frozen past its lease
        with PromotionLock(registry_client, model_name, "taker@host", timeout_s=10) as taker:
            with pytest.raises(RegistryError, match="no longer held by this task .*was taken over; nothing was moved"):
                frozen.ensure_held()
            assert registry_client.get_registered_model(lock_name).tags["mlops.lock.token"] == taker.token
    assert not _exists(registry_client, lock_name)
    assert not registry_client.search_registered_models(f"name LIKE '{lock_name}.broken.%'")  # tombstone removed


def test_a_lease_near_its_expiry_is_not_used_for_a_move(registry_client, model_name):
    lock_name = f"{model_name}{LOCK_SUFFIX}"
    with PromotionLock(registry_client, model_name, "me@host", ttl_s=600) as lock:
        soon = (datetime.now(UTC) + timedelta(seconds=5)).isoformat()
        registry_client.set_registered_model_tag(lock_name, "mlops.lock.expires_at", soon)
        with pytest.raises(RegistryError, match=r"had only \d+\.\ds left; nothing was moved"):
            lock.ensure_held()


def test_two_promotions_taking_over_one_dead_lease_never_overlap(registry, model_name):
    from mlops_airflow.hooks.mlflow_registry import MlflowHook

    lock_name = f"{model_name}{LOCK_SUFFIX}"
    registry.client.create_registered_model(
        lock_name, tags={"mlops.lock.token": "dead", "mlops.lock.expires_at": "2000-01-01T00:00:00+00:00"}
    )
    inside, overlaps, errors, start = [], [], [], threading.Barrier(3)

    def worker(n: int) -> None:
        client = MlflowHook(tracking_uri=registry.hook.settings.tracking_uri).get_client()
        start.wait()
        try:
            with PromotionLock(client, model_name, f"w{n}@host", timeout_s=60):
                inside.append(n)
                if len(inside) > 1:
                    overlaps.append(tuple(inside))
                time.sleep(1)
                inside.remove(n)
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not overlaps
    assert not _exists(registry.client, lock_name)
    assert not registry.client.search_registered_models(f"name LIKE '{lock_name}.broken.%'")
