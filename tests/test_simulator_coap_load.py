"""The CoAP load generator against the gateway, with small counts: closed and open loops, every
answer a 2.01 and every acknowledged data point stored; its datagrams; a server that never answers."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace

import aiocoap
import pytest
from aiocoap import Code, Message
from aiocoap.numbers.types import Type
from aiocoap.resource import Resource, Site

from fleetgate.simulator import coap_driver, coap_load
from fleetgate.simulator.coap_packets import (
    CoapTelemetrySpec,
    con_post,
    empty_ack,
    parse_header,
    telemetry_tail,
)
from fleetgate.simulator.loadspec import LoadSpec
from fleetgate.simulator.worker import run_load
from tests.coap_support import coap_client, port_of, provision_device
from tests.coap_wire import RawCoap


async def provisioned(coap_url: str, tenant, count: int) -> tuple[str, ...]:
    async with coap_client() as client:
        return tuple([(await provision_device(client, coap_url, tenant))[1] for _ in range(count)])


async def rows_of(gateway, tenant) -> int:
    return await gateway.services.pool.fetchval(
        "SELECT count(*) FROM ts_kv WHERE device_id IN (SELECT id FROM devices WHERE project_id = $1)",
        tenant.project_id)


def test_a_request_decodes_as_aiocoap_reads_it() -> None:
    data = con_post(0x1234, b"\x00\x00\x00\x07", telemetry_tail("tok", b'{"a":1}'))
    message = Message.decode(data)
    assert (message.mtype, message.code, message.mid, message.token) == (Type.CON, Code.POST, 0x1234, b"\0\0\0\7")
    assert message.opt.uri_path == ("api", "v1", "tok", "telemetry")
    assert message.opt.content_format == 50 and message.payload == b'{"a":1}'
    header = parse_header(empty_ack(9))
    assert header is not None and (header.mtype, header.code, header.mid, header.token) == (2, 0, 9, b"")
    assert parse_header(b"\x00\x01") is None


async def test_closed_then_open_loop_against_the_gateway(gateway, coap_url, tenant) -> None:
    tokens = await provisioned(coap_url, tenant, 5)
    workload = CoapTelemetrySpec(tokens, devices_per_socket=2, inflight=2)
    spec = LoadSpec("127.0.0.1", port_of(coap_url), workload, connections=workload.sockets, warmup=0.2,
                    duration=1.0, max_requests=400, drain_timeout=10)
    # No warm-up for the closed loop: on a fast machine 400 requests finish inside any warm-up, leaving
    # an empty window (this failed CI once).
    closed = await coap_load.run_spec(replace(spec, warmup=0))
    assert closed.error_count == 0, closed.errors
    assert closed.ok > 0 and closed.connections == 3 and closed.datapoints_per_request == 3
    opened = await coap_load.run_spec(replace(spec, mode="open", rate=50.0))
    assert opened.error_count == 0, opened.errors
    assert opened.total_ok >= 50 * 1.2 - 1 and opened.target_rate == 50.0
    # Every acknowledged request stored its 3 data points (priming included), none twice.
    assert await rows_of(gateway, tenant) == (closed.total_ok + opened.total_ok) * 3


async def test_two_generator_processes_share_the_devices(gateway, coap_url, tenant) -> None:
    tokens = await provisioned(coap_url, tenant, 4)
    workload = CoapTelemetrySpec(tokens, devices_per_socket=1)
    spec = LoadSpec("127.0.0.1", port_of(coap_url), workload, connections=4, warmup=0, duration=0.5,
                    max_requests=200)
    result = await run_load(spec, 2)
    assert result.processes == 2 and result.connections == 4
    assert result.error_count == 0 and result.ok > 0
    assert await rows_of(gateway, tenant) == result.total_ok * 3


async def test_a_silent_server_is_retransmitted_to_then_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(coap_driver, "ACK_TIMEOUT", 0.02)
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    silent.setblocking(False)
    try:
        workload = CoapTelemetrySpec(("t",))
        driver = coap_driver.CoapDriver(workload)
        await driver.open("127.0.0.1", silent.getsockname()[1])
        try:
            result = await coap_load.ClosedLoop(driver, 3, 1, 1).run(0, 5, 5)
        finally:
            driver.close()
        received = []
        while True:
            try:
                received.append(silent.recv(2048))
            except BlockingIOError:
                break
    finally:
        silent.close()
    assert result.errors == {coap_driver.GAVE_UP: 1} and result.total_ok == 0
    assert driver.retransmissions == coap_driver.MAX_RETRANSMIT
    assert len(received) == 1 + coap_driver.MAX_RETRANSMIT and len(set(received)) == 1


class _Slow(Resource):
    """Answers after aiocoap's EMPTY_ACK_DELAY (0.1 s): an empty ACK, then a separate 2.01."""

    async def render_post(self, request: Message) -> Message:
        await asyncio.sleep(0.15)  # slow work, not a wait for the test
        return Message(code=Code.CREATED)


async def test_separate_responses_are_counted_and_acknowledged() -> None:
    site = Site()
    site.add_resource(["api", "v1", "slow", "telemetry"], _Slow())
    context = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", 0), transports=["udp6"])
    manager = context.request_interfaces[0].token_interface
    try:
        port = manager.message_interface.transport.get_extra_info("socket").getsockname()[1]
        driver = coap_driver.CoapDriver(CoapTelemetrySpec(("slow",)))
        await driver.open("127.0.0.1", port)
        try:
            result = await coap_load.ClosedLoop(driver, 3, 3, 1).run(0, 10, 5)
        finally:
            driver.close()
        assert result.errors == {} and result.total_ok == 3
        assert result.histogram.min_us >= 100_000  # each waited for its separate response
        assert driver.retransmissions == 0
        # A CoAP ping answered means the server has read every datagram sent to it before.
        raw = await RawCoap.open(port)
        try:
            raw.send(Message(_mtype=Type.CON, _mid=1, code=Code.EMPTY))
            assert (await raw.receive()).mtype is Type.RST
        finally:
            raw.close()
        assert not manager._active_exchanges  # every separate (confirmable) response was acknowledged
    finally:
        await context.shutdown()
