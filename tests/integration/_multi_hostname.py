"""``[core] hostname_callable`` of the multi-worker test's Celery workers: two workers on one machine would
otherwise record the same host name in ``task_instance.hostname``; each has its own (``MLOPS_WORKER_NAME``)."""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return os.environ.get("MLOPS_WORKER_NAME") or socket.getfqdn()
