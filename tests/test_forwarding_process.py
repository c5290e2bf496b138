"""Delivery in a process of its own, as operators run it: a gateway that delivers nothing
(forwarding_workers_per_action 0) and ``iot-gateway forward`` as separate processes, devices over
MQTT (paho-mqtt) and HTTP (aiohttp), every stored point received by a local HTTP receiver (by
device, key and timestamp) through a SIGKILL and restart of the forwarder; then ``serve`` with
forwarding_process, whose supervisor runs and restarts the forwarder and whose /metrics and
/healthz show it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson

from tests.forwarding_fleet import Fleet
from tests.forwarding_support import Receiver, all_received, http_rule, own_database, points, rule_service
from tests.process import GatewayProcess
from tests.support import TEST_SECRETS_KEY, free_port, new_tenant, read_until, stop_child

ROOT = Path(__file__).resolve().parents[1]


def _environment(url: str, data_dir: str, **settings: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS_"))}
    env.update(GATEWAY_DATABASE_URL=url, GATEWAY_DATA_DIR=data_dir, GATEWAY_HOST="127.0.0.1",
               GATEWAY_SECRETS_KEY_FILE=TEST_SECRETS_KEY)
    env.update({f"GATEWAY_{k.upper()}": str(v) for k, v in settings.items()})
    return env


class Forward:
    """``python -m fleetgate forward`` in a process of its own; its listener's URL."""

    def __init__(self, proc: asyncio.subprocess.Process, url: str) -> None:
        self.proc, self.url = proc, url

    @classmethod
    async def start(cls, url: str, data_dir: str, **settings: object) -> Forward:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fleetgate", "forward", cwd=ROOT, env=_environment(url, data_dir, **settings),
            stdout=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(60):
            while True:
                line = (await proc.stdout.readline()).decode()
                assert line, "the forwarder exited while starting"
                if line.startswith("forward: "):
                    return cls(proc, line.split(": ", 1)[1].strip())

    async def get(self, path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as http, http.get(self.url + path) as resp:
            return resp.status, await resp.text()

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            return await self.proc.wait()


async def test_a_forwarder_of_its_own_delivers_through_a_sigkill(database_url, tmp_path) -> None:
    receiver = Receiver(secret="k")
    await receiver.start()
    ports = {"http_port": free_port(), "mqtt_port": free_port(), "management_port": free_port()}
    fast = {"forwarding_lease_seconds": 2, "forwarding_retry_max_seconds": 2}
    async with own_database(database_url) as (url, services):
        tenant = await new_tenant(services)
        action_id = await http_rule(rule_service(services), tenant, receiver.url)
        gateway = await GatewayProcess.start(url, str(tmp_path / "gw"), **ports, batch_max_age_ms=2,
                                             forwarding_workers_per_action=0)
        first = await Forward.start(url, str(tmp_path / "f1"), forward_port=free_port(), **fast)
        second = None
        try:
            urls = {"http": f"http://127.0.0.1:{ports['http_port']}", "mqtt": f"mqtt://127.0.0.1:{ports['mqtt_port']}"}
            fleet = Fleet(urls)
            await fleet.provision(services.pool, tenant, ["http"] * 10 + ["mqtt"] * 10)
            fleet.start()
            await receiver.wait_for(lambda: len(receiver.notifications) >= 300)
            status, text = await first.get("/metrics")
            delivered = re.search(rf'gateway_forwarding_delivered_total{{action="{action_id}"}} ([0-9.e+]+)', text)
            assert status == 200 and delivered and float(delivered[1]) >= 300, text[-2000:]
            assert (await first.get("/healthz"))[0] == 200 and (await first.get("/readyz"))[0] == 200
            await first.kill()
            by_the_first = len(receiver.notifications)
            await fleet.wait_acked(fleet.acked + 300)  # stored meanwhile, waiting in the outbox
            second = await Forward.start(url, str(tmp_path / "f2"), forward_port=free_port(), **fast)
            await fleet.wait_acked(fleet.acked + 300)
            await fleet.stop()
            stored = await all_received(receiver, services.pool, fleet)
            received = points(receiver.notifications)
            assert set(received) == stored and receiver.bad_signatures == 0
            duplicates = sum(n - 1 for n in received.values())
            print(f"forwarder SIGKILL: {len(stored)} points, {duplicates} delivered twice")
            # The at-least-once window: only what the killed forwarder had sent without recording it.
            assert duplicates <= by_the_first

            # Quiet now: the forwarder's workers wait up to 10 s between looks of their own. A point
            # stored now reaches the receiver well before, woken by the gateway's announcement.
            device = next(d for d in fleet.devices if d.protocol == "http")
            before = len(receiver.notifications)
            started = time.monotonic()
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{urls['http']}/api/v1/{device.token}/telemetry",
                                     data=orjson.dumps({"ts": fleet.base - 1, "values": {"late": 1}})) as resp:
                    assert resp.status == 200
            await receiver.wait_for(lambda: len(receiver.notifications) > before, timeout=20)
            assert time.monotonic() - started < 5
        finally:
            await first.kill()
            if second is not None:
                assert await second.stop() == 0
            await gateway.stop()
            await receiver.stop()


async def _health(management: int) -> dict:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{management}/healthz") as resp:
        return await resp.json()


async def test_serve_with_forwarding_process_supervises_the_forwarder(database_url, tmp_path) -> None:
    receiver = Receiver(secret="k")
    await receiver.start()
    ports = {"http": free_port(), "management": free_port()}
    async with own_database(database_url) as (url, services):
        tenant = await new_tenant(services)
        action_id = await http_rule(rule_service(services), tenant, receiver.url)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fleetgate", "serve", "--forwarding-process", "true", "--http-port",
            str(ports["http"]), "--management-port", str(ports["management"]), "--mqtt-port", "0",
            "--coap-port", "0", "--https-port", "0", "--mqtts-port", "0", "--batch-max-age-ms", "2",
            "--forwarding-lease-seconds", "2", cwd=ROOT, env=_environment(url, str(tmp_path)),
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            lines = await read_until(process, "management:")
            assert re.fullmatch(r"workers: 1 \(pids \d+\)", lines[-4]) and re.fullmatch(r"forwarder: pid \d+",
                                                                                         lines[-3]), lines
            health = await _health(ports["management"])
            forwarder_pid = health["forwarder"]["pid"]
            assert health["status"] == "ok" and health["forwarder"]["state"] == "running", health
            fleet = Fleet({"http": f"http://127.0.0.1:{ports['http']}"})
            await fleet.provision(services.pool, tenant, ["http"] * 5)
            fleet.start()
            await receiver.wait_for(lambda: len(receiver.notifications) >= 50)
            os.kill(forwarder_pid, signal.SIGKILL)  # the forwarder this test's supervisor started
            async with asyncio.timeout(30):  # the first back-off is a second
                while True:
                    health = await _health(ports["management"])
                    if health["workers"]["restarts"] == 1 and health["status"] == "ok":
                        break
                    await asyncio.sleep(0.1)  # /healthz is a reading: no event to await in this process
            assert health["forwarder"]["pid"] != forwarder_pid, health
            await fleet.wait_acked(fleet.acked + 50)
            await fleet.stop()
            stored = await all_received(receiver, services.pool, fleet)
            assert set(points(receiver.notifications)) == stored
            # The forwarders' figures in the shared multiprocess files: the gateway's /metrics shows them,
            # the killed one's deliveries counted with its successor's (each point one notification).
            pattern = re.compile(rf'gateway_forwarding_delivered_total{{action="{action_id}"}} ([0-9.e+]+)')
            async with asyncio.timeout(10), aiohttp.ClientSession() as http:
                while True:
                    async with http.get(f"http://127.0.0.1:{ports['management']}/metrics") as resp:
                        text = await resp.text()
                    found = pattern.search(text)
                    backlog = re.search(rf'gateway_forwarding_backlog{{action="{action_id}"}} ([0-9.e+]+)', text)
                    if found and float(found[1]) >= len(stored) and backlog and float(backlog[1]) == 0:
                        break
                    await asyncio.sleep(0.2)  # the backlog gauge is measured every 2 s
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(60):
                assert await process.wait() == 0
        finally:
            await stop_child(process)
            await receiver.stop()


def test_forward_with_no_workers_is_refused() -> None:
    result = subprocess.run([sys.executable, "-m", "fleetgate", "forward", "--forwarding-workers-per-action", "0"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT, env=_environment("postgresql://127.0.0.1:9/none", "/nonexistent"))
    assert result.returncode == 2 and "it would deliver nothing" in result.stderr, result
