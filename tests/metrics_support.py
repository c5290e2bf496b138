"""The gateway's /metrics as a test reads it: every sample by name and labels."""

from __future__ import annotations

import asyncio

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from fleetgate.app import Gateway

Figures = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(management: aiohttp.ClientSession) -> Figures:
    async with management.get("/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text) for sample in family.samples
    }


def value(figures: Figures, name: str, **labels: str) -> float:
    """A sample's value; 0 when the gateway has not exported it (a counter never incremented)."""
    return figures.get((name, tuple(sorted(labels.items()))), 0.0)


async def queued(gw: Gateway, rows: int) -> None:
    """Until the gateway's ingest queue holds ``rows`` rows, as its /metrics shows them: the
    requests are in the gateway, not still on their way (a gauge, which nothing here can await)."""
    url = next(listener.url for listener in gw.listeners if listener.name == "management")
    async with aiohttp.ClientSession(url) as management, asyncio.timeout(30):
        while value(await scrape(management), "gateway_ingest_queue_rows") < rows:
            await asyncio.sleep(0.01)
