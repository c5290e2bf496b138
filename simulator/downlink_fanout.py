"""What a downlink message costs each gateway process, with 1, 2 and 4 replicas, on either bus.

    python -m fleetgate.simulator.downlink_fanout [--replicas 1,2,4] [--buses pg,nats]
        [--devices 20] [--rate 40] [--seconds 10]

Per run: a fresh embedded PostgreSQL (the bench's workspace), for NATS one Debian ``nats-server``
on loopback, N gateway processes (``python -m fleetgate serve``, each with its own ports) on that
database, ``--devices`` MQTT devices connected to each replica and subscribed to shared-attribute
updates, and shared-attribute pushes through replica 0's management API at ``--rate`` per second
per replica (the fleet, and its downlink, grow with the replicas) for ``--seconds``. Each
process's ``gateway_downlink_bus_events_total`` (its /metrics) says how many downlink events it
received from the bus, and whether they concerned it; the devices count the updates they got.
On the PostgreSQL bus every process hears every event; on NATS only the one holding the device.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import random
import sys
import time
from dataclasses import dataclass

import aiohttp

from fleetgate.config import Settings
from fleetgate.simulator.bench_workspace import (
    Workspace, admin, gateway_server, new_tenant, provision_devices, query_value, workspace,
)
from fleetgate.simulator.mqtt_packets import encode_connect, encode_subscribe, split_packets
from fleetgate.simulator.nats_server import nats_server
from fleetgate.simulator.processes import free_port
from fleetgate.simulator.runtime import run

_PUBLISH = 0x30
_METRIC = "gateway_downlink_bus_events_total"


@dataclass(frozen=True, slots=True)
class Result:
    bus: str
    replicas: int
    sent: int  # attribute pushes answered 200
    delivered: int  # updates the devices received
    seconds: float
    received: tuple[tuple[float, float], ...]  # per process: (events for it, events not for it)

    def row(self) -> str:
        per_process = [here + other for here, other in self.received]
        mean = sum(per_process) / len(per_process)
        wasted = sum(other for _, other in self.received) / max(sum(per_process), 1)
        return (f"| {self.bus} | {self.replicas} | {self.sent / self.seconds:.0f} | {self.delivered} / {self.sent} | "
                f"{mean / self.seconds:.1f} | {', '.join(f'{n:.0f}' for n in per_process)} | {wasted:.0%} |")


class Subscriber:
    """One device on MQTT, subscribed to its shared-attribute updates, counting them."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.updates = 0
        self._buffer = bytearray()

    @classmethod
    async def connect(cls, port: int, token: str) -> Subscriber:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        device = cls(reader, writer)
        writer.write(encode_connect("fanout-" + token[:8], username=token))
        writer.write(encode_subscribe(1, "v1/devices/me/attributes", qos=0))
        await device.packets(2)  # CONNACK, SUBACK
        return device

    async def packets(self, count: int) -> None:
        seen = 0
        while seen < count:
            data = await self.reader.read(65_536)
            if not data:
                raise ConnectionError("the gateway closed the connection")
            self._buffer += data
            packets, end = split_packets(self._buffer)
            del self._buffer[:end]
            seen += len(packets)

    async def count(self) -> None:
        while data := await self.reader.read(65_536):
            self._buffer += data
            packets, end = split_packets(self._buffer)
            del self._buffer[:end]
            self.updates += sum(1 for first, _ in packets if first & 0xF0 == _PUBLISH)

    def close(self) -> None:
        self.writer.close()


async def bus_events(management: str) -> tuple[float, float]:
    """(events for this process, events not for it) from a gateway's /metrics."""
    values = {"yes": 0.0, "no": 0.0}
    async with aiohttp.ClientSession() as http, http.get(f"{management}/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith(_METRIC + "{"):
                label = line.split('for_here="', 1)[1].split('"', 1)[0]
                values[label] = float(line.rsplit(" ", 1)[1])
    return values["yes"], values["no"]


async def one_run(space: Workspace, bus: str, replicas: int, args: argparse.Namespace) -> Result:
    async with contextlib.AsyncExitStack() as stack:
        settings: dict[str, object] = {}
        if bus == "nats":
            settings["nats_url"] = (await stack.enter_async_context(nats_server())).url
        servers = [await stack.enter_async_context(gateway_server(
            space, mqtt=True, listeners=("management",), management_port=free_port(), **settings))
            for _ in range(replicas)]
        tenant = await new_tenant(space)
        token = await admin(space, "create-token", "--project", tenant.project_id)
        tokens = await provision_devices(servers[0], tenant, args.devices * replicas)
        lookups = {"t:" + hashlib.sha256(t.encode()).hexdigest(): t for t in tokens}
        ids = list(await query_value(
            space, "SELECT array_agg(device_id) FROM device_credentials WHERE lookup = ANY($1)", list(lookups)))
        devices = [await Subscriber.connect(int(servers[i % replicas].urls["mqtt"].rsplit(":", 1)[1]), t)
                   for i, t in enumerate(tokens)]
        counting = [asyncio.create_task(d.count()) for d in devices]
        before = [await bus_events(s.urls["management"]) for s in servers]
        rate, sent = args.rate * replicas, 0
        started = time.monotonic()
        async with aiohttp.ClientSession(servers[0].urls["management"], headers={"X-Auth-Token": token}) as api:
            for n in range(int(rate * args.seconds)):
                # Open loop at a fixed rate: each push starts on its schedule.
                await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
                path = f"/v5/iot/{tenant.project_id}/devices/{random.choice(ids)}/attributes"
                async with api.post(path, params={"scope": "SHARED_SCOPE"}, json={"n": n}) as response:
                    sent += response.status == 200
        seconds = time.monotonic() - started
        await asyncio.sleep(1.0)  # the last updates on their way
        after = [await bus_events(s.urls["management"]) for s in servers]
        for device in devices:
            device.close()
        for task in counting:
            task.cancel()
        await asyncio.gather(*counting, return_exceptions=True)
        received = tuple((a[0] - b[0], a[1] - b[1]) for a, b in zip(after, before))
        return Result(bus, replicas, sent, sum(d.updates for d in devices), seconds, received)


async def main(space: Workspace, args: argparse.Namespace) -> None:
    print("| bus | replicas | pushes/s (all) | updates delivered | events received per process per s "
          "| events per process (total) | not for that process |")
    print("|---|---|---|---|---|---|---|")
    for bus in args.buses.split(","):
        for replicas in (int(n) for n in args.replicas.split(",")):
            result = await one_run(space, bus, replicas, args)
            print(result.row(), flush=True)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fleetgate.simulator.downlink_fanout",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", default="1,2,4", help="replica counts, comma-separated")
    parser.add_argument("--buses", default="pg,nats", help="pg, nats or both")
    parser.add_argument("--devices", type=int, default=20, help="devices connected to each replica")
    parser.add_argument("--rate", type=float, default=40, help="attribute pushes per second per replica")
    parser.add_argument("--seconds", type=float, default=10, help="how long each run pushes")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse(sys.argv[1:])
    with workspace(Settings(log_level="warning")) as bench_space:  # one database for every run
        run(main(bench_space, arguments))
