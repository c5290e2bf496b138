"""Open-loop latency in the benches: the p99 targets at fractions of the closed-loop maximum, and
the open-loop capacity, the highest rate whose p99 stays under ``CAPACITY_P99_MS``.

Devices in a fleet send when they have something to say, so latency is judged in an open loop
(a timetable, each message its own read and write), at rates set by the closed-loop maximum of
the same run. The capacity is searched for with a bounded number of runs: from the rates already
measured, one step up from the highest that met the bound, or down from the lowest that did not.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fleetgate.simulator.machine_probe import Floor
from fleetgate.simulator.report import Target
from fleetgate.simulator.stats import LoadResult

CAPACITY_P99_MS = 25.0
# Shares of the closed-loop maximum tried beyond those measured anyway, and the most runs spent.
_STEPS = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875)
MAX_CAPACITY_RUNS = 2


@dataclass(frozen=True, slots=True)
class OpenRun:
    share: float  # of the closed-loop maximum
    rate: float
    result: LoadResult

    @property
    def met(self) -> bool:
        return self.result.latency.p99_ms < CAPACITY_P99_MS


async def capacity(
    maximum: float, measured: list[OpenRun], run: Callable[[float], Awaitable[LoadResult]],
) -> tuple[OpenRun | None, list[OpenRun]]:
    """The highest measured run whose p99 is under the bound (None if none is), after at most
    MAX_CAPACITY_RUNS more runs at other shares; and those extra runs."""
    extra: list[OpenRun] = []
    for _ in range(MAX_CAPACITY_RUNS):
        runs = [*measured, *extra]
        met = [r.share for r in runs if r.met]
        missed = [r.share for r in runs if not r.met]
        low, high = max(met, default=0.0), min(missed, default=1.0)
        between = [s for s in _STEPS if low < s < high]
        if not between:
            break
        share = between[len(between) // 2] if met and missed else (between[0] if not met else between[-1])
        result = await run(maximum * share)
        extra.append(OpenRun(share, maximum * share, result))
    best = max((r for r in [*measured, *extra] if r.met), key=lambda r: r.rate, default=None)
    return best, extra


def capacity_target(maximum: float, best: OpenRun | None, unit: str) -> Target:
    """The capacity must reach half the closed-loop maximum."""
    measured = (f"{best.rate:,.0f} {unit}/s ({best.share:.1%} of the maximum, p99 {best.result.latency.p99_ms:.1f} ms)"
                if best is not None else f"below {_STEPS[0]:.1%} of the maximum")
    return Target("open-loop capacity", f"p99 < {CAPACITY_P99_MS:g} ms up to >= half the maximum "
                  f"({maximum / 2:,.0f} {unit}/s)", measured, best is not None and best.share >= 0.5)


def p99_target(name: str, bound_ms: float, share: float, result: LoadResult, baseline: LoadResult | None,
               baseline_name: str, floor: Floor | None = None) -> Target:
    """p99 at ``share`` of the maximum at most ``bound_ms``, shown next to the baseline's at the same
    rate and what the machine gave the run (simulator.machine_probe)."""
    floors = [f"{baseline_name} {baseline.latency.p99_ms:.1f} ms"] if baseline is not None else []
    if floor is not None and floor.brief():
        floors.append(floor.brief())
    beside = f" ({'; '.join(floors)})" if floors else ""
    return Target(name, f"p99 <= {bound_ms:g} ms at {_share(share)} the maximum rate",
                  f"{result.latency.p99_ms:.1f} ms{beside}", result.latency.p99_ms <= bound_ms)


def _share(share: float) -> str:
    return {0.25: "a quarter of", 0.5: "half"}.get(share, f"{share:.0%} of")
