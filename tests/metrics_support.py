"""The gateway's /metrics as a test reads it: every sample by name and labels."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

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
