"""One scenario's world: a PostgreSQL of its own (tests.pg_control), a gateway process on
fixed ports (tests.process) that can be killed and started again on them, a project with
devices on MQTT, HTTP and CoAP, the load they send, and the accounting afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import socket
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import aiocoap
import aiohttp
import asyncpg
import orjson

from tests.faults import devices
from tests.faults.ledger import KEY, Accounting, Clock, DeviceLog, account
from tests.faults.observe import Sampler
from tests.pg_control import ControlledServer
from tests.process import GatewayProcess
from tests.support import free_port, gateway_settings, new_tenant, running_gateway


@dataclass(frozen=True, slots=True)
class LoadShape:
    devices_per_protocol: int = 10
    rate: float = 10.0  # messages a second per device: 300/s in all
    mqtt_window: int = 20  # QoS 1 messages a device keeps in flight


# A small queue, so that it fills within a second of the database going away; a short
# back-off ceiling, so that the gateway notices the database is back soon after it is.
INGEST_QUEUE_ROWS = 50
GATEWAY_SETTINGS = {
    "ingest_queue_rows": INGEST_QUEUE_ROWS, "db_retry_max_seconds": 0.5, "writers": 2, "db_pool_size": 4,
    "shutdown_timeout_seconds": 15, "batch_max_age_ms": 5, "log_level": "warning",
}
# A crash, or an error a crash would log. Tracebacks alone are not: asyncpg's pool logs a
# WARNING with one each time it fails to reconnect while the database is down.
CRASH = re.compile(r"^\S+ \S+ (ERROR|CRITICAL) |Task exception was never retrieved|Future exception was never retrieved"
                   r"|Exception in callback")


@dataclass(frozen=True, slots=True)
class Device:
    protocol: str
    token: str
    log: DeviceLog


class Rig:
    def __init__(self, root: Path, server: ControlledServer, ports: dict[str, int], project_id: str) -> None:
        self.root, self.server, self.ports, self.project_id = root, server, ports, project_id
        self.gateway: GatewayProcess | None = None
        self.killed: list[GatewayProcess] = []  # gateways this test SIGKILLed on purpose
        self.devices: list[Device] = []
        self.closed = False
        self.back_at: float | None = None  # when the database was back after the fault (time.monotonic())

    @classmethod
    async def create(cls, root: Path) -> Rig:
        server = ControlledServer(root / "db")
        # The same data dir as the gateway's, so both seal secrets with the same key.
        async with running_gateway(server.url, gateway_settings(
                str(root / "gateway"), http_port=0, mqtt_port=0, coap_port=0, management_port=0)) as setup:
            tenant = await new_tenant(setup.services)
        ports = {"http_port": free_port(), "mqtt_port": free_port(), "management_port": free_port(),
                 "coap_port": free_port(socket.SOCK_DGRAM)}
        rig = cls(root, server, ports, tenant.project_id)
        try:
            await rig.start_gateway()
            await rig._provision(tenant, LoadShape())
        except BaseException:
            # The fixture never gets the rig to close: stop what it started here.
            with contextlib.suppress(Exception):
                await rig.close()
            raise
        return rig

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http_port']}"

    async def start_gateway(self) -> None:
        self.gateway = await GatewayProcess.start(self.server.url, str(self.root / "gateway"),
                                                  **self.ports, **GATEWAY_SETTINGS)

    async def kill_gateway(self) -> None:
        """SIGKILL, by the PID of the process this rig started."""
        assert self.gateway is not None
        await self.gateway.kill()
        assert self.gateway.proc.returncode == -9
        self.killed.append(self.gateway)
        self.gateway = None

    async def _provision(self, tenant, shape: LoadShape) -> None:
        async with aiohttp.ClientSession(self.http_url) as http:
            for protocol in ("mqtt", "http", "coap"):
                for i in range(shape.devices_per_protocol):
                    name = f"{protocol}-{i}-{secrets.token_hex(3)}"
                    async with http.post("/api/v1/provision", json={
                            "deviceName": name, "provisionDeviceKey": tenant.provision_key,
                            "provisionDeviceSecret": tenant.provision_secret}) as resp:
                        assert resp.status == 200, await resp.text()
                        token = orjson.loads(await resp.read())["credentialsValue"]
                    self.devices.append(Device(protocol, token, DeviceLog(name)))

    def sampler(self) -> Sampler:
        assert self.gateway is not None
        return Sampler(self.gateway.proc.pid, f"http://127.0.0.1:{self.ports['management_port']}",
                       self.ports["mqtt_port"])

    async def drive(self, clock: Clock, shape: LoadShape = LoadShape()) -> None:
        """Every device's loop, until the clock stops production and each has delivered
        what it made (or the clock gives up)."""
        connector = aiohttp.TCPConnector(limit=0)
        coap = await aiocoap.Context.create_client_context(transports=["udp6"])
        coap_url = f"coap://127.0.0.1:{self.ports['coap_port']}"
        try:
            async with aiohttp.ClientSession(self.http_url, connector=connector) as http:
                loops = []
                for device in self.devices:
                    if device.protocol == "mqtt":
                        loops.append(devices.MqttDevice(self.ports["mqtt_port"], device.token, device.log, clock,
                                                        shape.rate, shape.mqtt_window).run())
                    elif device.protocol == "http":
                        loops.append(devices.http_device(http, device.token, device.log, clock, shape.rate))
                    else:
                        loops.append(devices.coap_device(coap, coap_url, device.token, device.log, clock,
                                                         shape.rate))
                async with asyncio.TaskGroup() as group:
                    for loop in loops:
                        group.create_task(loop)
        finally:
            await coap.shutdown()

    async def stored_rows(self) -> dict[str, list[tuple[int, int]]]:
        conn = await asyncpg.connect(self.server.url)
        try:
            records = await conn.fetch(
                "SELECT d.name, t.ts, t.long_v FROM ts_kv t JOIN devices d ON d.id = t.device_id "
                "JOIN key_dictionary k ON k.key_id = t.key WHERE d.project_id = $1 AND k.key = $2",
                self.project_id, KEY)
        finally:
            await conn.close()
        rows: dict[str, list[tuple[int, int]]] = {}
        for record in records:
            rows.setdefault(record["name"], []).append((record["ts"], record["long_v"]))
        return rows

    def database_back(self) -> None:
        """The database is back now: the accounting shows how long the first acknowledgement took."""
        self.back_at = time.monotonic()
        for device in self.devices:
            device.log.watch(self.back_at)

    async def account(self, scenario: str, started: float, events: Counter[str]) -> Accounting:
        return account(scenario, [d.log for d in self.devices], await self.stored_rows(),
                       time.monotonic() - started, events, self.back_at)

    def logged(self, text: str) -> int:
        """How many lines of the gateways' logs hold ``text``."""
        gateways = [*self.killed, *([self.gateway] if self.gateway else [])]
        return sum(text in line for g in gateways for line in g.log)

    def crashes(self) -> list[str]:
        """Log lines of the gateway (and of those killed on purpose) that tell of a crash."""
        gateways = [*self.killed, *([self.gateway] if self.gateway else [])]
        return ["".join(g.log[max(i - 2, 0):i + 25]) for g in gateways for i, line in enumerate(g.log)
                if CRASH.search(line)]

    def tracebacks(self) -> list[str]:
        """The tracebacks in the gateways' logs, with the lines before them."""
        gateways = [*self.killed, *([self.gateway] if self.gateway else [])]
        return ["".join(g.log[max(i - 3, 0):i + 20]) for g in gateways for i, line in enumerate(g.log)
                if "Traceback" in line]

    async def close(self) -> None:
        """Stop the gateway (SIGTERM: it must exit 0) and the database; the logs are kept in
        the test's directory (gateway-N.log). Once."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.gateway is not None:
                assert self.gateway.proc.returncode is None, f"the gateway exited: {self.gateway.log[-20:]}"
                code = await self.gateway.stop(timeout=30)
                assert code == 0, f"the gateway exited {code}: {self.gateway.log[-20:]}"
        finally:
            if self.gateway is not None:
                await self.gateway.kill()
            for i, g in enumerate([*self.killed, *([self.gateway] if self.gateway else [])]):
                (self.root / f"gateway-{i}.log").write_text("".join(g.log))
            if (self.server.pgdata / "postmaster.pid").exists():
                await self.server.stop("fast")
