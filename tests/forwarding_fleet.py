"""A small fleet for the forwarding tests: devices sending telemetry over MQTT (paho-mqtt), HTTP
(aiohttp) and CoAP (aiocoap) on their own schedule, each message one point ``seq`` with a
timestamp of its own; and the stored points they produced, read back from the database."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiocoap
import aiohttp
import orjson
from aiocoap import Code, Message

from tests.paho_async import AsyncPaho
from tests.support import Tenant

KEY = "seq"


def iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


@dataclass
class FleetDevice:
    protocol: str
    name: str
    token: str
    id: str
    acked: int = 0
    failed: int = 0
    sent: int = 0  # messages tried: the next one's timestamp is base + sent


@dataclass
class Fleet:
    """``urls``: the gateway's listeners (http, mqtt, coap) by name."""

    urls: dict[str, str]
    devices: list[FleetDevice] = field(default_factory=list)
    interval: float = 0.1
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    base: int = field(default_factory=lambda: (time.time_ns() // 1_000_000 // 1000) * 1000)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def provision(self, pool: Any, tenant: Tenant, protocols: Sequence[str]) -> None:
        async with aiohttp.ClientSession(self.urls["http"]) as http:
            for protocol in protocols:
                name = f"fwd-{protocol}-" + secrets.token_hex(4)
                body = {"deviceName": name, "provisionDeviceKey": tenant.provision_key,
                        "provisionDeviceSecret": tenant.provision_secret}
                async with http.post("/api/v1/provision", json=body) as resp:
                    token = orjson.loads(await resp.read())["credentialsValue"]
                device_id = await pool.fetchval("SELECT id FROM devices WHERE project_id = $1 AND name = $2",
                                                tenant.project_id, name)
                self.devices.append(FleetDevice(protocol, name, token, device_id))

    def start(self) -> None:
        self._stop.clear()
        for n, device in enumerate(self.devices):
            runner = {"mqtt": self._mqtt, "http": self._http, "coap": self._coap}[device.protocol]
            # Each device's timestamps are its own: base, then a millisecond a message.
            self._tasks.append(asyncio.create_task(runner(device, self.base + n * 10_000_000)))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        self._tasks.clear()

    @property
    def acked(self) -> int:
        return sum(d.acked for d in self.devices)

    async def wait_acked(self, count: int, timeout: float = 60) -> None:
        """Until the fleet's devices have had ``count`` messages acknowledged in all."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self.acked >= count)

    async def _acked(self, device: FleetDevice) -> None:
        async with self._changed:
            device.acked += 1
            self._changed.notify_all()

    def _body(self, device: FleetDevice, base: int) -> bytes:
        device.sent += 1
        return orjson.dumps({"ts": base + device.sent, "values": {KEY: device.sent}})

    async def _pace(self) -> bool:
        """Wait for the device's next turn; False once the fleet stops."""
        try:
            await asyncio.wait_for(self._stop.wait(), self.interval)
        except TimeoutError:
            return True
        return False

    async def _http(self, device: FleetDevice, base: int) -> None:
        async with aiohttp.ClientSession(self.urls["http"]) as http:
            i = 0
            while await self._pace():
                try:
                    async with http.post(f"/api/v1/{device.token}/telemetry", data=self._body(device, base),
                                         headers={"Content-Type": "application/json"}) as resp:
                        ok = resp.status == 200
                except (aiohttp.ClientError, OSError):
                    ok = False
                i += 1
                if ok:
                    await self._acked(device)
                else:
                    device.failed += 1

    async def _mqtt(self, device: FleetDevice, base: int) -> None:
        port = int(self.urls["mqtt"].rsplit(":", 1)[1])
        client: AsyncPaho | None = None
        i = 0
        try:
            while await self._pace():
                try:
                    if client is None:
                        client = AsyncPaho(f"{device.name}-{i}")
                        await client.connect(port, username=device.token)
                    reason = await client.publish("v1/devices/me/telemetry", self._body(device, base))
                    ok = getattr(reason, "value", reason) == 0
                except (OSError, TimeoutError, ConnectionError):
                    ok = False
                i += 1
                if ok:
                    await self._acked(device)
                else:
                    device.failed += 1
                    if client is not None:
                        await client.close()
                        client = None
        finally:
            if client is not None:
                await client.close()

    async def _coap(self, device: FleetDevice, base: int) -> None:
        context = await aiocoap.Context.create_client_context(transports=["udp6"])
        try:
            i = 0
            while await self._pace():
                message = Message(code=Code.POST, uri=f"{self.urls['coap']}/api/v1/{device.token}/telemetry",
                                  payload=self._body(device, base))
                try:
                    async with asyncio.timeout(10):
                        response = await context.request(message).response
                    ok = response.code == Code.CREATED or response.code == Code.CHANGED
                except (aiocoap.error.Error, TimeoutError, OSError):
                    ok = False
                i += 1
                if ok:
                    await self._acked(device)
                else:
                    device.failed += 1
        finally:
            await context.shutdown()


async def stored_points(pool: Any, device_ids: Sequence[str]) -> set[tuple[str, str, str]]:
    """(device id, key, event time) of every stored ``seq`` point of these devices."""
    records = await pool.fetch(
        "SELECT t.device_id, t.ts FROM ts_kv t JOIN key_dictionary k ON k.key_id = t.key "
        "WHERE k.key = $1 AND t.device_id = ANY($2::text[])", KEY, list(device_ids))
    return {(r["device_id"], KEY, iso(r["ts"])) for r in records}
