"""Process metrics, declared once; the management listener serves them on /metrics."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector


class Tally(Collector):
    """A labelled counter for the per-message path: plain integers, read at scrape time.

    prometheus_client's counters take a lock on every increment; the event loop
    is the only writer here, so the lock buys nothing and costs a few percent.
    """

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...]) -> None:
        self._name, self._documentation, self._labels = name, documentation, labels
        self.counts: defaultdict[tuple[str, ...], int] = defaultdict(int)
        REGISTRY.register(self)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labels)
        for labels, value in list(self.counts.items()):
            family.add_metric(labels, value)
        yield family


MESSAGES = Tally("gateway_messages", "Device messages accepted", ("protocol", "kind"))
DATAPOINTS = Tally("gateway_datapoints", "Data points accepted", ("protocol",))
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
LIMIT_REFUSALS = Counter(
    "gateway_limit_refusals_total", "Connections and requests refused by an abuse limit", ["protocol", "limit"]
)
AUTH_FAILURES = Counter("gateway_auth_failures_total", "Device authentication failures", ["protocol"])
PROVISIONING = Counter("gateway_provisioning_total", "Claim provisioning outcomes", ["protocol", "status"])
AUTO_REGISTRATION = Counter(
    "gateway_auto_registration_total", "Certificate auto-registration decisions, by outcome and reason",
    ["outcome", "reason"],
)
