"""Process metrics, declared once; the management listener serves them on /metrics.

With several worker processes (``serve --workers N``) every worker writes its
metrics to files in PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess
mode, chosen by that variable at import) and a scrape, whichever worker it
lands on, reads them all: counters and histograms summed, gauges summed over
live workers or shown per worker (``pid`` label). What is not a file-backed
metric is written into one by :func:`flush`: tallies (their increments since the
last flush) and sampled gauges. Each worker flushes every second and before
serving a scrape, so other workers' tallies are at most a second old.
"""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict
from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR" in os.environ
FLUSH_SECONDS = 1.0

_tallies: list[Tally] = []
_sampled: list[tuple[Gauge, Callable[[], float]]] = []


class Tally(Collector):
    """A labelled counter for the per-message path: plain integers, read at scrape time.

    prometheus_client's counters take a lock on every increment; the event loop
    is the only writer here, so the lock buys nothing and costs a few percent.
    In multiprocess mode the counts are flushed into a file-backed counter.
    """

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...]) -> None:
        self._name, self._documentation, self._labels = name, documentation, labels
        self.counts: defaultdict[tuple[str, ...], int] = defaultdict(int)
        self._flushed: dict[tuple[str, ...], int] = {}
        self._counter: Counter | None = None
        if MULTIPROCESS:
            self._counter = Counter(name, documentation, labels)
            _tallies.append(self)
        else:
            REGISTRY.register(self)

    def flush(self) -> None:
        assert self._counter is not None
        for labels, value in list(self.counts.items()):
            delta = value - self._flushed.get(labels, 0)
            if delta:
                self._counter.labels(*labels).inc(delta)
                self._flushed[labels] = value

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
BATCH_WAIT_SECONDS = Histogram(
    "gateway_batch_wait_seconds",
    "Age of a batch's oldest message when a writer takes it: the batch age, and any wait for a free writer",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BATCH_ROWS = Histogram(
    "gateway_batch_rows",
    "Rows in one written batch",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
)
QUEUE_DEPTH = Gauge("gateway_ingest_queue_rows", "Rows queued or being written", multiprocess_mode="livesum")
INGEST_REJECTED = Counter("gateway_ingest_rejected_total", "Messages refused because the queue was full")
DB_ERRORS = Counter("gateway_database_errors_total", "Failed database writes (each retry counts)")
BAD_REQUESTS = Counter("gateway_bad_requests_total", "Requests refused as malformed or oversize", ["protocol", "reason"])
LIMIT_REFUSALS = Counter(
    "gateway_limit_refusals_total", "Connections and requests refused by an abuse limit", ["protocol", "limit"]
)
TLS_HANDSHAKES = Counter(
    "gateway_tls_handshakes_total", "TLS handshakes completed, full or resumed from a session ticket",
    ["protocol", "resumed"],
)
TLS_REFUSALS = Counter(
    "gateway_tls_handshake_failures_total",
    "TLS handshakes that failed, by OpenSSL's reason (an expired or unknown client certificate, an old protocol...)",
    ["reason"],
)
AUTH_FAILURES = Counter("gateway_auth_failures_total", "Device authentication failures", ["protocol"])
PROVISIONING = Counter(
    "gateway_provisioning_total", "Claim provisioning outcomes", ["protocol", "status", "reason"]
)
AUTO_REGISTRATION = Counter(
    "gateway_auto_registration_total", "Certificate auto-registration decisions, by outcome and reason",
    ["outcome", "reason"],
)
# Per worker with workers (the pid label), so a scrape shows where devices are connected.
CONNECTIONS = Gauge("gateway_connections", "Open device connections", ["protocol"], multiprocess_mode="all")
# Summed over workers: a device that made requests to two workers counts on both.
DEVICES_ONLINE = Gauge(
    "gateway_devices_online", "Devices online through this process: connected, or within the inactivity "
    "timeout of a request", ["protocol"], multiprocess_mode="livesum",
)
LIVE_CONNECTIONS = Gauge("gateway_live_connections", "Open live-feed WebSocket connections", multiprocess_mode="livesum")
LIVE_SENT = Counter("gateway_live_updates_sent_total", "Live-feed updates sent to WebSocket subscribers")
LIVE_DROPPED = Counter(
    "gateway_live_updates_dropped_total", "Live-feed updates dropped: the oldest of a slow subscriber's full buffer, "
    "or of a bus that could not keep up")
LIVE_LATENCY = Histogram(
    "gateway_live_delivery_seconds", "From a batch's commit to its update's being sent to a WebSocket subscriber",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
# On a broadcasting bus (PostgreSQL NOTIFY) most events are for other processes (for_here="no");
# on NATS they are for the process that receives them.
# Per worker (the pid label): which processes are cut off from NATS.
DOWNLINK_BUS_CONNECTED = Gauge(
    "gateway_downlink_bus_connected", "1 while the NATS downlink bus is connected, 0 while downlink calls are 503 "
    "(absent on the PostgreSQL bus)", multiprocess_mode="all")
DOWNLINK_BUS_EVENTS = Counter(
    "gateway_downlink_bus_events_total", "Downlink events this process received from the bus, by whether they "
    "concerned it (a device it holds, a call it waits for)", ["for_here"])
RETENTION_DROPPED = Counter("gateway_retention_partitions_dropped_total", "Telemetry partitions dropped by retention")
RETENTION_DELETED = Counter(
    "gateway_retention_rows_deleted_total", "Rows deleted by retention", ["table"]
)


class CountedSet(set):  # type: ignore[type-arg]
    """A front-end's open connections, their number kept in the connections gauge."""

    def __init__(self, protocol: str) -> None:
        super().__init__()
        self._gauge = CONNECTIONS.labels(protocol)

    def add(self, item: object) -> None:
        if item not in self:
            super().add(item)
            self._gauge.inc()

    def discard(self, item: object) -> None:
        if item in self:
            super().discard(item)
            self._gauge.dec()


def sample(gauge: Gauge, read: Callable[[], float]) -> None:
    """A gauge whose value is read when needed: at scrape time, or at each flush with workers."""
    if MULTIPROCESS:
        _sampled.append((gauge, read))
    else:
        gauge.set_function(read)


def flush() -> None:
    """Write this worker's tallies and sampled gauges into the shared files (multiprocess mode)."""
    for tally in _tallies:
        tally.flush()
    for gauge, read in _sampled:
        gauge.set(read())


async def flush_every_second() -> None:
    """A process under the supervisor: its tallies into the shared files, every FLUSH_SECONDS until
    cancelled (a scrape reads the files, not this process)."""
    while True:
        await asyncio.sleep(FLUSH_SECONDS)
        flush()


def exposition() -> bytes:
    """What /metrics answers: this process's metrics, or every worker's in multiprocess mode."""
    if not MULTIPROCESS:
        return generate_latest()
    from prometheus_client import multiprocess

    flush()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)
