"""OTA figures for /metrics (fleetgate.core.metrics serves every registered metric)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from fleetgate.core.metrics import Tally

CHUNKS = Tally("gateway_ota_chunks", "OTA package chunks sent to devices", ("type",))
CHUNK_BYTES = Tally("gateway_ota_chunk_bytes", "OTA package bytes sent to devices", ("type",))
REFUSALS = Counter(
    "gateway_ota_refusals_total", "OTA chunk requests refused, by reason (rate, busy, chunk, too_large, "
    "none_assigned, mismatch)", ["type", "reason"],
)
STATE_REPORTS = Counter(
    "gateway_ota_state_reports_total", "fw_state and sw_state reports from devices, by state", ["type", "state"]
)
# The same figure in every process, read from the database: the highest of the live workers' values.
DEVICES = Gauge(
    "gateway_ota_devices", "Devices by the OTA state (fw_state, sw_state) they last reported, from the stored "
    "progress of the whole gateway, refreshed every ota_metrics_interval_seconds", ["type", "state"],
    multiprocess_mode="livemax",
)
IN_FLIGHT = Gauge("gateway_ota_chunks_in_flight", "OTA chunks being read or waiting their turn",
                  multiprocess_mode="livesum")
