"""Data forwarding's metrics, per action: delivered, retried, failed (dead-lettered), filtered out by
the rule's ``where``, the backlog and its lag (the age of the oldest undelivered notification).

The backlog and lag are measured from the database, the same for every process that measures
them: with workers, the scrape shows the highest of the live ones (``livemax``), so that a
forwarder process killed and restarted leaves no stale figure behind (its files are deleted
when it is marked dead)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DELIVERED = Counter("gateway_forwarding_delivered_total", "Notifications delivered", ["action"])
RETRIED = Counter("gateway_forwarding_retried_total", "Deliveries failed and retried later", ["action"])
FAILED = Counter("gateway_forwarding_failed_total", "Notifications dead-lettered, by why (attempts, age, backlog)",
                 ["action", "reason"])
FILTERED = Counter("gateway_forwarding_filtered_total", "Notifications the rule's where left out", ["action"])
BACKLOG = Gauge("gateway_forwarding_backlog", "Notifications not delivered yet", ["action"], multiprocess_mode="livemax")
LAG = Gauge("gateway_forwarding_lag_seconds", "Age of the oldest notification not delivered yet", ["action"],
            multiprocess_mode="livemax")
