#!/bin/bash
# airflow-init of docker-compose.yaml: everything the stack needs before Airflow starts. Idempotent: a
# second `docker compose up` re-runs it and changes nothing that is already in place.
#
#   1. Airflow metadata schema (airflow db migrate, PostgreSQL)
#   2. the admin's password for the simple auth manager (from AIRFLOW_ADMIN_PASSWORD, never printed)
#   3. the DVC data repository with its remote (S3 bucket on MinIO) and the Feast repository inside it
#      (feature definitions versioned with the data, as in `make demo`); with MLOPS_DATA_REPO_URL (the Celery
#      variant: no shared working copy) it is built in a temporary folder and pushed to that git URL
#   4. feast apply with the production config (Redis online store, SQL registry on PostgreSQL); in a
#      real deployment this step belongs to the CI/CD of the feature definitions (feast#2905)
#   5. ownership of the shared volumes for the Airflow user (when run as root, as in compose)
#
# tests/integration/test_scheduler_run.py runs this script too (paths and remote from the environment).
set -euo pipefail

AIRFLOW_UID=${AIRFLOW_UID:-50000}
AIRFLOW_HOME=${AIRFLOW_HOME:-/opt/airflow}
DATA_ROOT=${AIRFLOW__MLOPS__DATA_ROOT:-/opt/mlops/data}
case "$DATA_ROOT" in  # [mlops] data_root is a URI or a path; an object store needs no folder here
  file://*) DATA_ROOT=${DATA_ROOT#file://} ;;
  *://*) DATA_ROOT="" ;;
esac
REPO_URL=${MLOPS_DATA_REPO_URL:-}
if [ -n "$REPO_URL" ]; then
  REPO=$(mktemp -d -t mlops-data-repo.XXXXXX)
  trap 'rm -rf "$REPO"' EXIT
else
  REPO=${MLOPS_DATA_REPO:-/opt/mlops/data_repo}
fi
FEAST_SRC=${MLOPS_FEAST_SRC:-${AIRFLOW__MLOPS__INCLUDE_DIR:-/opt/airflow/include}/feast_repo}
FEAST_YAML=${MLOPS_FEAST_YAML:-feature_store.redis.yaml}
PASSWORDS=${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:-$AIRFLOW_HOME/auth/passwords.json}
REMOTE_URL=${DVC_REMOTE_URL:-s3://${DVC_BUCKET:-dvc-store}/data}
GIT=(git -c user.name=airflow-mlops -c user.email=airflow-mlops@localhost)
log() { echo "[airflow-init] $*"; }

mkdir -p ${DATA_ROOT:+"$DATA_ROOT"} "$REPO" "$AIRFLOW_HOME/logs" "$(dirname "$PASSWORDS")"

log "airflow db migrate"
airflow db migrate

log "admin user ${AIRFLOW_ADMIN_USER:-admin} (password from AIRFLOW_ADMIN_PASSWORD)"
MLOPS_PASSWORDS_FILE="$PASSWORDS" python - <<'PY'
import json, os
from pathlib import Path

path = Path(os.environ["MLOPS_PASSWORDS_FILE"])
wanted = {os.environ.get("AIRFLOW_ADMIN_USER", "admin"): os.environ["AIRFLOW_ADMIN_PASSWORD"]}
current = json.loads(path.read_text()) if path.exists() and path.read_text().strip() else {}
if current != wanted:
    path.write_text(json.dumps(wanted) + "\n")
path.chmod(0o600)
PY

cd "$REPO"
if [ -n "$REPO_URL" ]; then
  if "${GIT[@]}" ls-remote --exit-code --heads "$REPO_URL" main >/dev/null 2>&1; then
    log "cloning the DVC data repository from $REPO_URL"
    "${GIT[@]}" clone -q --branch main "$REPO_URL" .
  else
    log "the data repository at $REPO_URL is empty: creating it"
    "${GIT[@]}" init -q -b main
    "${GIT[@]}" remote add origin "$REPO_URL"
  fi
fi
if [ ! -d .dvc ]; then
  log "creating the DVC data repository in $REPO (default remote 'storage' -> $REMOTE_URL)"
  "${GIT[@]}" init -q -b main
  python -m dvc init -q
  python -m dvc config core.autostage false
  python -m dvc remote add -d storage "$REMOTE_URL"
  if [[ "$REMOTE_URL" == s3://* && -n "${MLOPS_S3_ENDPOINT_URL:-}" ]]; then
    # In the repository config (committed): the connection's remote_url override keeps the endpoint.
    python -m dvc remote modify storage endpointurl "$MLOPS_S3_ENDPOINT_URL"
  fi
fi
changed=0
for name in features.py feature_store.yaml "$FEAST_YAML" .feastignore; do
  if [ -f "$FEAST_SRC/$name" ] && ! cmp -s "$FEAST_SRC/$name" "$name"; then
    cp "$FEAST_SRC/$name" "$name"
    changed=1
  fi
done
if ! grep -qx '.feast/' .gitignore 2>/dev/null; then
  printf '.feast/\n__pycache__/\n' > .gitignore
  changed=1
fi
if [ "$changed" = 1 ] || ! "${GIT[@]}" rev-parse -q --verify HEAD >/dev/null; then
  "${GIT[@]}" add -A .dvc .gitignore features.py feature_store*.yaml
  if [ -f .feastignore ]; then "${GIT[@]}" add .feastignore; fi
  "${GIT[@]}" commit -q -m "feature definitions from include/feast_repo"
  log "feature definitions committed to the data repository"
fi

if [ -n "$REPO_URL" ] && [ "$("${GIT[@]}" rev-parse HEAD)" != "$("${GIT[@]}" ls-remote "$REPO_URL" refs/heads/main | cut -f1)" ]; then
  log "pushing the data repository to $REPO_URL"
  "${GIT[@]}" push -q origin HEAD:refs/heads/main
fi

log "feast apply ($FEAST_YAML)"
# The CLI resolves --feature-store-yaml against the working directory, not --chdir: pass it absolute.
python -m feast.cli.cli --chdir "$REPO" --feature-store-yaml "$REPO/$FEAST_YAML" apply

if [ "$(id -u)" = 0 ] && [ "$AIRFLOW_UID" != 0 ]; then
  owned=(${DATA_ROOT:+"$DATA_ROOT"} "$AIRFLOW_HOME/logs" "$(dirname "$PASSWORDS")")
  if [ -z "$REPO_URL" ]; then owned+=("$REPO"); fi
  chown -R "${AIRFLOW_UID}:0" "${owned[@]}"
  chmod -R g+rwX "${owned[@]}"
fi
log "done"
