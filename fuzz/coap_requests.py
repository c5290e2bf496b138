"""atheris harness for CoAP request handling (protocols/coap/site.py DeviceSite, blockwise.py,
routes.py, observe.py, receipts.py, errors.py) over the real core (gateway/auth.py, device_service.py,
provisioning.py, downlink.py, codec.py) with in-memory fakes of the storage ports.

Each input is used twice:
- as one datagram: aiocoap.Message.decode either refuses it (UnparsableMessage, which aiocoap's
  transport drops, or the UnicodeDecodeError of a string option that is not UTF-8, which
  protocols/coap/decoding.py drops) or yields a message; a CON or NON request is then handled
  as the gateway's UDP listener hands it over (aiocoap's message manager passes nothing else
  to the site);
- structure-aware: a sequence of 1-6 requests built from the bytes (any code, CON or NON, paths
  under /api/v1/ with a known, another or an unknown token, Uri-Query, Observe, Block1 series in
  order or not, Size1, Content-Format, JSON or raw payloads), each encoded and decoded again as
  it would cross the wire.

Whatever the request, the site raises nothing, logs no warning or error, and answers it on its pipe as
CoAP and docs/device-coap.md say: exactly one final response (or, for an Observe registration, a first
2.05 with Observe and no final one), only response codes the gateway documents (never 5.00), each
of which encodes to a datagram that decodes to the same code, options and payload; 4.13 carries
Size1, 5.03 Max-Age, 4.01 no payload, 2.31 the request's Block1; an unknown path is 4.04, a wrong
method 4.05, an unknown token 4.01; a message is stored only for the device whose token is in the
path and answered 2.01 only then; when the client's interest ends, no observation is left behind.

Run: ``python3 -m fuzz.coap_requests -max_total_time=20``; a crash leaves ``crash-<sha1>`` with
the input, to become a regression test in tests/test_fuzz_regressions.py.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any

import atheris
import orjson

# aiocoap is not instrumented: its encoding and decoding would be most of the time spent, and
# what is fuzzed here is the gateway's handling of what aiocoap decodes.
from aiocoap import Code, Message, error
from aiocoap.message import Direction
from aiocoap.numbers.types import Type
from aiocoap.optiontypes import BlockOption
from aiocoap.pipe import Pipe

with atheris.instrument_imports():
    from fleetgate.core.auth import DeviceAuthenticator
    from fleetgate.core.codec import PayloadLimits
    from fleetgate.core.device_service import DeviceService
    from fleetgate.core.device_channel import SessionLimits
    from fleetgate.core.downlink import Downlink
    from fleetgate.core.local_bus import LocalBus
    from fleetgate.core.provisioning import ProvisioningService
    from fleetgate.protocols.coap.site import DeviceSite

# The fakes import the gateway's model and errors, instrumented by the imports above.
from fuzz.coap_fakes import (
    BASIC_TOKEN, PROVISION_KEY, PROVISION_SECRET, REMOTES, TOKENS, Attributes, Audit, AuthStore, Pipeline,
    ProvisioningStore, Remote,
)
from fuzz.logrecords import Recorded

MAX_PAYLOAD = 256
LIMITS = PayloadLimits(max_key_length=16, max_string_length=64, max_datapoints=8)
ALLOWED = {
    Code.CREATED, Code.CONTENT, Code.CONTINUE, Code.BAD_REQUEST, Code.UNAUTHORIZED, Code.NOT_FOUND,
    Code.METHOD_NOT_ALLOWED, Code.REQUEST_ENTITY_INCOMPLETE, Code.REQUEST_ENTITY_TOO_LARGE,
    Code.SERVICE_UNAVAILABLE,
}
class Feature(enum.Enum):
    """The harness's own reading of the device API's resources (spec 3.5), to check the site by."""

    PROVISION = "provision"
    TELEMETRY = "telemetry"
    ATTRIBUTES = "attributes"
    RPC = "rpc"
    RPC_REPLY = "rpc reply"


@dataclass(frozen=True)
class Resource:
    feature: Feature
    token: str = ""


def route_of(path: tuple[str, ...]) -> Resource | None:
    """``/api/v1/provision`` and ``/api/v1/{token}/{telemetry|attributes|rpc}[/{requestId}]``."""
    if len(path) < 3 or path[:2] != ("api", "v1"):
        return None
    if len(path) == 3:
        return Resource(Feature.PROVISION) if path[2] == "provision" else None
    features = {"telemetry": Feature.TELEMETRY, "attributes": Feature.ATTRIBUTES, "rpc": Feature.RPC}
    feature = features.get(path[3])
    if feature is None or len(path) > 5 or "/" in path[2]:
        return None
    if len(path) == 4:
        return Resource(feature, path[2])
    request_id = path[4]
    if (feature is Feature.RPC and request_id.isascii() and request_id.isdigit() and len(request_id) <= 10
            and int(request_id) < 2**31):
        return Resource(Feature.RPC_REPLY, path[2])
    return None


METHODS = {Feature.PROVISION: {Code.POST}, Feature.TELEMETRY: {Code.POST, Code.GET},
           Feature.ATTRIBUTES: {Code.GET, Code.POST}, Feature.RPC: {Code.GET, Code.POST}, Feature.RPC_REPLY: {Code.POST}}
CODES = [Code.GET, Code.POST, Code.PUT, Code.DELETE, Code.FETCH, Code.PATCH, Code.iPATCH]


ERRORS = Recorded(logging.WARNING)
LOGGERS = ("fleetgate", "aiocoap", "fuzz.coap")
PIPE_LOG = logging.getLogger("fuzz.coap")

LOOP = asyncio.new_event_loop()  # the harness's own; importing this module changes no global state
PIPELINE = Pipeline(lambda coro: _spawn(coro))
TASKS: set[asyncio.Task[Any]] = set()
# Requests handed to the site so far, printed every second ("CoAP requests: N"): libFuzzer exits
# without running Python's exit handlers, and counts only inputs.
REQUESTS = [0]
PRINTED = [time.monotonic()]


def _spawn(coro: Any) -> asyncio.Task[Any]:
    task = LOOP.create_task(coro)
    TASKS.add(task)
    task.add_done_callback(TASKS.discard)
    return task


def _build_site() -> tuple[DeviceSite, Downlink]:
    bus = LocalBus()
    downlink = Downlink(SessionLimits(MAX_PAYLOAD, 100), bus)
    bus.receiver = downlink.receive
    service = DeviceService(
        auth=DeviceAuthenticator(AuthStore(), cache_seconds=60.0),
        provisioning=ProvisioningService(ProvisioningStore(), Audit()),  # type: ignore[arg-type]
        pipeline=PIPELINE, attributes=Attributes(), downlink=downlink, limits=LIMITS,  # type: ignore[arg-type]
        ack_stored=True,
    )
    return DeviceSite(service, MAX_PAYLOAD, _spawn), downlink


SITE, DOWNLINK = _build_site()


async def _settle() -> None:
    """Until every task the site started (and what they started) is done."""
    for _ in range(1000):
        await asyncio.sleep(0)
        if not TASKS:
            return
        await asyncio.gather(*list(TASKS))
    raise AssertionError("the site's tasks never settle")


async def _push(device: str, pushes: int) -> None:
    """The downlink's pushes, which reach the device's observations as notifications."""
    for n in range(pushes):
        DOWNLINK.receive({"t": "attributes", "d": device, "u": {"n": n}})
        DOWNLINK.receive({"t": "rpc", "d": device, "i": n + 1, "m": "m", "p": None})
    await _settle()


async def settle() -> None:
    """Wait while the site has work in progress (most requests are answered at once)."""
    if TASKS:
        await _settle()


# one request

def wire(response: Message, request: Message) -> None:
    """The response as the token and message managers send it: encodable, and decoded the same."""
    response.mtype = Type.ACK if request.mtype is Type.CON else Type.NON
    response.mid = request.mid
    response.token = request.token
    encoded = response.encode()
    again = Message.decode(encoded)
    again.direction = Direction.OUTGOING
    assert again.encode() == encoded, (response, again)
    assert again.code == response.code and again.payload == response.payload, (response, again)


def expected_device(path: tuple[str, ...]) -> str | None:
    """The device a request on ``path`` may act for: its token's device, or None."""
    route = route_of(path)
    return None if route is None else TOKENS.get(route.token)


async def serve(request: Message, *, accepting: bool = True, pushes: int = 0) -> list[tuple[Message, bool]]:
    """Hand ``request`` to the site as aiocoap's token manager does; check and return the answers."""
    REQUESTS[0] += 1
    events: list[tuple[Message, bool]] = []
    stored_before = len(PIPELINE.stored)

    def on_event(event: Any) -> bool:
        assert event.exception is None, event
        if event.message is not None:
            events.append((event.message, event.is_last))
        return not event.is_last

    pipe = Pipe(request, PIPE_LOG)
    stop = pipe.on_event(on_event)
    SITE.accepting = accepting
    SITE.handle(pipe)  # as the listener calls it: synchronously, from the datagram's callback
    await settle()
    observing = bool(events) and not events[0][1] and events[0][0].opt.observe == 0
    if observing:
        device = expected_device(request.opt.uri_path)
        assert device is not None and request.code == Code.GET and request.opt.observe == 0, (request, events)
        assert getattr(route_of(request.opt.uri_path), "feature", None) in (Feature.ATTRIBUTES, Feature.RPC), request
        assert SITE.observing(device) and DOWNLINK.connected(device)
        await _push(device, pushes)
    stop()  # the client's interest ends (a deregistration, a Reset, or it went away)
    await settle()
    assert not SITE.observers and not any(DOWNLINK.connected(d) for d in TOKENS.values()), SITE.observers
    assert not ERRORS.records, [(r.getMessage(), r.exc_info) for r in ERRORS.records]
    check(request, events, observing, len(PIPELINE.stored) - stored_before)
    return events


def check(request: Message, events: list[tuple[Message, bool]], observing: bool, stored: int) -> None:
    assert events, f"no answer to {request}"
    finals = [i for i, (_, last) in enumerate(events) if last]
    if observing:
        assert not finals, events
        assert all(m.code == Code.CONTENT and m.opt.observe is not None for m, _ in events), events
    else:
        assert finals == [len(events) - 1], events
    for message, _ in events:
        assert message.code in ALLOWED, (request, message)
        wire(message, request)
    answer = events[0][0] if observing else events[-1][0]  # the answer, not the notifications
    code = answer.code
    if code == Code.REQUEST_ENTITY_TOO_LARGE:
        assert answer.opt.size1 == MAX_PAYLOAD, answer
    if code == Code.SERVICE_UNAVAILABLE:
        assert answer.opt.max_age, answer
    if code == Code.UNAUTHORIZED:
        assert not answer.payload, answer
    if code == Code.CONTINUE:
        block = request.opt.block1
        assert block is not None and block.more and answer.opt.block1 == block, (request, answer)
    if not SITE.accepting:
        assert code == Code.SERVICE_UNAVAILABLE, answer
        return
    route = route_of(request.opt.uri_path)
    if route is None:
        assert code == Code.NOT_FOUND, (request, answer)
        return
    device = TOKENS.get(route.token)
    if request.code not in METHODS[route.feature]:
        assert code == Code.METHOD_NOT_ALLOWED, (request, answer)
        return
    if route.feature is Feature.TELEMETRY and request.code == Code.GET:
        assert code == Code.BAD_REQUEST, (request, answer)  # ThingsBoard: no telemetry subscription
        return
    if route.feature is Feature.PROVISION or device is not None:
        assert code != Code.UNAUTHORIZED, (request, answer)
    else:
        # An unknown (or MQTT_BASIC) token: only the body's refusals come before authentication's.
        assert code in (Code.UNAUTHORIZED, Code.CONTINUE, Code.BAD_REQUEST, Code.REQUEST_ENTITY_TOO_LARGE,
                        Code.REQUEST_ENTITY_INCOMPLETE), (request, answer)
    if stored:
        # Only for the device the token names, only a message the codec accepts, and once.
        assert device is not None and set(PIPELINE.stored[-stored:]) == {device}, (request, PIPELINE.stored)
        assert route.feature in (Feature.TELEMETRY, Feature.ATTRIBUTES) and stored == 1, (request, stored)
        assert code != Code.CONTINUE, (request, answer)
    if code == Code.CREATED and route.feature in (Feature.TELEMETRY, Feature.ATTRIBUTES):
        assert stored == 1 and PIPELINE.mode in ("now", "later"), (request, answer, stored)
    if code == Code.CONTENT and route.feature is Feature.ATTRIBUTES and device is not None:
        body = orjson.loads(answer.payload)
        assert all(v == device for section in body.values() for v in section.values()), (request, body)
    block = request.opt.block1
    if block is not None and request.code == Code.POST and code in (Code.CREATED, Code.CONTENT):
        # The final answer to a block-wise upload names the last block (RFC 7959 2.3).
        assert not block.more and answer.opt.block1 is not None, (request, answer)
        assert answer.opt.block1.block_number == block.block_number, (request, answer)


# inputs

async def one_datagram(data: bytes) -> None:
    try:
        message = Message.decode(data, REMOTES[0])
    except (error.UnparsableMessage, UnicodeDecodeError):
        return  # aiocoap refuses it before any request exists
    if message.code.is_request() and message.mtype in (Type.CON, Type.NON):
        PIPELINE.mode = "now"
        await serve(message)


def document(provider: atheris.FuzzedDataProvider, depth: int = 0) -> Any:
    kind = provider.ConsumeIntInRange(0, 7 if depth < 2 else 4)
    if kind == 0:
        return provider.ConsumeIntInRange(-(2**63), 2**63 - 1)
    if kind == 1:
        return provider.ConsumeRegularFloat()
    if kind == 2:
        return provider.ConsumeUnicodeNoSurrogates(provider.ConsumeIntInRange(0, 70))
    if kind == 3:
        return provider.PickValueInList([None, True, False, "", "getSessionLimits", PROVISION_KEY, PROVISION_SECRET])
    if kind == 4:
        return provider.ConsumeIntInRange(1_600_000_000_000, 1_800_000_000_000)
    if kind == 5:
        return [document(provider, depth + 1) for _ in range(provider.ConsumeIntInRange(0, 3))]
    keys = ["ts", "values", "method", "params", "deviceName", "provisionDeviceKey", "provisionDeviceSecret",
            "credentialsType", "token", "k", "a" * 17, ""]
    return {(provider.PickValueInList(keys) if provider.ConsumeBool()
             else provider.ConsumeUnicodeNoSurrogates(provider.ConsumeIntInRange(0, 18))): document(provider, depth + 1)
            for _ in range(provider.ConsumeIntInRange(0, 5))}


def payload(provider: atheris.FuzzedDataProvider) -> bytes:
    kind = provider.ConsumeIntInRange(0, 4)
    if kind == 0:
        return b""
    if kind == 4:  # telemetry or attributes the codec accepts, mostly
        values = {provider.PickValueInList(["k", "t", "k" * 16, "k" * 17]): document(provider, 2)
                  for _ in range(provider.ConsumeIntInRange(1, 4))}
        body: Any = {"ts": document(provider, 2), "values": values} if provider.ConsumeBool() else values
        try:
            return orjson.dumps(body)
        except (TypeError, orjson.JSONEncodeError):
            return b'{"k":1}'
    if kind == 1:
        return provider.ConsumeBytes(provider.ConsumeIntInRange(0, 2 * MAX_PAYLOAD))
    if kind == 2:  # a provisioning request, right or nearly
        body = {"deviceName": provider.ConsumeUnicodeNoSurrogates(provider.ConsumeIntInRange(0, 12)),
                "provisionDeviceKey": provider.PickValueInList([PROVISION_KEY, "", "other", "\x00"]),
                "provisionDeviceSecret": provider.PickValueInList([PROVISION_SECRET, "", "wrong"])}
        if provider.ConsumeBool():
            body["credentialsType"] = provider.PickValueInList(["ACCESS_TOKEN", "MQTT_BASIC", "X509_CERTIFICATE", "x"])
            body["token"] = provider.ConsumeUnicodeNoSurrogates(provider.ConsumeIntInRange(0, 10))
        return orjson.dumps(body)
    try:
        return orjson.dumps(document(provider))
    except (TypeError, orjson.JSONEncodeError):
        return b"{}"


def path(provider: atheris.FuzzedDataProvider) -> tuple[str, ...]:
    token = provider.PickValueInList([*TOKENS, BASIC_TOKEN, "unknown", "", "tokenA ", "TOKENA"])
    if provider.ConsumeIntInRange(0, 9) == 0:
        token = provider.ConsumeUnicodeNoSurrogates(provider.ConsumeIntInRange(0, 12))
    shape = provider.ConsumeIntInRange(0, 9)
    if shape == 0:
        return ("api", "v1", "provision")
    if shape <= 6:
        return ("api", "v1", token, provider.PickValueInList(["telemetry", "attributes", "rpc"]))
    if shape == 7:
        request_id = provider.PickValueInList(["1", "0", "99999999999999999999", "-1", "x", "١", "1.5"])
        return ("api", "v1", token, "rpc", request_id)
    if shape == 8:
        return tuple(provider.PickValueInList(["api", "v1", "v2", token, "telemetry", "rpc", "provision", "", ".."])
                     for _ in range(provider.ConsumeIntInRange(0, 6)))
    return tuple(provider.ConsumeUnicodeNoSurrogates(provider.ConsumeIntInRange(0, 8))
                 for _ in range(provider.ConsumeIntInRange(0, 5)))


@dataclass
class Series:
    """What the requests of one exchange share: a Block1 upload continues only on the same
    remote, path and query."""

    uri_path: tuple[str, ...]
    code: Any
    remote: Remote
    uri_query: tuple[str, ...] = ()
    observe: int | None = None
    content_format: int | None = None


def series(provider: atheris.FuzzedDataProvider) -> Series:
    pick = provider.ConsumeIntInRange(0, 7)
    code = Code.POST if pick < 4 else Code.GET if pick < 6 else provider.PickValueInList(CODES) if pick == 6 else (
        Code(provider.ConsumeIntInRange(1, 31)))
    chosen = Series(path(provider), code, provider.PickValueInList(REMOTES))
    if provider.ConsumeIntInRange(0, 3) == 0:
        chosen.observe = provider.PickValueInList([0, 1, 0, 2**24 - 1])
    if provider.ConsumeIntInRange(0, 3) == 0:
        chosen.uri_query = tuple(
            provider.PickValueInList(["clientKeys=CLIENT_SCOPE-device-a", "sharedKeys=SHARED_SCOPE-device-b",
                                      "sharedKeys=", "clientKeys", "=", "client_keys=a,b,,c"])
            for _ in range(provider.ConsumeIntInRange(1, 3)))
    if provider.ConsumeIntInRange(0, 5) == 0:
        chosen.content_format = provider.PickValueInList([0, 50, 42, 60, 65535])
    return chosen


def request(provider: atheris.FuzzedDataProvider, chosen: Series, body: bytes,
            block1: BlockOption.BlockwiseTuple | None = None, size1: int | None = None) -> Message:
    message = Message(code=chosen.code, payload=body, uri_path=chosen.uri_path)
    message.mtype = Type.CON if provider.ConsumeBool() else Type.NON
    message.mid = provider.ConsumeIntInRange(0, 65535)
    message.token = provider.ConsumeBytes(provider.ConsumeIntInRange(0, 8))
    if chosen.observe is not None:
        message.opt.observe = chosen.observe
    if chosen.uri_query:
        message.opt.uri_query = chosen.uri_query
    if chosen.content_format is not None:
        message.opt.content_format = chosen.content_format
    if block1 is not None:
        message.opt.block1 = block1
    if size1 is not None:
        message.opt.size1 = size1
    return Message.decode(message.encode(), chosen.remote)  # across the wire, as the server decodes it


def block_series(provider: atheris.FuzzedDataProvider, chosen: Series, body: bytes) -> list[Message]:
    """A Block1 upload of ``body``: in order, or with a block out of place, or a wrong More flag."""
    szx = provider.ConsumeIntInRange(0, 7)
    size = 2 ** (szx + 4) if szx < 7 else 1024
    blocks = [body[i:i + size] for i in range(0, len(body), size)] or [b""]
    numbers = list(range(len(blocks)))
    if provider.ConsumeIntInRange(0, 3) == 0:
        numbers.insert(provider.ConsumeIntInRange(0, len(numbers)), provider.ConsumeIntInRange(0, len(numbers) + 2))
    size1 = provider.PickValueInList([None, None, len(body), MAX_PAYLOAD + 1, 0])
    messages = []
    for index, number in enumerate(numbers):
        chunk = blocks[number] if number < len(blocks) else b"x" * size
        more = index < len(numbers) - 1 if provider.ConsumeIntInRange(0, 7) else provider.ConsumeBool()
        messages.append(request(provider, chosen, chunk, BlockOption.BlockwiseTuple(number, more, szx),
                                size1 if index == 0 else None))
    return messages


async def exchanges(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    PIPELINE.mode = provider.PickValueInList(["now", "now", "later", "full", "fail"])
    accepting = provider.ConsumeIntInRange(0, 15) != 0
    for _ in range(provider.ConsumeIntInRange(1, 6)):
        chosen = series(provider)
        body = payload(provider)
        if provider.ConsumeIntInRange(0, 3) == 0:
            messages = block_series(provider, chosen, body)
        else:
            messages = [request(provider, chosen, body)]
        pushes = provider.ConsumeIntInRange(0, 2)
        for message in messages:
            await serve(message, accepting=accepting, pushes=pushes)


async def both(data: bytes) -> None:
    await one_datagram(data)
    await exchanges(data)


def one_input(data: bytes) -> None:
    LOOP.run_until_complete(both(data))
    if time.monotonic() - PRINTED[0] >= 1:
        PRINTED[0] = time.monotonic()
        print(f"CoAP requests: {REQUESTS[0]}", file=sys.stderr, flush=True)


def replay(data: bytes) -> None:
    """One input as the fuzzer runs it, from a test (tests/test_fuzz_regressions.py): what the
    gateway logs meanwhile at WARNING or above fails it too."""
    for name in LOGGERS:
        logging.getLogger(name).addHandler(ERRORS)
    try:
        one_input(data)
    finally:
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(ERRORS)
        ERRORS.records.clear()


def main() -> None:
    for name in LOGGERS:  # whatever the site and the core log at WARNING or above fails the input
        logging.getLogger(name).addHandler(ERRORS)
        logging.getLogger(name).propagate = False
    # Coverage of the modules imported above (the site, the core), not of asyncio and aiocoap:
    # instrumenting everything runs the harness several times slower. Structured inputs need
    # room: long inputs from the start (unless the command line says otherwise).
    argv = list(sys.argv)
    if not any(a.startswith("-max_len=") for a in argv):
        argv += ["-max_len=1024", "-len_control=0"]
    atheris.Setup(argv, lambda data: one_input(bytes(data)))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
