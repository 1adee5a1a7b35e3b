#!/bin/sh
# Start the MLflow server with basic authentication. The admin password and the Flask secret come
# from the environment; the auth config is written at start into a private temp file, never committed.
set -eu
: "${MLFLOW_AUTH_ADMIN_PASSWORD:?set in .env}" "${MLFLOW_FLASK_SERVER_SECRET_KEY:?set in .env}" "${POSTGRES_PASSWORD:?}"
auth_ini=$(mktemp)
chmod 600 "$auth_ini"
cat > "$auth_ini" <<INI
[mlflow]
default_permission = READ
database_uri = postgresql://xib:${POSTGRES_PASSWORD}@postgres:5432/mlflow
admin_username = admin
admin_password = ${MLFLOW_AUTH_ADMIN_PASSWORD}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
export MLFLOW_AUTH_CONFIG_PATH="$auth_ini"
exec mlflow server --host 0.0.0.0 --port "${MLFLOW_PORT:-5000}" --workers 2 \
  --backend-store-uri "postgresql://xib:${POSTGRES_PASSWORD}@postgres:5432/mlflow" \
  --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-s3://xib-mlflow/artifacts}" \
  --app-name basic-auth
