"""The MLflow server dies while ``register_model`` / ``promote_model`` runs, then comes back (issue 16, item 2).

A real MLflow server (SQLite backend, proxied file artifacts) of this module's own, which the test SIGKILLs and
restarts on the same port with the same backend store. The kill is deterministic: one MLflow client method is
wrapped in this process so that the server dies right after that call succeeded, i.e. after the alias moved and
before its ledger append (the worst point: the registry changed, the record of it did not). The task must fail
with one line (the URI, the cause, what was done, the next step) in seconds, not after MLflow's ~4 minutes of
client retries; once the server is back, the retry completes it with one version, one alias move and one ledger
entry per promotion, announced once.

Runtime: ~90-150 s on a loaded 2-core box: two tiny trainings, three server starts, and the killed try's 30 s
promotion lease (its holder's process lives on, but the lease could not be released while the server was down).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port, make_context
from mlops_airflow.exceptions import RegistryError
from unit.operators.test_registry_support import mlflow_conn_json, needs_training_env, register, trained, unique

APPROVAL = {"chosen_options": ["Approve"], "params_input": {}, "responded_at": "2026-11-20T10:00:00+00:00",
            "responded_by_user": {"id": "7", "name": "alice"}}
VERDICT = {"passed": True, "reasons": ["challenger v2 passed"], "champion_version": "1",
           "metrics": {"challenger": {"auc": 0.8}, "champion": {"auc": 0.7}, "delta": 0.1, "ci": [0.05, 0.15]}}


class KillableServer:
    """An MLflow server that can be SIGKILLed and started again on the same port and backend store."""

    def __init__(self, base: Path) -> None:
        self.base, self.port = base, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout_s: float = 240) -> float:
        started = time.monotonic()
        self.starts += 1
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
             f"sqlite:///{self.base}/mlflow.db", "--artifacts-destination", str(self.base / "artifacts"),
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            stdout=open(self.base / f"server-{self.starts}.log", "wb"),  # noqa: SIM115 - owned by the server
            stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )
        while time.monotonic() - started < timeout_s:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2):
                    return time.monotonic() - started
            except OSError:
                if self.proc.poll() is not None:
                    log = (self.base / f"server-{self.starts}.log").read_text()[-3000:]
                    pytest.fail(f"MLflow server exited (start {self.starts}): {log}")
                time.sleep(0.3)
        self.kill()
        pytest.fail(f"MLflow server did not start in {timeout_s:.0f} s")

    def kill(self) -> None:
        """SIGKILL the server and its workers (its process group): nothing is flushed or closed cleanly."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = KillableServer(tmp_path_factory.mktemp("mlflow-outage"))
    srv.start()
    yield srv
    srv.kill()


def kill_after(monkeypatch: pytest.MonkeyPatch, server: KillableServer, method: str, model_name: str,
               alias: str) -> list[float]:
    """Wrap ``MlflowClient.<method>`` so the server is SIGKILLed right after that call moved ``alias`` of
    ``model_name``; returns the list the kill time is appended to."""
    from mlflow import MlflowClient

    real = getattr(MlflowClient, method)
    killed: list[float] = []

    def wrapper(self, name, alias_name, *args, **kwargs):
        result = real(self, name, alias_name, *args, **kwargs)
        if name == model_name and alias_name == alias and not killed:
            server.kill()
            killed.append(time.monotonic())
        return result

    monkeypatch.setattr(MlflowClient, method, wrapper)
    return killed


def state(client, name: str) -> tuple[dict, list[dict], dict, list]:
    from mlops_airflow.registry.ledger import ledger_from_tags

    rm = client.get_registered_model(name)
    locks = client.search_registered_models(f"name LIKE '{name}.promotion-lock%'")
    return dict(rm.aliases), ledger_from_tags(rm.tags), dict(rm.tags), locks


def assert_one_line(err: RegistryError, uri: str, task: str) -> str:
    message = str(err)
    assert "\n" not in message, message
    for needle in (f"MLflow server {uri} stopped answering during {task}", "Airflow retries this task",
                   "without a duplicate", "check that the MLflow server is up"):
        assert needle in message, (needle, message)
    assert err.cause.startswith("registry unreachable") and err.next_step
    return message


@pytest.mark.integration
@needs_training_env
def test_registry_outage_mid_register_and_mid_promote_then_the_retries_complete_once(server, monkeypatch, capsys):
    from mlops_airflow.hooks.mlflow_registry import MlflowHook
    from mlops_airflow.operators.promotion import PromoteModelOperator
    from mlops_airflow.registry.ledger import LEDGER_PENDING

    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_conn_json(server.uri))
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", raising=False)
    models = trained(server.uri)
    client = MlflowHook().get_client()
    name = unique("outage")
    timings: dict[str, float] = {}

    # 1. register_model: the server dies right after the first-champion move, before its ledger append.
    with monkeypatch.context() as m:
        killed = kill_after(m, server, "set_registered_model_alias", name, "champion")
        with pytest.raises(RegistryError) as failed:
            register(name, models["good"], min_metrics={"val_auc": 0.6}, run_id="ct-day-1", try_number=1)
    timings["register_fails_s"] = time.monotonic() - killed[0]
    message = assert_one_line(failed.value, server.uri, f"register_model of {name}")
    assert "done before it stopped: created v1" in message
    assert timings["register_fails_s"] < 60, f"{timings}: MLflow's own retries (~4 min) were not cut short"
    assert os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES") is None  # the guard restored the environment

    # While the server is down, a try fails at its start, before any write.
    started = time.monotonic()
    with pytest.raises(RegistryError, match=rf"MLflow server {server.uri} .* is unreachable .*nothing was changed"):
        register(name, models["good"], min_metrics={"val_auc": 0.6}, run_id="ct-day-1", try_number=2)
    timings["register_down_at_start_s"] = time.monotonic() - started
    assert timings["register_down_at_start_s"] < 30

    timings["restart_1_s"] = server.start()
    started = time.monotonic()
    retried = register(name, models["good"], min_metrics={"val_auc": 0.6}, run_id="ct-day-1", try_number=3)
    timings["register_retry_s"] = time.monotonic() - started
    assert (retried["version"], retried["aliases"], retried["adopted_existing"]) == ("1", ["champion"], False)
    assert [v.version for v in client.search_model_versions(f"name = '{name}'")] == ["1"]
    aliases, ledger, tags, locks = state(client, name)
    assert aliases == {"champion": "1"} and LEDGER_PENDING not in tags and locks == []
    assert [(e["alias"], e["version"], e["action"]) for e in ledger] == [("champion", "1", "first-champion")]
    assert ledger[0]["airflow"]["try_number"] == "1" and "stopped after the alias move" in ledger[0]["note"]
    events = [e.extra for e in retried["_context"]["outlet_events"].values()]
    assert [(e["changed"], e["seq"]) for e in events] == [(True, 1)]  # the killed try announced nothing

    challenger = register(name, models["weak"], min_metrics={"val_auc": 0.5}, run_id="ct-day-2")
    assert (challenger["version"], challenger["aliases"]) == ("2", ["challenger"])

    # 2. promote_model: the server dies right after champion moved to v2, before the ledger append.
    def promote(try_number: int) -> dict:
        ctx = make_context("promote_model", run_id="ct-day-2", try_number=try_number)
        op = PromoteModelOperator(task_id="promote_model", model_name=name, version={"version": "2"},
                                  approval=APPROVAL, verdict={**VERDICT, "version": "2"})
        return {**op.execute(ctx), "_events": [e.extra for e in ctx["outlet_events"].values()]}

    with monkeypatch.context() as m:
        killed = kill_after(m, server, "set_registered_model_alias", name, "champion")
        with pytest.raises(RegistryError) as failed:
            promote(1)
    timings["promote_fails_s"] = time.monotonic() - killed[0]
    assert_one_line(failed.value, server.uri, f"promote of {name}@champion")
    assert timings["promote_fails_s"] < 90, timings

    timings["restart_2_s"] = server.start()
    started = time.monotonic()
    promoted = promote(2)
    timings["promote_retry_s"] = time.monotonic() - started  # the dead try's lease (30 s) runs out first
    assert (promoted["changed"], promoted["previous_version"], promoted["ledger_seq"]) == (True, "1", 3)
    aliases, ledger, tags, locks = state(client, name)
    assert aliases == {"champion": "2"} and LEDGER_PENDING not in tags and locks == []
    assert [(e["seq"], e["alias"], e["version"], e["action"]) for e in ledger] == [
        (1, "champion", "1", "first-champion"), (2, "challenger", "2", "candidate"), (3, "champion", "2", "promote"),
        (4, "challenger", "2", "cleared")]
    assert [(e["changed"], e["seq"]) for e in promoted["_events"]] == [(True, 3)]
    assert sorted(v.version for v in client.search_model_versions(f"name = '{name}'")) == ["1", "2"]
    with capsys.disabled():
        print(f"\nregistry outage timings: {({k: round(v, 1) for k, v in timings.items()})}")


@pytest.mark.unit
def test_the_guard_names_the_uri_and_keeps_an_explicit_retry_setting(monkeypatch):
    """A real refused connection (nothing listens on the port), with retries off by the environment (which wins)."""
    from mlops_airflow.hooks.mlflow_registry import MlflowHook
    from mlops_airflow.registry.versions import outage_cause, registry_outage_guard

    uri = f"http://127.0.0.1:{free_port()}"
    hook = MlflowHook(tracking_uri=uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    started = time.monotonic()
    with pytest.raises(RegistryError) as failed, registry_outage_guard(hook, "register_model of m", "it reuses v3") \
            as done:
        done.append("created v3")
        hook.get_client().get_registered_model("m")
    assert time.monotonic() - started < 20
    message = str(failed.value)
    assert message.startswith(f"MLflow server {uri} stopped answering during register_model of m (connection refused)")
    assert "done before it stopped: created v3" in message and "(it reuses v3)" in message and "\n" not in message
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"  # an explicit setting is left alone
    assert failed.value.details["tracking_uri"] == uri

    with pytest.raises(KeyError), registry_outage_guard(hook, "t", "r"):  # other errors pass unchanged
        raise KeyError("not an outage")
    assert outage_cause(RegistryError("x")) is None and outage_cause(ConnectionResetError()) == "ConnectionResetError"
