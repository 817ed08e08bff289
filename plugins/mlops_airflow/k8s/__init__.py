"""Kubernetes helpers of the GPU training backend: strict pod validation and failure diagnosis.

Nothing here imports ``kubernetes`` at module level (DAG files import this package cheaply); the
functions that need the client's models import them when called.
"""
