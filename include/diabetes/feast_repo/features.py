"""Feature definitions of the diabetes regression example (include/diabetes).

This repository lives in the data repository at ``feature_repos/diabetes/``, next to the DVC-tracked data it reads
(``data/diabetes/``, two folders up), so a git revision of that repository pins both the data version and the
feature logic that trained a model.
"""

from datetime import timedelta

# A Feast definitions file: `feast apply` imports it, so feast at module level is the point (TID253 is for DAGs).
from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64

patient = Entity(name="patient", join_keys=["patient_id"], value_type=ValueType.INT64)

diabetes_source = FileSource(
    name="diabetes_source",
    path="../../data/diabetes",  # a directory of daily Parquet files, tracked by DVC; relative to this repository
    timestamp_field="event_timestamp",
)

patient_measurements = FeatureView(
    name="patient_measurements",
    entities=[patient],
    ttl=timedelta(days=35),
    schema=[
        Field(name="age", dtype=Float64),
        Field(name="sex", dtype=Float64),
        Field(name="bmi", dtype=Float64),
        Field(name="bp", dtype=Float64),
        Field(name="s1", dtype=Float64),
        Field(name="s2", dtype=Float64),
        Field(name="s3", dtype=Float64),
        Field(name="s4", dtype=Float64),
        Field(name="s5", dtype=Float64),
        Field(name="s6", dtype=Float64),
    ],
    source=diabetes_source,
    online=True,
    tags={"owner": "ml-platform", "model": "diabetes_regressor"},
)

diabetes_v1 = FeatureService(name="diabetes_v1", features=[patient_measurements])
