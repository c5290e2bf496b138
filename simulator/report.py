"""A bench's figures: a frozen report, its JSON form and a plain-text table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fleetgate.simulator.stats import LoadResult


@dataclass(frozen=True, slots=True)
class Run:
    """One load run against one server."""

    name: str  # stable key in the JSON, e.g. "gateway_max"
    label: str  # the table's row title
    result: LoadResult


@dataclass(frozen=True, slots=True)
class Ratio:
    """gateway / baseline for one figure: a share of throughput, or a multiple of latency."""

    name: str
    value: float
    percent: bool = True

    def __str__(self) -> str:
        if self.percent:
            return f"{self.name}: {self.value:.0%}"
        # Two decimals below 1, where one would print a gateway 30 times faster as "0.0x".
        return f"{self.name}: {self.value:.1f}x" if self.value >= 1 else f"{self.name}: {self.value:.2f}x"


@dataclass(frozen=True, slots=True)
class Target:
    """A figure the project promises, and whether this run met it."""

    name: str
    goal: str
    measured: str
    met: bool


@dataclass(frozen=True, slots=True)
class BenchReport:
    scenario: str
    title: str
    context: Mapping[str, Any]
    runs: tuple[Run, ...]
    ratios: tuple[Ratio, ...] = ()
    targets: tuple[Target, ...] = ()
    checks: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    unit: str = "requests"  # what a run counts: requests (HTTP), messages (MQTT)

    @property
    def error_count(self) -> int:
        return sum(run.result.error_count for run in self.runs)

    @property
    def ok(self) -> bool:
        """No request failed and every check held (targets depend on the machine: not here)."""
        return not self.error_count and all(v for k, v in self.checks.items() if k.endswith("verified"))

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "unit": self.unit,
            "context": dict(self.context),
            "runs": {run.name: run.result.to_json() for run in self.runs},
            "ratios": {r.name: round(r.value, 3) for r in self.ratios},
            "targets": [
                {"name": t.name, "goal": t.goal, "measured": t.measured, "met": t.met} for t in self.targets
            ],
            "checks": dict(self.checks),
            "notes": list(self.notes),
            "error_count": self.error_count,
        }


# "server us/msg": the server's CPU time a message (request) of the window (simulator.server_cpu).
_COLUMNS = ("conns", "{unit}/s", "points/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors", "gen CPU",
            "server us/{one}")
_ONE = {"messages": "msg", "requests": "req", "queries": "query"}


def format_table(report: BenchReport) -> str:
    # The server's CPU (the last column) only where it was measured: a report's runs share their columns.
    counted = any(run.result.server_cpu_s is not None for run in report.runs)
    shown = _COLUMNS if counted else _COLUMNS[:-1]
    rows = [(run.label, *_cells(run.result)[:len(shown)]) for run in report.runs]
    one = _ONE.get(report.unit, report.unit.removesuffix("s"))
    header = ("", *(column.format(unit=report.unit, one=one) for column in shown))
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(cell.rjust(w) for cell, w in zip(cells[1:], widths[1:], strict=True))]).rstrip()

    out = [report.title]
    if rows:  # a scenario with figures of its own (ota) has no load runs: only its checks
        out += ["", line(header), line(tuple("-" * w for w in widths)), *(line(r) for r in rows)]
    if report.ratios:
        out.append("")
        out.extend(str(ratio) for ratio in report.ratios)
    errors = [(run.label, run.result.errors) for run in report.runs if run.result.errors]
    if errors:
        out.append("")
        out.extend(f"errors in {label}: " + ", ".join(f"{k} x{v}" for k, v in e.items()) for label, e in errors)
    if report.checks:
        out.append("")
        out.extend(f"{name}: {value}" for name, value in report.checks.items())
    if report.targets:
        out.append("")
        out.append("targets:")
        out.extend(
            f"  [{'met' if t.met else 'MISSED'}] {t.name}: {t.goal}, measured {t.measured}" for t in report.targets
        )
    if report.notes:
        out.append("")
        out.extend(f"note: {n}" for n in report.notes)
    return "\n".join(out)


def _cells(result: LoadResult) -> tuple[str, ...]:
    latency = result.latency
    measured = latency.count > 0  # nothing to time in an open loop at QoS 0

    def ms(value: float) -> str:
        return f"{value:.1f}" if measured else "-"

    return (
        str(result.connections),
        f"{result.requests_per_s:,.0f}",
        f"{result.datapoints_per_s:,.0f}" if result.datapoints_per_request else "-",
        ms(latency.p50_ms),
        ms(latency.p95_ms),
        ms(latency.p99_ms),
        ms(latency.max_ms),
        str(result.error_count),
        f"{result.generator_cpu_share:.0%}",
        "-" if result.server_cpu_us is None else f"{result.server_cpu_us:.1f}",
    )
