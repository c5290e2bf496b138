"""CoAP request fuzzing against a live gateway over a real UDP socket (hypothesis).

Each example sends a few datagrams from a socket of its own: requests with any code (0.01-0.31,
and responses, empty and reserved codes), CON, NON, ACK or RST, paths under /api/v1/ with the
tokens of two real devices, an unknown or an empty token, or arbitrary segments, Uri-Query,
Observe, Block1 (single blocks and whole uploads, in order or not), Size1, Content-Format, Accept,
an unknown elective option, JSON or raw payloads up to past the payload limit; and raw datagrams,
random or with a string option that is not UTF-8.

Every CON request gets a well-formed answer: a piggybacked response on an ACK with its message id
and token, or an empty ACK and then a separate response with its token; only codes docs/device-coap.md
documents for CoAP (never 5.00); 4.13 with Size1, 5.03 with Max-Age. A CON empty message or
unknown response gets a RST. The gateway logs no error, and afterwards a device's telemetry is
still stored (2.01). Bounded by ``FUZZ_SECONDS`` (20 by default) or ``max_examples``, whichever
ends first; the figures go to pytest's terminal summary.

The gateway runs on an event loop of the test's own, as in tests/test_fuzz_mqtt_session.py.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiocoap import Code, Message, optiontypes
from aiocoap.numbers.types import Type
from aiocoap.optiontypes import BlockOption
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from fuzz.logrecords import Recorded
from fuzz.summary import report
from fleetgate.app import Gateway
from tests.coap_support import coap_client, request
from tests.coap_wire import RawCoap
from tests.support import gateway_settings, new_tenant

SECONDS = int(os.environ.get("FUZZ_SECONDS", "20"))
MAX_PAYLOAD = 1024
# No shrinking: a failing example waits out its timeouts at every step of it, which would break
# the time bound; the failing example is printed as drawn.
SETTINGS = settings(max_examples=100_000, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
ANSWER = 5.0  # seconds an answer may take (an empty ACK comes after 1 s, the response later)
DOCUMENTED = {
    Code.CREATED, Code.CONTENT, Code.CONTINUE, Code.BAD_REQUEST, Code.UNAUTHORIZED, Code.NOT_FOUND,
    Code.METHOD_NOT_ALLOWED, Code.REQUEST_ENTITY_INCOMPLETE, Code.REQUEST_ENTITY_TOO_LARGE,
    Code.SERVICE_UNAVAILABLE,
}
A, B = "{device A}", "{device B}"  # the two devices' tokens, filled in when sent

# strategies

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)
TELEMETRY = st.dictionaries(st.sampled_from(["t", "h", "k" * 40]), st.integers(-100, 100) | st.text(max_size=8),
                            min_size=1, max_size=3)
PAYLOADS = st.one_of(
    st.just(b""), TELEMETRY.map(orjson.dumps), JSON.map(orjson.dumps), st.binary(max_size=64),
    st.integers(MAX_PAYLOAD - 8, MAX_PAYLOAD + 8).map(lambda n: b'{"k":"' + b"x" * (n - 8) + b'"}'),
    st.just(orjson.dumps({"method": "getSessionLimits", "params": {}})),
    st.sampled_from([b'{"deviceName":"x","provisionDeviceKey":"nope","provisionDeviceSecret":"nope"}', b"{}"]),
)
TOKEN = st.sampled_from([A, A, B, "unknown", "", A.upper()])
SEGMENT = st.sampled_from(["api", "v1", "telemetry", "attributes", "rpc", "provision", "1", "..", "", A]) | st.text(
    max_size=8)
PATHS = st.one_of(
    st.tuples(st.just("api"), st.just("v1"), TOKEN, st.sampled_from(["telemetry", "attributes", "rpc"])),
    st.tuples(st.just("api"), st.just("v1"), TOKEN, st.just("rpc"),
              st.sampled_from(["1", "0", "99999999999999999999", "-1", "x"])),
    st.just(("api", "v1", "provision")),
    st.lists(SEGMENT, max_size=6).map(tuple),
)
REQUEST_CODES = st.sampled_from([Code.POST] * 3 + [Code.GET] * 2 + [Code.PUT, Code.DELETE, Code.FETCH, Code.PATCH,
                                                                    Code.iPATCH]) | st.integers(1, 31).map(Code)
OTHER_CODES = st.sampled_from([0, 0x41, 0x44, 0x45, 0x80, 0xA0]) | st.integers(32, 255)  # empty, responses, reserved
BLOCK1 = st.builds(BlockOption.BlockwiseTuple, st.integers(0, 4) | st.integers(0, 2**20 - 1), st.booleans(),
                   st.integers(0, 7))


@dataclass
class Datagram:
    """One datagram to send: a message (encoded when sent, with a fresh message id) or raw bytes."""

    mtype: Type = Type.CON
    code: int = Code.POST
    token_length: int = 4
    path: tuple[str, ...] = ()
    payload: bytes = b""
    options: dict[str, Any] | None = None
    raw: bytes | None = None


@st.composite
def options(draw: Any) -> dict[str, Any]:
    chosen: dict[str, Any] = {}
    if draw(st.integers(0, 3)) == 0:
        chosen["observe"] = draw(st.sampled_from([0, 1]) | st.integers(0, 2**24 - 1))
    if draw(st.integers(0, 4)) == 0:
        chosen["block1"] = draw(BLOCK1)
    if draw(st.integers(0, 5)) == 0:
        chosen["size1"] = draw(st.integers(0, 2 * MAX_PAYLOAD) | st.integers(0, 2**32 - 1))
    if draw(st.integers(0, 5)) == 0:
        chosen["content_format"] = draw(st.sampled_from([0, 50, 60, 42]) | st.integers(0, 65535))
    if draw(st.integers(0, 7)) == 0:
        chosen["accept"] = draw(st.sampled_from([50, 0]))
    if draw(st.integers(0, 4)) == 0:
        chosen["uri_query"] = tuple(draw(st.lists(
            st.sampled_from(["clientKeys=a,b", "sharedKeys=c", "sharedKeys=", "="]) | st.text(max_size=10),
            min_size=1, max_size=3)))
    if draw(st.integers(0, 9)) == 0:
        chosen["elective"] = draw(st.binary(max_size=8))  # an unknown elective option (number 2048)
    return chosen


@st.composite
def request_datagrams(draw: Any) -> list[Datagram]:
    """One request, or a Block1 upload of one payload in blocks (in order or not)."""
    mtype = draw(st.sampled_from([Type.CON] * 4 + [Type.NON]))
    code = draw(REQUEST_CODES)
    path = draw(PATHS)
    chosen = draw(options())
    if draw(st.integers(0, 3)):
        return [Datagram(mtype, code, draw(st.integers(0, 8)), path, draw(PAYLOADS), chosen)]
    body = draw(PAYLOADS | st.binary(min_size=16, max_size=2 * MAX_PAYLOAD))
    szx = draw(st.integers(0, 6))
    size = 16 << szx
    blocks = [body[i:i + size] for i in range(0, len(body), size)] or [b""]
    numbers = list(range(len(blocks)))
    if draw(st.booleans()):
        numbers = draw(st.permutations(numbers)) if len(numbers) < 6 else numbers[::-1]
    chosen.pop("block1", None)
    sent = []
    for index, number in enumerate(numbers):
        block = {**chosen, "block1": BlockOption.BlockwiseTuple(number, number < len(blocks) - 1, szx)}
        if index and "size1" in block:
            del block["size1"]
        sent.append(Datagram(mtype, code, draw(st.integers(0, 8)), path, blocks[number], block))
    return sent


OTHERS = st.builds(Datagram, st.sampled_from(list(Type)), OTHER_CODES, st.integers(0, 8), PATHS, PAYLOADS,
                   st.just({}))
RAW = st.binary(max_size=80).map(lambda data: Datagram(raw=data)) | st.binary(min_size=1, max_size=4).map(
    # A Uri-Path that is not UTF-8 (aiocoap's decoder raises UnicodeDecodeError for it).
    lambda junk: Datagram(raw=bytes([0x40, Code.POST, 0x12, 0x34, 0xB0 | len(junk)]) + b"\xff" + junk[1:]))
# Requests the gateway takes (telemetry and attributes of a real device), between the others.
GOOD = st.builds(Datagram, st.just(Type.CON), st.just(Code.POST), st.integers(0, 8),
                 st.tuples(st.just("api"), st.just("v1"), st.sampled_from([A, B]),
                           st.sampled_from(["telemetry", "attributes"])), TELEMETRY.map(orjson.dumps), st.just({}))
EXAMPLES = st.lists(request_datagrams() | GOOD.map(lambda d: [d]) | OTHERS.map(lambda d: [d]) | RAW.map(lambda d: [d]),
                    min_size=1, max_size=5).map(lambda groups: list(itertools.chain.from_iterable(groups)))


# the live gateway

LOGGERS = ("fleetgate", "asyncio", "aiocoap")


class Live:
    """The gateway, its loop and two devices' tokens, shared by every example."""

    def __init__(self, database_url: str, directory: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.gateway = Gateway(gateway_settings(directory, max_payload_bytes=MAX_PAYLOAD), database_url)
        self.run(self.gateway.start())
        self.port = int(self.url("coap").rsplit(":", 1)[1])
        self.tokens = self.run(self._provision(self.url("http")))
        self.mids = itertools.count(1)
        self.sent: Counter[str] = Counter()  # datagrams by kind
        self.answers: Counter[str] = Counter()  # final answers by code, RSTs, empty ACKs

    def url(self, name: str) -> str:
        return next(listener.url for listener in self.gateway.listeners if listener.name == name)

    async def _provision(self, url: str) -> dict[str, str]:
        tenant = await new_tenant(self.gateway.services)
        tokens = {}
        async with aiohttp.ClientSession(url) as http:
            for placeholder in (A, B):
                async with http.post("/api/v1/provision", json={
                        "deviceName": "coap-fuzz-" + secrets.token_hex(4), "provisionDeviceKey": tenant.provision_key,
                        "provisionDeviceSecret": tenant.provision_secret}) as resp:
                    tokens[placeholder] = orjson.loads(await resp.read())["credentialsValue"]
        return tokens

    def run(self, awaitable: Any) -> Any:
        return self.loop.run_until_complete(awaitable)

    def close(self) -> None:
        self.run(self.gateway.stop())
        self.loop.close()

    async def telemetry_after(self) -> Message:
        async with coap_client() as context:
            async with asyncio.timeout(10):
                return await request(context, Code.POST, f"{self.url('coap')}/api/v1/{self.tokens[A]}/telemetry",
                                     b'{"after":1}')

    # one example

    def encode(self, datagram: Datagram) -> Message:
        mid = next(self.mids) % 65536
        path = tuple(self.tokens.get(s, self.tokens[A].upper() if s == A.upper() else s) for s in datagram.path)
        message = Message(code=Code(datagram.code), payload=datagram.payload, uri_path=path)
        message.mtype, message.mid = datagram.mtype, mid
        message.token = (mid * 7919).to_bytes(4, "big")[:datagram.token_length].ljust(datagram.token_length, b"\x00")
        for name, value in (datagram.options or {}).items():
            if name == "elective":
                message.opt.add_option(optiontypes.OpaqueOption(2048, value))
            else:
                setattr(message.opt, name, value)
        return message

    async def exchange(self, datagrams: list[Datagram]) -> None:
        client = await RawCoap.open(self.port)
        try:
            for datagram in datagrams:
                if datagram.raw is not None:
                    client.send_bytes(datagram.raw)
                    self.sent["raw datagrams"] += 1
                    continue
                message = self.encode(datagram)
                client.send(message)
                self.sent["CON requests" if message.mtype is Type.CON and message.code.is_request() else
                          "other messages"] += 1
                await self.answered(client, message)
        finally:
            client.close()

    async def answered(self, client: RawCoap, sent: Message) -> None:
        """The answers ``sent`` must get, checked; a NON request's response is taken if it comes."""
        if sent.mtype is not Type.CON:
            if sent.code.is_request() and sent.mtype is Type.NON:
                await self.response(client, sent, wait=0.2)
            return
        if not sent.code.is_request():
            if sent.code == Code.EMPTY or sent.code.is_response():
                reply = await self.next_for(client, lambda m: m.mid == sent.mid, ANSWER)
                assert reply is not None and reply.mtype is Type.RST and reply.code == Code.EMPTY, (sent, reply)
                self.answers["RST"] += 1
            return
        await self.response(client, sent, wait=ANSWER)

    async def response(self, client: RawCoap, sent: Message, wait: float) -> None:
        # By message id only an ACK or RST: the gateway numbers its own NON and CON messages, and a
        # late NON response to an earlier request may carry this request's message id. By token only
        # a message with a code: an empty RST (to an earlier datagram of the example, sent late)
        # has no token, which an empty-token request would otherwise match.
        first = await self.next_for(
            client, lambda m: ((m.mid == sent.mid and m.mtype in (Type.ACK, Type.RST))
                               or (m.token == sent.token and m.code != Code.EMPTY)), wait)
        if first is None:
            assert sent.mtype is Type.NON, f"no answer to {sent} {sent.opt}"
            return
        answer = first
        if sent.mtype is Type.CON:
            assert first.mtype is Type.ACK and first.mid == sent.mid, (sent, first)
            if first.code == Code.EMPTY:  # a separate response follows
                self.answers["empty ACK"] += 1
                answer = await self.next_for(client, lambda m: m.token == sent.token and m.code != Code.EMPTY, ANSWER)
                assert answer is not None, f"no separate response to {sent}"
        else:
            assert first.mtype is Type.NON, (sent, first)
        if answer.mtype is Type.CON:
            client.send(Message(_mtype=Type.ACK, _mid=answer.mid, code=Code.EMPTY))
        assert answer.token == sent.token, (sent, answer)
        assert answer.code in DOCUMENTED, (sent, sent.opt, answer, answer.payload)
        if answer.code == Code.REQUEST_ENTITY_TOO_LARGE:
            assert answer.opt.size1 == MAX_PAYLOAD, answer
        if answer.code == Code.SERVICE_UNAVAILABLE:
            assert answer.opt.max_age, answer
        if answer.code == Code.UNAUTHORIZED:
            assert not answer.payload, answer
        self.answers[str(answer.code).split(" ", 1)[0]] += 1

    @staticmethod
    async def next_for(client: RawCoap, wanted: Any, wait: float) -> Message | None:
        """The next datagram ``wanted`` accepts (others, such as answers to raw datagrams, are
        skipped); each must decode. None if none comes within ``wait`` seconds."""
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            try:
                data = await client.receive_bytes(left)
            except TimeoutError:
                return None
            message = Message.decode(data)  # well-formed, or this raises
            assert message.code == Code.EMPTY or message.code.is_response(), message
            if wanted(message):
                return message
        return None


class TimeUp(Exception):
    """The time bound, raised by the example after it: it ends hypothesis's run at once, as a
    failure would (shrinking is off), and is caught around it."""


def test_coap_requests_over_udp(database_url, tmp_path, pytestconfig) -> None:
    live = Live(database_url, str(tmp_path))
    errors = Recorded(logging.ERROR)
    for name in LOGGERS:
        logging.getLogger(name).addHandler(errors)
    started = time.monotonic()
    ran = 0

    @SETTINGS
    @given(EXAMPLES)
    def example(datagrams: list[Datagram]) -> None:
        nonlocal ran
        if time.monotonic() - started > SECONDS:
            raise TimeUp
        ran += 1
        live.run(live.exchange(datagrams))
        assert not errors.records, [r.getMessage() for r in errors.records]

    try:
        try:
            example()
        except TimeUp:
            pass
        took = time.monotonic() - started
        # Whatever happened, a device's telemetry is still stored and acknowledged.
        answer = live.run(live.telemetry_after())
        assert answer.code == Code.CREATED, answer
    finally:
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(errors)
        live.close()
    sent = ", ".join(f"{n} {kind}" for kind, n in sorted(live.sent.items()))
    answers = ", ".join(f"{kind} x{n}" for kind, n in sorted(live.answers.items()))
    report(pytestconfig, f"CoAP over UDP (hypothesis, tests/test_fuzz_coap.py): {ran} examples in {took:.0f} s: "
                         f"{sent}; answers {answers}")
    assert ran > 50
    assert not errors.records, [r.getMessage() for r in errors.records]
