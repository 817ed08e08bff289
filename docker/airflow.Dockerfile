# syntax=docker/dockerfile:1.7
# The image of the docker-compose stack: Airflow 3 + this pack, exactly as uv.lock pins them (the same
# environment `make install` builds into .venv), plus an optional CPU training environment for
# [mlops] training_backend=local. The MLflow service runs this image too (mlflow, psycopg2 and the S3
# client come from the same lock).
#
#   docker compose build
#   docker build -f docker/airflow.Dockerfile -t airflow-provider-mlops:local .          # from the repo root
#   docker build -f docker/airflow.Dockerfile --build-arg TRAINING_ENV=none -t ... .      # without torch
#
# airflow.Dockerfile.dockerignore (BuildKit, next to this file) keeps .venv, .local etc. out of the context.
# Pin the base image by digest in production (python:3.11-slim-bookworm@sha256:...).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------- build
FROM ${PYTHON_IMAGE} AS build
# Same uv as the Makefile (UV_VERSION), from PyPI.
ARG UV_VERSION=0.13.8
# cpu: /opt/train-venv from include/training/requirements.txt (torch CPU build); none: no training env
# (training_backend=kubernetes runs the GPU image of include/training/Dockerfile instead).
ARG TRAINING_ENV=cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_NO_CACHE=1
RUN python -m pip install "uv==${UV_VERSION}"
WORKDIR /src

# 1. Third-party dependencies, exactly the lock (all extras: redis, postgres, ...; no dev group), hash-checked.
COPY pyproject.toml uv.lock README.md ./
RUN uv export --frozen --all-extras --no-dev --no-emit-project --format requirements-txt -o /tmp/requirements.txt \
 && uv venv --python /usr/local/bin/python3.11 /opt/airflow-venv \
 && uv pip install --python /opt/airflow-venv/bin/python --require-hashes --no-deps -r /tmp/requirements.txt

# 2. The pack itself (a wheel built from this checkout; its dependencies are all in step 1).
COPY plugins/mlops_airflow plugins/mlops_airflow
RUN uv build --wheel --out-dir /tmp/dist . \
 && uv pip install --python /opt/airflow-venv/bin/python --no-deps /tmp/dist/*.whl \
 && /opt/airflow-venv/bin/python -c "import mlops_airflow.ui.plugin, airflow, mlflow, feast, dvc, psycopg2, redis"

# 3. The training environment of the local backend (separate from Airflow's: torch is never in it).
COPY include/training/requirements.txt /tmp/train-requirements.txt
RUN mkdir -p /opt/train-venv \
 && if [ "$TRAINING_ENV" = "cpu" ]; then \
      uv venv --python /usr/local/bin/python3.11 /opt/train-venv \
      && uv pip install --python /opt/train-venv/bin/python --index-strategy unsafe-best-match \
           --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple \
           -r /tmp/train-requirements.txt \
      && /opt/train-venv/bin/python -c "import torch, mlflow; assert not torch.version.cuda, torch.__version__"; \
    fi

# -------------------------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE}
# git: DVC and the reproducibility record; curl: health checks; tini: signal handling for PID 1.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git curl tini ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# The official image's convention: uid 50000, group 0, group-writable home, so any AIRFLOW_UID works.
RUN useradd --uid 50000 --gid 0 --create-home --home-dir /home/airflow --shell /bin/bash airflow \
 && mkdir -p /opt/airflow/dags /opt/airflow/logs /opt/airflow/auth /opt/mlops \
 && chown -R 50000:0 /opt/airflow /opt/mlops /home/airflow \
 && chmod -R g+rwX /opt/airflow /opt/mlops /home/airflow

COPY --from=build /opt/airflow-venv /opt/airflow-venv
COPY --from=build /opt/train-venv /opt/train-venv

ENV PATH=/opt/airflow-venv/bin:$PATH \
    AIRFLOW_HOME=/opt/airflow \
    PYTHONUNBUFFERED=1 \
    DVC_NO_ANALYTICS=1 \
    HOME=/home/airflow \
    MLFLOW_UV_AUTO_DETECT=false

# Reference DAGs, include/ (training entrypoint, Feast repo, GX suite), the lock (its hash goes into every
# reproducibility record: [mlops] project_root=/opt/airflow) and the init step. docker-compose.yaml mounts
# dags/ and include/ over these for development; a production deployment uses the baked-in copies.
COPY --chown=50000:0 dags /opt/airflow/dags
COPY --chown=50000:0 include /opt/airflow/include
COPY --chown=50000:0 uv.lock /opt/airflow/uv.lock
COPY --chown=50000:0 docker/init_mlops.sh /opt/airflow/docker/init_mlops.sh

USER 50000
WORKDIR /opt/airflow
EXPOSE 8080
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["airflow", "version"]
