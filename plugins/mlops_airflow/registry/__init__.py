"""The model registry without Airflow operators: version checks (``versions``)."""
