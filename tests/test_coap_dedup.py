"""protocols.coap.dedup on a bare aiocoap server: retransmissions answered from the window (a
piggybacked 2.01 and the empty ACK of a separate response), NON duplicates dropped, expiry, and
what a remembered request costs."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace

import aiocoap
import pytest
from aiocoap import Code, Message
from aiocoap.numbers.types import Type
from aiocoap.resource import Resource, Site

from fleetgate.protocols.coap.dedup import DedupWindow, request_key
from tests.coap_wire import RawCoap, ack, request


class Counting(Resource):
    """2.01 to POST, counting what it processed; /slow waits for ``release`` first."""

    def __init__(self) -> None:
        super().__init__()
        self.processed = 0
        self.release = asyncio.Event()
        self.slow = False

    async def render_post(self, request: Message) -> Message:
        self.processed += 1
        if self.slow:
            await self.release.wait()
        return Message(code=Code.CREATED)


@asynccontextmanager
async def server(lifetime: float) -> AsyncIterator[tuple[int, Counting, DedupWindow]]:
    resource = Counting()
    site = Site()
    site.add_resource(["x"], resource)
    context = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", 0), transports=["udp6"])
    window = DedupWindow(lifetime)
    manager = context.request_interfaces[0].token_interface
    window.install(manager)
    port = manager.message_interface.transport.get_extra_info("socket").getsockname()[1]
    try:
        yield port, resource, window
    finally:
        await context.shutdown()
        window.close()


async def test_a_retransmission_gets_the_same_bytes_and_is_processed_once() -> None:
    async with server(30) as (port, resource, window):
        raw = await RawCoap.open(port)
        try:
            sent = raw.send(request(Code.POST, "/x", b"1"))
            first = await raw.receive_bytes()
            raw.send_bytes(sent)
            assert await raw.receive_bytes() == first
            assert Message.decode(first).mtype is Type.ACK
            assert resource.processed == 1 and len(window) == 1
        finally:
            raw.close()


async def test_a_retransmission_after_an_empty_ack_gets_the_empty_ack_again() -> None:
    async with server(30) as (port, resource, _):
        resource.slow = True
        raw = await RawCoap.open(port)
        try:
            message = request(Code.POST, "/x", b"1")
            sent = raw.send(message)
            empty = await raw.receive()  # after EMPTY_ACK_DELAY
            assert (empty.mtype, empty.code, empty.mid) == (Type.ACK, Code.EMPTY, message.mid)
            raw.send_bytes(sent)
            again = await raw.receive()
            assert (again.mtype, again.code, again.mid) == (Type.ACK, Code.EMPTY, message.mid)
            resource.release.set()
            separate = await raw.receive()
            assert (separate.mtype, separate.code, separate.token) == (Type.CON, Code.CREATED, message.token)
            raw.send(ack(separate))
            assert resource.processed == 1
        finally:
            raw.close()


async def test_a_non_duplicate_is_dropped() -> None:
    async with server(30) as (port, resource, _):
        raw = await RawCoap.open(port)
        try:
            sent = raw.send(request(Code.POST, "/x", b"1", con=False))
            assert (await raw.receive()).code == Code.CREATED
            raw.send_bytes(sent)
            # A CON after it is answered in order: the NON copy was dropped, not queued.
            raw.send(request(Code.POST, "/x", b"2"))
            assert (await raw.receive()).mtype is Type.ACK
            assert resource.processed == 2
        finally:
            raw.close()


async def test_a_request_is_forgotten_once_the_window_has_passed() -> None:
    async with server(0.4) as (port, resource, window):
        raw = await RawCoap.open(port)
        try:
            sent = raw.send(request(Code.POST, "/x", b"1"))
            await raw.receive()
            assert len(window) == 1
            # A time to let pass (the window is at most one slice, 0.05 s, longer), nothing to await.
            await asyncio.sleep(0.5)
            assert len(window) == 0
            raw.send_bytes(sent)
            assert (await raw.receive()).code == Code.CREATED
            assert resource.processed == 2
        finally:
            raw.close()


def test_keys_compare_as_aiocoaps_udp_addresses_do() -> None:
    a = SimpleNamespace(sockaddr=("::ffff:127.0.0.1", 40000, 0, 0))
    b = SimpleNamespace(sockaddr=("::ffff:127.0.0.1", 40000, 0, 0))
    assert request_key(a, 7) == request_key(b, 7)
    assert request_key(a, 7) != request_key(a, 8)
    assert request_key(a, 7) != request_key(SimpleNamespace(sockaddr=("::ffff:127.0.0.1", 40001, 0, 0)), 7)


async def test_a_remembered_request_costs_a_few_hundred_bytes() -> None:
    window = DedupWindow(30)
    manager = SimpleNamespace(_deduplicate_message=print, _store_response_for_duplicates=print,
                              _send_initially=lambda message: None)
    window.install(manager)
    count = 20_000
    tracemalloc.start()
    try:
        for i in range(count):
            remote = SimpleNamespace(sockaddr=(f"::ffff:127.0.0.{i % 250}", 20_000 + i % 1000, 0, 0))
            incoming = SimpleNamespace(remote=remote, mid=i % 65536, mtype=Type.CON)
            assert window.seen(incoming) is False
            answer = Message(_mtype=Type.ACK, _mid=i % 65536, code=Code.CREATED)
            answer.token = b"\x01\x02\x03\x04"
            answer.remote = remote
            window.remember_answer(answer)
            del remote, incoming, answer
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        window.close()
    assert held / count < 400, f"{held / count:.0f} bytes a request"


@pytest.mark.parametrize("lifetime", [0, -1])
def test_the_window_must_be_positive(lifetime: float) -> None:
    with pytest.raises(ValueError):
        DedupWindow(lifetime)
