"""The MQTT load drivers' error accounting, against a scripted broker in this process:
PUBACKs refused with a reason code, PUBACKs that never come, a server that hangs up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Literal

from fleetgate.simulator.loadspec import LoadSpec
from fleetgate.simulator.mqtt_load import run_spec
from fleetgate.simulator.mqtt_packets import PINGREQ, PUBLISH, split_packets
from fleetgate.simulator.workloads import MqttTelemetrySpec

Behaviour = Literal["refuse-every-third", "never-ack", "hang-up-after-5"]


class ScriptedBroker(asyncio.Protocol):
    """CONNACK (MQTT 5) to every CONNECT, then PUBACKs as its behaviour says."""

    def __init__(self, behaviour: Behaviour, received: list[int]) -> None:
        self.behaviour = behaviour
        self.received = received  # PUBLISH packets received, over every connection
        self.buffer = b""
        self.publishes = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        packets, end = split_packets(self.buffer + data)
        self.buffer = (self.buffer + data)[end:]
        out = bytearray()
        for first, body in packets:
            if first == 0x10:
                out += b"\x20\x03\x00\x00\x00"
            elif first & 0xF0 == PUBLISH:
                self.publishes += 1
                self.received[0] += 1
                topic_length = int.from_bytes(body[:2], "big")
                packet_id = body[2 + topic_length : 4 + topic_length]
                if self.behaviour == "refuse-every-third":
                    code = b"\x97" if self.received[0] % 3 == 0 else b"\x00"
                    out += b"\x40\x03" + packet_id + code
                elif self.behaviour == "hang-up-after-5" and self.publishes > 5:
                    self.transport.abort()
                    return
                elif self.behaviour == "hang-up-after-5":
                    out += b"\x40\x02" + packet_id
            elif first == PINGREQ:
                out += b"\xd0\x00"
        if out:
            self.transport.write(bytes(out))


@contextlib.asynccontextmanager
async def scripted(behaviour: Behaviour) -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    brokers: list[ScriptedBroker] = []
    received = [0]

    def accept() -> ScriptedBroker:
        brokers.append(ScriptedBroker(behaviour, received))
        return brokers[-1]

    server = await loop.create_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for broker in brokers:
            if broker.transport is not None:
                broker.transport.abort()
        await server.wait_closed()


def spec(port: int, devices: int = 3, **options: object) -> LoadSpec:
    workload = MqttTelemetrySpec(tuple(f"t{i}" for i in range(devices)), version=5, inflight=4)
    defaults: dict[str, object] = {
        "connections": devices, "warmup": 0.05, "duration": 0.3, "max_requests": 300, "drain_timeout": 0.5,
    }
    return LoadSpec("127.0.0.1", port, workload, **{**defaults, **options})  # type: ignore[arg-type]


async def test_refused_pubacks_are_errors_by_reason() -> None:
    async with scripted("refuse-every-third") as port:
        result = await run_spec(spec(port))
    errors = dict(result.errors)
    refused = errors.pop("PUBACK refused: 0x97 quota exceeded")
    assert errors == {}
    # 3 priming messages and at most 300 more: a third of them refused, the rest acknowledged.
    assert refused + result.total_ok == 303
    assert refused == 101
    assert result.ok == result.histogram.count


async def test_missing_pubacks_time_out() -> None:
    async with scripted("never-ack") as port:
        result = await run_spec(spec(port, devices=2, mode="open", rate=100.0))
    # The priming messages were never acknowledged either: 2 there, and the 35 due in the run.
    assert result.errors == {"no PUBACK before the deadline": 2 + 35}
    assert result.total_ok == 0 and result.ok == 0


async def test_lost_connections_count_their_messages() -> None:
    async with scripted("hang-up-after-5") as port:
        result = await run_spec(spec(port, devices=1))
    errors = dict(result.errors)
    lost = errors.pop("connection closed by the server")
    assert errors == {}
    assert result.total_ok == 5
    assert 1 <= lost <= 4  # the window of in-flight messages when the server hung up
