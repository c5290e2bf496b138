"""aiocoap leaves a reference cycle around every request it serves; the gateway breaks it when
the request ends, so that reference counting frees each request as soon as it is answered and
no collection has tens of thousands of them to free at once (protocols/coap/cycles.py)."""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import Callable, Iterator
from typing import Any

import aiocoap
import pytest
from aiocoap.pipe import Pipe

from fleetgate.protocols.coap.cycles import breaking_cycles
from tests.support import free_port

REQUESTS = 20


@pytest.fixture
def no_collection() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def answered_later(pipe: Any) -> None:  # as the gateway answers once the rows are stored
    asyncio.get_running_loop().call_soon(pipe.add_response, aiocoap.Message(code=aiocoap.CREATED), True)


def answered_at_once(pipe: Any) -> None:  # as the gateway answers a refusal
    pipe.add_response(aiocoap.Message(code=aiocoap.NOT_FOUND), is_last=True)


async def pipes_left(render: Callable[[Any], None], *, break_cycles: bool) -> int:
    """Serve REQUESTS confirmable POSTs from a raw UDP socket; the pipes still alive after."""
    before = _pipes()
    port = free_port(socket.SOCK_DGRAM)
    context = await aiocoap.Context.create_server_context(None, bind=("127.0.0.1", port), transports=["udp6"])
    managers = [i for i in context.request_interfaces if hasattr(i.token_interface, "message_interface")]
    context.render_to_pipe = breaking_cycles(render, managers) if break_cycles else render
    loop = asyncio.get_running_loop()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.setblocking(False)
    client.connect(("127.0.0.1", port))
    try:
        for mid in range(1, REQUESTS + 1):
            client.send(bytes([0x41, 0x02, mid >> 8, mid & 0xFF, mid & 0xFF, 0xB1]) + b"t\xff{}")
            async with asyncio.timeout(5):
                answer = await loop.sock_recv(client, 64)
            assert answer[0] >> 4 == 0x6 and answer[2:4] == bytes([mid >> 8, mid & 0xFF])  # ACK, same MID
        return _pipes() - before
    finally:
        client.close()
        await context.shutdown()


def _pipes() -> int:
    return sum(isinstance(o, Pipe) for o in gc.get_objects())


@pytest.mark.parametrize("render", [answered_later, answered_at_once])
async def test_no_request_is_left_for_the_garbage_collector(no_collection, render) -> None:
    assert await pipes_left(render, break_cycles=True) == 0


async def test_without_it_aiocoap_leaves_every_request_in_a_cycle(no_collection) -> None:
    # Should aiocoap stop making the cycle, this fails, and protocols/coap/cycles.py can go.
    assert await pipes_left(answered_later, break_cycles=False) == REQUESTS
