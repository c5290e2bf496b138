"""protocols.coap.tuning on a bare aiocoap server: a slow answer's empty ACK waits ANSWER_WAIT_S,
an answer ready before that is piggybacked."""

from __future__ import annotations

import asyncio
import time

import aiocoap
from aiocoap import Code, Message
from aiocoap.numbers.types import Type
from aiocoap.resource import Resource, Site

from fleetgate.protocols.coap.tuning import ANSWER_WAIT_S, GatewayTuning, tune_requests
from tests.coap_wire import RawCoap, ack, request


class Delayed(Resource):
    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def render_post(self, request: Message) -> Message:
        await self.release.wait()
        return Message(code=Code.CREATED)


async def test_the_empty_ack_waits_and_a_quicker_answer_is_piggybacked() -> None:
    resource = Delayed()
    site = Site()
    site.add_resource(["x"], resource)
    context = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", 0), transports=["udp6"])
    manager = context.request_interfaces[0].token_interface
    tune_requests(manager, GatewayTuning())
    raw = await RawCoap.open(manager.message_interface.transport.get_extra_info("socket").getsockname()[1])
    try:
        started = time.monotonic()
        message = request(Code.POST, "/x", b"1")
        raw.send(message)
        empty = await raw.receive()
        assert (empty.mtype, empty.code) == (Type.ACK, Code.EMPTY)
        assert time.monotonic() - started >= ANSWER_WAIT_S * 0.9
        resource.release.set()
        separate = await raw.receive()
        assert (separate.mtype, separate.code) == (Type.CON, Code.CREATED)
        raw.send(ack(separate))
        # An answer ready within the wait is piggybacked on the ACK.
        raw.send(request(Code.POST, "/x", b"2"))
        answer = await raw.receive()
        assert (answer.mtype, answer.code) == (Type.ACK, Code.CREATED)
    finally:
        raw.close()
        await context.shutdown()
