"""Monitoring internals that are not operators: the fast drift engine (``drift_engine``) and the
retraining guard rails (``retrain``).

Nothing here imports Airflow, numpy, scipy or pyarrow at module level: the drift engine runs in a plain
Python process too (the benchmark measures it there), and DAG files that import an operator stay light.
"""
