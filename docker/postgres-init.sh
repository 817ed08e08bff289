#!/bin/bash
# Runs once, when the postgres data volume is created (docker-entrypoint-initdb.d): one role and one
# database each for Airflow's metadata, MLflow's backend store and Feast's SQL registry. The passwords
# come from the container environment (docker-compose.yaml <- .env); psql variables quote them safely.
set -euo pipefail

create_db() {
  local name=$1 password=$2
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
       -v name="$name" -v password="$password" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'name', :'password')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'name') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'name', :'name')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'name') \gexec
SQL
}

create_db airflow "${AIRFLOW_DB_PASSWORD:?}"
create_db mlflow "${MLFLOW_DB_PASSWORD:?}"
create_db feast "${FEAST_DB_PASSWORD:?}"
echo "databases airflow, mlflow, feast ready"
