"""What is watched on the gateway while a scenario runs, sampled a few times a second:
its resident memory (VmRSS), its ingest queue depth and refusals (/metrics), and the
bytes waiting unread in its MQTT sockets' receive queues (/proc/net/tcp), which is how
"MQTT stopped reading" shows from outside the process."""

from __future__ import annotations

import asyncio
import re
from contextlib import contextmanager
from dataclasses import dataclass

import aiohttp

INTERVAL = 0.25


@dataclass(frozen=True, slots=True)
class Sample:
    phase: str
    rss_kib: int
    queue_rows: float | None
    rejected: float | None
    mqtt_unread_bytes: int


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    # A killed process not yet reaped (a zombie) still has its status, without memory.
    raise ProcessLookupError(f"process {pid} has ended: no VmRSS")


def unread_bytes(local_port: int) -> int:
    """Bytes received and not yet read by the owner, summed over TCP sockets on ``local_port``."""
    total = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == local_port:
                total += int(fields[4].split(":")[1], 16)
    return total


def metric(text: str, name: str) -> float | None:
    match = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


class Sampler:
    """Samples until stopped; the current phase ("warm", "outage", "after") labels each sample."""

    def __init__(self, pid: int, management_url: str, mqtt_port: int) -> None:
        self.pid, self.management_url, self.mqtt_port = pid, management_url, mqtt_port
        self.phase_name = "warm"
        self.samples: list[Sample] = []
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="fault-sampler")

    async def stop(self) -> None:
        self._stopped.set()
        if self._task is not None:
            await self._task

    @contextmanager
    def phase(self, name: str):
        previous, self.phase_name = self.phase_name, name
        try:
            yield
        finally:
            self.phase_name = previous

    def of(self, phase: str) -> list[Sample]:
        return [s for s in self.samples if s.phase == phase]

    def repoint(self, pid: int) -> None:
        """The gateway was started again: sample the new process."""
        self.pid = pid

    async def _run(self) -> None:
        async with aiohttp.ClientSession(self.management_url) as http:
            while not self._stopped.is_set() and len(self.samples) < 10_000:
                phase = self.phase_name
                try:
                    rss = rss_kib(self.pid)
                except (FileNotFoundError, ProcessLookupError):
                    rss = 0  # between a kill and the restart
                depth = rejected = None
                try:
                    async with asyncio.timeout(INTERVAL), http.get("/metrics") as resp:
                        text = (await resp.read()).decode()
                    depth = metric(text, "gateway_ingest_queue_rows")
                    rejected = metric(text, "gateway_ingest_rejected_total")
                except (TimeoutError, aiohttp.ClientError):
                    pass
                self.samples.append(Sample(phase, rss, depth, rejected, unread_bytes(self.mqtt_port)))
                try:
                    async with asyncio.timeout(INTERVAL):
                        await self._stopped.wait()
                except TimeoutError:
                    pass
