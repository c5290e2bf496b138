"""Process metrics, declared once; the HTTP front-end serves them on /metrics."""

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter("gateway_messages_total", "Device messages accepted", ["protocol", "kind"])
DATAPOINTS = Counter("gateway_datapoints_total", "Data points accepted", ["protocol"])
ROWS_STORED = Counter("gateway_rows_stored_total", "Rows committed to PostgreSQL")
BATCH_SECONDS = Histogram(
    "gateway_batch_write_seconds",
    "Time to write one batch, retries included",
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
QUEUE_DEPTH = Gauge("gateway_ingest_queue_rows", "Rows queued or being written")
INGEST_REJECTED = Counter("gateway_ingest_rejected_total", "Messages refused because the queue was full")
DB_ERRORS = Counter("gateway_database_errors_total", "Failed database writes (each retry counts)")
BAD_REQUESTS = Counter("gateway_bad_requests_total", "Requests refused as malformed or oversize", ["protocol", "reason"])
AUTH_FAILURES = Counter("gateway_auth_failures_total", "Device authentication failures", ["protocol"])
PROVISIONING = Counter("gateway_provisioning_total", "Claim provisioning outcomes", ["protocol", "status"])
