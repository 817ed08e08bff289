"""Feature definitions of the reference churn model.

This file lives in the data repository next to the DVC-tracked data it reads, so a git revision
of that repository pins both the data version and the feature logic that trained a model.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64

customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)

customer_events_source = FileSource(
    name="customer_events_source",
    path="data/customer_events",  # a directory of daily Parquet files, tracked by DVC
    timestamp_field="event_timestamp",
)

customer_activity = FeatureView(
    name="customer_activity",
    entities=[customer],
    ttl=timedelta(days=35),
    schema=[
        Field(name="tenure_months", dtype=Float64),
        Field(name="monthly_charges", dtype=Float64),
        Field(name="support_calls", dtype=Int64),
        Field(name="usage_hours", dtype=Float64),
        Field(name="payment_delay_days", dtype=Float64),
    ],
    source=customer_events_source,
    online=True,
    tags={"owner": "ml-platform", "model": "churn_classifier"},
)

churn_model_v1 = FeatureService(name="churn_model_v1", features=[customer_activity])
