-- One Postgres, two databases: Prefect's and MLflow's.
CREATE DATABASE prefect OWNER xib;
CREATE DATABASE mlflow OWNER xib;
