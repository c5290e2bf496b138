"""Stateful fuzzing of the MQTT session (hypothesis RuleBasedStateMachine) against a live gateway
over a real loopback socket: CONNECTs right and wrong, PUBLISHes at every QoS to known and unknown
topics with valid and invalid payloads, SUBSCRIBE/UNSUBSCRIBE of own and foreign filters, PINGREQ,
stray PUBREL, a second CONNECT, garbage bytes, DISCONNECT, in any order, at MQTT 3.1.1 and 5.

After every step the server has either answered as MQTT says or closed the connection; it never
logs an error, never sends bytes the codec refuses, and always accepts a new device afterwards.
Bounded: ``max_examples`` sequences of at most ``stateful_step_count`` steps (see SETTINGS).

The gateway runs on an event loop of the test's own: hypothesis drives the machine synchronously,
and each step runs the loop until the step's exchange is done.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

import aiohttp
import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test,
)

from fuzz.logrecords import Recorded
from fuzz.summary import report
from fleetgate.core import codec as payloads
from fleetgate.app import Gateway
from fleetgate.core.errors import InvalidInput
from fleetgate.protocols.mqtt.datatypes import varint
from fleetgate.protocols.mqtt.packets import (
    MQTT_5, ConnAck, Connect, Disconnect, PingReq, PingResp, PubAck, PubComp, Publish, PubRec, PubRel, Reason,
    SubAck, Subscribe, Subscription, UnsubAck, Unsubscribe,
)
from tests.mqtt_raw import RawMqtt
from tests.support import gateway_settings, new_tenant

SETTINGS = settings(max_examples=60, stateful_step_count=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
LIMITS = payloads.PayloadLimits()
OWN_FILTERS = ["v1/devices/me/attributes", "v1/devices/me/rpc/request/+", "v2/a", "v2/r/req/+",
               "v1/devices/me/attributes/response/+"]
# An empty or ill-formed filter is refused per item (SUBACK 0x80/0x8F), as the codec documents.
FOREIGN_FILTERS = ["#", "+/#", "v1/devices/+/telemetry", "v1/devices/other/attributes", "$SYS/#", "v1/gateway/rpc",
                   "", "a/#/b", "v1/devices/me/+"]
# ThingsBoard's device topics (spec 3.2), read here independently of the gateway's route table.
STORED_TOPICS = {"v1/devices/me/telemetry": "telemetry", "v2/t": "telemetry", "v2/t/j": "telemetry",
                 "v1/devices/me/attributes": "attributes", "v2/a": "attributes", "v2/a/j": "attributes"}
REQUEST_PREFIXES = {"v1/devices/me/attributes/request/": "attribute request", "v2/a/req/": "attribute request",
                    "v1/devices/me/rpc/request/": "client rpc", "v2/r/req/": "client rpc",
                    "v1/devices/me/rpc/response/": "rpc reply", "v2/r/res/": "rpc reply"}
TOPICS = [*sorted(STORED_TOPICS), "v1/devices/me/attributes/request/1", "v1/devices/me/rpc/request/2",
          "v1/devices/me/rpc/response/3", "v1/gateway/telemetry", "v1/devices/other/telemetry", "x", "/"]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
PAYLOADS = JSON.map(lambda v: orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS) if _encodable(v) else b"{}") | st.binary(
    max_size=40)
STEP = 5.0  # seconds any answer or close may take
STEPS: dict[str, int] = {}  # rule name -> times run, printed: proof the machine did run


def _encodable(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return False
    return True


def publish_bytes(topic: str, payload: bytes, qos: int, packet_id: int | None, level: int) -> bytes:
    """A PUBLISH as it would be encoded, whatever its topic holds (U+0000 included)."""
    name = topic.encode()
    body = len(name).to_bytes(2, "big") + name + (packet_id.to_bytes(2, "big") if packet_id else b"")
    body += (b"\x00" if level == MQTT_5 else b"") + payload
    return bytes([0x30 | qos << 1]) + varint(len(body)) + body


def kind_of(topic: str) -> str | None:
    """What a device's PUBLISH to ``topic`` asks for; None for a topic the gateway does not serve."""
    if topic in STORED_TOPICS:
        return STORED_TOPICS[topic]
    for prefix, kind in REQUEST_PREFIXES.items():
        request_id = topic[len(prefix):]
        if (topic.startswith(prefix) and request_id.isascii() and request_id.isdigit() and len(request_id) <= 10
                and int(request_id) < 2**31):
            return kind
    return None


def acceptable(topic: str, payload: bytes) -> bool:
    """What the gateway stores (or answers) rather than refuses, by the payload codec itself."""
    kind = kind_of(topic)
    if kind is None:
        return False
    try:
        value = payloads.loads(payload)
        if kind == "telemetry":
            payloads.telemetry_from_json(value, 1_700_000_000_000, LIMITS)
        elif kind == "attributes":
            payloads.attributes_from_json(value, LIMITS)
        elif kind == "client rpc" and not isinstance(value, dict):
            return False  # a call is {"method": ..., "params": ...}
    except InvalidInput:
        return False
    return True


class Live:
    """The gateway, its loop and a device token, shared by every example."""

    def __init__(self, database_url: str, directory: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.gateway = Gateway(gateway_settings(directory, mqtt_connect_timeout_seconds=5.0), database_url)
        self.run(self.gateway.start())
        self.port = int(next(l.url for l in self.gateway.listeners if l.name == "mqtt").rsplit(":", 1)[1])
        http_url = next(l.url for l in self.gateway.listeners if l.name == "http")
        self.token = self.run(self._provision(http_url))

    async def _provision(self, url: str) -> str:
        tenant = await new_tenant(self.gateway.services)
        async with aiohttp.ClientSession(url) as http:
            async with http.post("/api/v1/provision", json={
                "deviceName": "fuzz-" + secrets.token_hex(4), "provisionDeviceKey": tenant.provision_key,
                "provisionDeviceSecret": tenant.provision_secret}) as resp:
                return orjson.loads(await resp.read())["credentialsValue"]

    def run(self, awaitable: Any) -> Any:
        return self.loop.run_until_complete(awaitable)

    def close(self) -> None:
        self.run(self.gateway.stop())
        self.loop.close()


def machine(live: Live) -> type[RuleBasedStateMachine]:
    class MqttSessionMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.client: RawMqtt | None = None
            self.level = 4
            self.connected = False
            self.packet_id = 0

        # helpers

        def open(self) -> None:
            self.client = live.run(RawMqtt.open(live.port, self.level))
            self.connected = False

        def send(self, data: bytes | Any) -> None:
            assert self.client is not None
            kind = type(data).__name__
            STEPS[kind] = STEPS.get(kind, 0) + 1
            try:
                live.run(self.client.send(data))
            except ConnectionError:
                pass

        def answer(self) -> Any:
            """The next packet but the PUBLISHes the gateway sends on its own (answers to
            attribute and RPC requests, which may come at any time), or None once it has closed."""
            assert self.client is not None
            try:
                while isinstance(packet := live.run(self.client.packet(timeout=STEP)), Publish):
                    pass
            except ConnectionError:
                return None
            return packet

        def expect_close(self) -> None:
            """The server closes (after at most a DISCONNECT/CONNACK on MQTT 5); then a new connection."""
            while (packet := self.answer()) is not None:
                assert self.level == MQTT_5 and isinstance(packet, Disconnect | ConnAck | PubAck), packet
            live.run(self.client.close())
            self.open()

        def next_id(self) -> int:
            self.packet_id = self.packet_id % 65_535 + 1
            return self.packet_id

        def ping(self) -> bool:
            """True if the connection is alive and answers; False if it was closed (then reopened)."""
            self.send(PingReq())
            packet = self.answer()
            if packet is None:
                live.run(self.client.close())
                self.open()
                return False
            assert packet == PingResp(), packet
            return True

        # rules

        @initialize(level=st.sampled_from([4, 5]))
        def start(self, level: int) -> None:
            self.level = level
            self.open()

        @precondition(lambda self: not self.connected)
        @rule(kind=st.sampled_from(["token"] * 4 + ["wrong", "provision", "basic-wrong", "ping-first"]),
              keep_alive=st.integers(0, 600),
              client_id=st.text(max_size=30).filter(lambda s: "\x00" not in s))
        def connect(self, kind: str, keep_alive: int, client_id: str) -> None:
            if kind == "ping-first":  # the first packet must be CONNECT
                self.send(PingReq())
                self.expect_close()
                return
            username = {"ping-first": "", "token": live.token, "wrong": "no-such-token", "provision": "provision",
                        "basic-wrong": "user"}[kind]
            password = b"pw" if kind == "basic-wrong" else None
            self.send(Connect(self.level, client_id, keep_alive=keep_alive, username=username, password=password))
            packet = self.answer()
            assert isinstance(packet, ConnAck), packet
            if kind in ("token", "provision"):
                assert packet.reason_code == 0, packet
                self.connected = kind == "token"
                if kind == "provision":  # a provisioning session: only provisioning; closed here
                    live.run(self.client.close())
                    self.open()
            else:
                assert packet.reason_code >= 0x80, packet
                self.expect_close()

        @precondition(lambda self: self.connected)
        @rule(topic=st.sampled_from(TOPICS), qos=st.integers(0, 2), payload=PAYLOADS)
        def publish_known(self, topic: str, qos: int, payload: bytes) -> None:
            self.publish(topic, qos, payload)

        @precondition(lambda self: self.connected)
        @rule(topic=st.sampled_from(TOPICS) | st.text(max_size=12), qos=st.integers(0, 2), payload=PAYLOADS)
        def publish(self, topic: str, qos: int, payload: bytes) -> None:
            packet_id = self.next_id() if qos else None
            if "\x00" in topic:  # the codec's encoder refuses to write one: put it on the wire by hand
                self.send(publish_bytes(topic, payload, qos, packet_id, self.level))
            else:
                self.send(Publish(topic, payload, qos, packet_id=packet_id))
            wire_invalid = not topic or "+" in topic or "#" in topic or "\x00" in topic
            if wire_invalid:
                self.expect_close()
                self.connected = False
                return
            good = acceptable(topic, payload)
            known = kind_of(topic) is not None
            if known and not good and self.level != MQTT_5:
                # 3.1.1: a malformed payload closes the connection.
                self.expect_close()
                self.connected = False
                return
            if qos == 0:
                assert self.ping(), "a QoS 0 PUBLISH closed the connection"
                return
            ack = self.answer()
            expected = PubAck if qos == 1 else PubRec
            assert isinstance(ack, expected) and ack.packet_id == packet_id, (ack, packet_id)
            if self.level == MQTT_5:
                wanted = Reason.SUCCESS if good else (
                    Reason.TOPIC_NAME_INVALID if not known else Reason.PAYLOAD_FORMAT_INVALID)
                assert ack.reason_code == wanted, (ack, wanted, topic, payload)
            if qos == 2:
                self.send(PubRel(packet_id))
                packet = self.answer()
                assert isinstance(packet, PubComp) and packet.packet_id == packet_id, packet

        @precondition(lambda self: self.connected)
        @rule(filters=st.lists(st.sampled_from(OWN_FILTERS + FOREIGN_FILTERS), min_size=1, max_size=4),
              qos=st.integers(0, 2))
        def subscribe(self, filters: list[str], qos: int) -> None:
            packet_id = self.next_id()
            self.send(Subscribe(packet_id, tuple(Subscription(f, qos) for f in filters)))
            suback = self.answer()
            assert isinstance(suback, SubAck) and suback.packet_id == packet_id, suback
            for topic_filter, code in zip(filters, suback.reason_codes, strict=True):
                if topic_filter in OWN_FILTERS:
                    assert code == min(qos, 1), (topic_filter, code)
                else:
                    assert code >= 0x80, (topic_filter, code)

        @precondition(lambda self: self.connected)
        @rule(filters=st.lists(st.sampled_from(OWN_FILTERS + FOREIGN_FILTERS[:-3]), min_size=1, max_size=3))
        def unsubscribe(self, filters: list[str]) -> None:
            packet_id = self.next_id()
            self.send(Unsubscribe(packet_id, tuple(filters)))
            unsuback = self.answer()
            assert isinstance(unsuback, UnsubAck) and unsuback.packet_id == packet_id, unsuback

        @precondition(lambda self: self.connected)
        @rule(packet_id=st.integers(1, 65_535))
        def stray_pubrel(self, packet_id: int) -> None:
            self.send(PubRel(packet_id))
            packet = self.answer()
            assert isinstance(packet, PubComp) and packet.packet_id == packet_id, packet

        @precondition(lambda self: self.connected)
        @rule()
        def second_connect(self) -> None:
            self.send(Connect(self.level, "again", username=live.token))
            self.expect_close()
            self.connected = False

        @precondition(lambda self: self.connected)
        @rule(data=st.binary(min_size=1, max_size=64))
        def garbage(self, data: bytes) -> None:
            """Arbitrary bytes: answered, buffered or refused, the session must not fail; the
            connection is then dropped from this side (a partial packet would swallow the next)."""
            self.send(data)
            live.run(self.client.close())
            self.open()

        @precondition(lambda self: self.connected)
        @rule()
        def disconnect(self) -> None:
            self.send(Disconnect())
            assert self.answer() is None
            live.run(self.client.close())
            self.open()

        @invariant()
        def alive_and_quiet(self) -> None:
            if self.client is not None and self.connected:
                assert self.ping(), "the connection closed without a reason"
                self.connected = True

        def teardown(self) -> None:
            if self.client is not None:
                live.run(self.client.close())

    return MqttSessionMachine


def test_mqtt_session_state_machine(database_url, tmp_path, pytestconfig) -> None:
    errors = Recorded(logging.ERROR)
    for name in ("fleetgate",):
        logging.getLogger(name).addHandler(errors)
    live = Live(database_url, str(tmp_path))
    try:
        started = time.monotonic()
        run_state_machine_as_test(machine(live), settings=SETTINGS)
        report(pytestconfig, f"MQTT session state machine (hypothesis): {sum(STEPS.values())} packets in "
                             f"{time.monotonic() - started:.0f} s, by kind {dict(sorted(STEPS.items()))}")
        assert sum(STEPS.values()) > SETTINGS.max_examples
        # Whatever happened, a device still connects and stores.
        client = live.run(RawMqtt.open(live.port, 5))
        assert live.run(client.connect(username=live.token, client_id="after")).reason_code == 0
        live.run(client.send(Publish("v1/devices/me/telemetry", b'{"after":1}', 1, packet_id=1)))
        assert live.run(client.packet()) == PubAck(1)
        live.run(client.close())
    finally:
        for name in ("fleetgate",):
            logging.getLogger(name).removeHandler(errors)
        live.close()
    assert not errors.records, [r.getMessage() for r in errors.records]

