"""The load generator's gateway messages (ThingsBoard's v1/gateway/telemetry): payloads, packets
and the connection that sends them, each message read back by the gateway's own MQTT decoder."""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson
import pytest

from fleetgate.protocols.mqtt import codec
from fleetgate.protocols.mqtt.packets import Publish
from fleetgate.simulator.cli import bench_request, build_parser
from fleetgate.simulator.loadspec import LoadSpec
from fleetgate.simulator.mqtt_connection import MqttConnection
from fleetgate.simulator.mqtt_gateway import (
    GATEWAY_TELEMETRY_TOPIC,
    gateway_payloads,
    payload_parts,
    subdevice_name,
    turns,
)
from fleetgate.simulator.mqtt_load import priming_rounds, template_of
from fleetgate.simulator.mqtt_packets import MQTT_5, MQTT_311, PublishTemplate
from fleetgate.simulator.workloads import MqttTelemetrySpec

BODY = b'{"temperature":21.5,"humidity":40,"active":true}'
VALUES = {"temperature": 21.5, "humidity": 40, "active": True}
TS = 1_795_000_000_123


def decoded(data: bytes, version: int = MQTT_311) -> list[Publish]:
    packets = codec.Decoder(protocol_level=version).feed(data)
    assert all(isinstance(p, Publish) for p in packets)
    return packets  # type: ignore[return-value]


def test_timestamped_payload_is_thingsboard_s_gateway_telemetry() -> None:
    parts = payload_parts(["A", "B", 'quote"d'], BODY, timestamp=True)
    assert len(parts) == 4  # one T for each sub-device's reading
    reading = [{"ts": TS, "values": VALUES}]
    assert orjson.loads((b"%d" % TS).join(parts)) == {"A": reading, "B": reading, 'quote"d': reading}


def test_plain_payload_carries_values_for_the_server_to_stamp() -> None:
    (payload,) = payload_parts(["A", "B"], BODY, timestamp=False)
    assert orjson.loads(payload) == {"A": [VALUES], "B": [VALUES]}


def test_sub_devices_take_turns_evenly() -> None:
    assert turns(100, 10) == 10 and turns(5, 2) == 5 and turns(6, 4) == 3 and turns(3, 3) == 1
    payloads = gateway_payloads("p-", 7, 5, 2, BODY, timestamp=False)
    assert len(payloads) == 5
    messages = [orjson.loads(parts[0]) for parts in payloads]
    assert [list(m) for m in messages[:3]] == [["p-7-0", "p-7-1"], ["p-7-2", "p-7-3"], ["p-7-4", "p-7-0"]]
    # Once round, every sub-device has sent as often as every other.
    assert Counter(name for m in messages for name in m) == {subdevice_name("p-", 7, j): 2 for j in range(5)}


def test_a_message_names_at_most_the_gateway_s_sub_devices() -> None:
    with pytest.raises(ValueError):
        gateway_payloads("p-", 0, 3, 4, BODY, timestamp=False)
    with pytest.raises(ValueError):
        MqttTelemetrySpec(("t",), subdevices=3, devices_per_message=4)


@pytest.mark.parametrize("version", [MQTT_311, MQTT_5])
@pytest.mark.parametrize("qos", [0, 1])
def test_cycle_template_encodes_what_the_server_decodes(version: int, qos: int) -> None:
    payloads = gateway_payloads("gw-", 0, 4, 2, BODY, timestamp=True)
    template = PublishTemplate.build_cycle(GATEWAY_TELEMETRY_TOPIC, payloads, qos=qos, version=version)
    data = b"".join(template.encode(turn + 1, TS + turn, turn) for turn in range(3))
    messages = decoded(data, version)
    assert [m.topic for m in messages] == [GATEWAY_TELEMETRY_TOPIC] * 3
    assert [m.qos for m in messages] == [qos] * 3
    assert [m.packet_id for m in messages] == ([1, 2, 3] if qos else [None] * 3)
    assert [orjson.loads(m.payload) for m in messages] == [
        {"gw-0-0": [{"ts": TS, "values": VALUES}], "gw-0-1": [{"ts": TS, "values": VALUES}]},
        {"gw-0-2": [{"ts": TS + 1, "values": VALUES}], "gw-0-3": [{"ts": TS + 1, "values": VALUES}]},
        {"gw-0-0": [{"ts": TS + 2, "values": VALUES}], "gw-0-1": [{"ts": TS + 2, "values": VALUES}]},
    ]


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data


@pytest.mark.parametrize("qos", [0, 1])
async def test_connection_sends_its_gateway_s_messages_in_turn(qos: int) -> None:
    spec = MqttTelemetrySpec(("gw-token",), topic=GATEWAY_TELEMETRY_TOPIC, qos=qos, timestamps=True,
                             client_prefix="bench-", first=3, subdevices=3, devices_per_message=2)
    (template,) = template_of(spec)  # type: ignore[misc]
    conn = MqttConnection(0, b"CONNECT", template, window=10)
    transport = _Transport()
    conn.connection_made(transport)
    conn.data_received(b"\x20\x02\x00\x00")
    transport.written.clear()
    conn.publish(2, 7)
    conn.publish(2, 8)
    messages = decoded(bytes(transport.written))
    bodies = [orjson.loads(m.payload) for m in messages]
    assert [sorted(b) for b in bodies] == [
        ["bench-3-0", "bench-3-1"], ["bench-3-0", "bench-3-2"], ["bench-3-1", "bench-3-2"], ["bench-3-0", "bench-3-1"],
    ]
    stamps = [{r[0]["ts"] for r in b.values()} for b in bodies]
    assert all(len(s) == 1 for s in stamps)  # one T a message
    flat = [s.pop() for s in stamps]
    assert flat == sorted(set(flat))  # and a later one for each message: no sub-device repeats a (key, ts)
    assert conn.sent == 4
    assert list(conn.inflight.items()) == ([(1, 7), (2, 7), (3, 8), (4, 8)] if qos else [])


def test_gateway_spec_counts_every_sub_device_s_data_points_and_survives_the_trip_to_a_worker() -> None:
    spec = MqttTelemetrySpec(tuple(f"t{i}" for i in range(4)), topic=GATEWAY_TELEMETRY_TOPIC, subdevices=5,
                             devices_per_message=2, client_prefix="b-", version=MQTT_5)
    assert spec.datapoints == 6
    assert priming_rounds(spec) == 5 and priming_rounds(MqttTelemetrySpec(("t",))) == 1
    load = LoadSpec("127.0.0.1", 1883, spec, connections=4)
    assert LoadSpec.from_json(orjson.loads(orjson.dumps(load.to_json()))) == load
    # Split over generator processes, each gateway keeps its number, so sub-device names stay unique.
    names = set()
    for share in load.split(2):
        workload = share.workload
        assert isinstance(workload, MqttTelemetrySpec)
        for template in template_of(workload):  # type: ignore[union-attr]
            for entry in template.cycle:
                payload = b"".join(entry[1:])[1:]  # MQTT 5's empty properties first
                names.update(orjson.loads(payload))
    assert names == {f"b-{g}-{j}" for g in range(4) for j in range(5)}


def test_bench_mqtt_takes_the_gateway_options() -> None:
    args = build_parser().parse_args(
        ["bench", "mqtt", "--gateways", "3", "--subdevices", "50", "--devices-per-message", "5"])
    options, _ = bench_request(args)
    assert (options.gateways, options.subdevices, options.devices_per_message) == (3, 50, 5)
    # A gateway keeps as many data points in flight as the direct run does: 1000 x 10 / (3 x 5).
    assert options.gateway_window == 667
    options, _ = bench_request(build_parser().parse_args(["bench", "mqtt", "--gateways", "3", "--gateway-inflight", "7"]))
    assert options.gateway_window == 7
    options, _ = bench_request(build_parser().parse_args(["bench", "mqtt"]))
    assert options.gateways == 0  # the direct-device scenario, as before
