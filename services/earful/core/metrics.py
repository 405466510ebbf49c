"""Prometheus metrics shared by every service.

One counter per failure kind (label ``kind`` = the error class's ``kind``), so a dashboard can
tell decode errors from broker outages without parsing logs. Service-specific metrics are
declared next to the code that updates them, on the same default registry.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

MESSAGES = Counter(
    "earful_messages_total", "Records a service finished with, by topic and outcome.", ["service", "topic", "outcome"]
)
ERRORS = Counter("earful_errors_total", "Failures by kind (see earful.core.errors).", ["service", "kind"])
DEAD_LETTERS = Counter("earful_dead_letters_total", "Records sent to the DLQ, by failure kind.", ["service", "kind"])
BATCH_SECONDS = Histogram(
    "earful_batch_seconds", "Time to process one batch, by stage.", ["service", "stage"], buckets=LATENCY_BUCKETS
)
PIPELINE_LATENCY = Histogram(
    "earful_pipeline_latency_seconds",
    "From ingest acceptance (received_at) to this service finishing the record.",
    ["service"],
    buckets=LATENCY_BUCKETS,
)

# The Faust services (enrichment, alerting) report lag through Faust's own sensors
# (earful_<service>_topic_partition_end_offset minus ..._offset_commited); the aiokafka consumers
# report it here, so every consumer group's lag can be alerted on (deploy/k8s/components/monitoring).
CONSUMER_LAG = Gauge(
    "earful_consumer_lag_records",
    "Records in an assigned partition not yet consumed (high watermark minus position).",
    ["service", "topic", "partition"],
)


def render_latest() -> tuple[bytes, str]:
    """The exposition text of the default registry and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
