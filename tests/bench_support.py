"""``iot-gateway bench`` as the smoke tests run it: one run in a process of its own, its JSON
report, and the shape every run of a report has."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson

DEADLINE = 180.0  # seconds a whole bench run may take
LOAD = ["--duration", "1", "--warmup", "0.2", "--json"]  # tiny: the shape is checked, never the figures


async def bench(*args: str) -> tuple[int, dict[str, Any], str]:
    """(exit status, the JSON report, stderr) of ``python -m fleetgate bench ARGS``."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fleetgate", "bench", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(DEADLINE):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert out, err.decode(errors="replace")
    return process.returncode or 0, orjson.loads(out), err.decode(errors="replace")


def assert_run_shape(run: dict[str, Any]) -> None:
    for key in ("requests", "requests_per_s", "datapoints_per_s", "latency_ms", "errors", "generator_cpu_share"):
        assert key in run
    assert set(run["latency_ms"]) >= {"p50", "p95", "p99", "max"}
    assert run["requests"] > 0
    assert run["error_count"] == 0, run["errors"]
