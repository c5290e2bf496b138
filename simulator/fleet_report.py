"""What ``iot-gateway simulate`` reports: a frozen report, its table, its JSON and its plot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleetgate.simulator.stats import LoadResult
from fleetgate.simulator.timeline import per_second


class PlotUnavailable(Exception):
    """--plot needs matplotlib (the ``plot`` extra)."""


@dataclass(frozen=True, slots=True)
class FleetReport:
    url: str
    protocol: str
    devices: int
    mode: str  # "max" (as fast as acknowledgements allow) or "rate"
    qos: int | None
    result: LoadResult
    provisioned: int = 0
    provision_s: float = 0.0
    provision_errors: tuple[tuple[str, int], ...] = ()
    connections: int | None = None  # expected: one a device, but CoAP devices may share UDP sockets

    @property
    def errors(self) -> dict[str, int]:
        errors = dict(self.result.errors)
        for kind, n in self.provision_errors:
            errors[f"provisioning: {kind}"] = errors.get(f"provisioning: {kind}", 0) + n
        return errors

    @property
    def ok(self) -> bool:
        expected = self.devices if self.connections is None else self.connections
        return not self.errors and self.result.connections == expected

    def to_json(self) -> dict[str, Any]:
        r = self.result
        return {
            "url": self.url, "protocol": self.protocol, "devices": self.devices, "mode": self.mode, "qos": self.qos,
            "connected": r.connections,
            "connect_s": round(r.connect_s, 3),
            "connects_per_s": round(r.connections / r.connect_s, 1) if r.connect_s > 0 else None,
            "provisioned": self.provisioned,
            "provision_s": round(self.provision_s, 3),
            "provisions_per_s": round(self.provisioned / self.provision_s, 1) if self.provision_s > 0 else None,
            "messages": r.ok,
            "window_s": round(r.window_s, 3),
            "messages_per_s": round(r.requests_per_s, 1),
            "datapoints_per_message": r.datapoints_per_request,
            "datapoints_per_s": round(r.datapoints_per_s, 1),
            "target_rate": r.target_rate,
            "latency_ms": r.latency.to_json(),
            "errors": self.errors,
            "error_count": sum(self.errors.values()),
            "generator_processes": r.processes,
            "generator_cpu_share": round(r.generator_cpu_share, 3),
            "timeline": per_second(r.timeline),
        }


def format_report(report: FleetReport) -> str:
    r, lat = report.result, report.result.latency
    what = "as fast as acknowledgements allow" if report.mode == "max" else f"{r.target_rate:,.0f} messages/s"
    qos = f", QoS {report.qos}" if report.qos is not None else ""
    lines = [
        f"iot-gateway simulate: {report.devices} devices on {report.url}{qos}, {what}",
        "",
        f"messages        {r.ok:,} in {r.window_s:.1f} s: {r.requests_per_s:,.0f}/s, "
        f"{r.datapoints_per_s:,.0f} data points/s ({r.datapoints_per_request} a message)",
        f"ack latency     p50 {lat.p50_ms:.1f} ms, p95 {lat.p95_ms:.1f} ms, p99 {lat.p99_ms:.1f} ms, "
        f"max {lat.max_ms:.1f} ms",
        f"connections     {r.connections:,} of {report.devices:,} in {r.connect_s:.2f} s"
        + (f" ({r.connections / r.connect_s:,.0f}/s)" if r.connect_s > 0 else ""),
    ]
    if report.provisioned:
        lines.append(f"provisioning    {report.provisioned:,} devices in {report.provision_s:.2f} s "
                     f"({report.provisioned / report.provision_s:,.0f}/s)")
    lines.append(f"generators      {r.processes} process(es), {r.generator_cpu_share:.0%} of a core each")
    errors = report.errors
    lines.append("errors          " + (", ".join(f"{k} x{v}" for k, v in errors.items()) if errors else "none"))
    return "\n".join(lines)


def check_plotting() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotUnavailable(
            "--plot needs matplotlib: pip install 'iot-gateway[plot]' (or pip install matplotlib)"
        ) from None


def plot(report: FleetReport, path: str) -> None:
    """Throughput and latency (p50, p99, max) second by second, as a PNG."""
    check_plotting()
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    rows = per_second(report.result.timeline)
    seconds = [row["t"] for row in rows]
    figure, (top, bottom) = pyplot.subplots(2, 1, sharex=True, figsize=(9, 6))
    top.plot(seconds, [row["messages"] for row in rows], drawstyle="steps-post")
    top.set_ylabel("messages acknowledged / s")
    top.set_title(f"{report.devices} devices on {report.url}")
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99"), ("max_ms", "max")):
        bottom.plot(seconds, [row[key] for row in rows], label=label)
    bottom.set_ylabel("ack latency, ms")
    bottom.set_xlabel("seconds since the start")
    bottom.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
