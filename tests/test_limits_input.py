"""Limits on bad input (the table of docs/limits.md): sizes and lengths, on HTTP, MQTT (3.1.1 and 5) and CoAP."""

from __future__ import annotations

import asyncio
import secrets

import orjson
import pytest
from aiocoap import Code

from fleetgate.protocols.mqtt.packets import Disconnect, PubAck, Publish, Reason
from tests.coap_support import TIMEOUT, coap_client, coap_url_of, request
from tests.limits_support import (
    http_request, limited_gateway, mqtt_device, open_raw, post, provisioned_token, publish_qos1, read_to_eof,
    status_of,
)
from tests.mqtt_raw import RawMqtt

TELEMETRY = "v1/devices/me/telemetry"
LIMITS = {
    "max_payload_bytes": 4096, "max_key_length": 32, "max_string_length": 100, "max_datapoints_per_message": 10,
    "http_max_head_bytes": 2048, "mqtt_max_client_id_length": 64,
    # Exactly the telemetry topic's length (23): every MQTT test here publishes at the limit.
    "mqtt_max_topic_length": len(TELEMETRY),
}


@pytest.fixture(scope="module")
async def gw(database_url, tmp_path_factory):
    async with limited_gateway(database_url, tmp_path_factory.mktemp("limits-input"), **LIMITS) as running:
        yield running


@pytest.fixture(scope="module")
async def token(gw) -> str:
    return await provisioned_token(gw)


# packet and payload sizes

async def test_http_body_over_limit(gw, token) -> None:
    body = orjson.dumps({"k": "x" * 5000})
    response = await http_request(gw, post(f"/api/v1/{token}/telemetry", body))
    assert status_of(response) == 413
    # Declared by Content-Length or not (chunked): the body is never read past the limit.
    chunked = (f"POST /api/v1/{token}/telemetry HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               f"{len(body):x}\r\n").encode() + body + b"\r\n0\r\n\r\n"
    assert status_of(await http_request(gw, chunked)) == 413


@pytest.mark.parametrize("level", [4, 5])
async def test_mqtt_packet_over_limit(gw, token, level: int) -> None:
    client = await mqtt_device(gw, token, level)
    await client.send(b"\x32" + _varint(4096 + 1024 + 10) + b"\x00")  # a PUBLISH declaring too many bytes
    if level == 5:
        assert await client.packet() == Disconnect(Reason.PACKET_TOO_LARGE)
    assert await client.closed()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


# request head, topic and client id lengths

async def test_http_head_over_limit(gw, token) -> None:
    long_header = b"POST /api/v1/x/telemetry HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 3000 + b"\r\n\r\n"
    assert status_of(await http_request(gw, long_header)) == 431
    long_target = b"GET /api/v1/" + b"a" * 3000 + b"/attributes HTTP/1.1\r\nHost: x\r\n\r\n"
    assert status_of(await http_request(gw, long_target)) == 414
    # Headers dribbled in small chunks are counted as they come, not only when complete.
    reader, writer = await open_raw(gw, "http")
    writer.write(b"POST /api/v1/x/telemetry HTTP/1.1\r\nHost: x\r\nX-Pad: ")
    for _ in range(40):
        writer.write(b"b" * 100)
        await writer.drain()
        if reader.at_eof():
            break
    response = await read_to_eof(reader)
    assert status_of(response) == 431
    writer.close()
    # Under the limit: answered.
    ok = post(f"/api/v1/{token}/telemetry", b'{"a":1}').replace(b"Host: x", b"Host: x\r\nX-Pad: " + b"c" * 1500)
    assert status_of(await http_request(gw, ok)) == 200


@pytest.fixture(scope="module")
async def short_topics(database_url, tmp_path_factory):
    """A gateway whose topic limit (16, the least allowed) is under the telemetry topic's length."""
    async with limited_gateway(database_url, tmp_path_factory.mktemp("limits-topic"),
                               mqtt_max_topic_length=16) as running:
        yield running, await provisioned_token(running)


async def rows_with_key(gw, key: str) -> int:
    return await gw.services.pool.fetchval(
        "SELECT count(*) FROM ts_kv t JOIN key_dictionary k ON k.key_id = t.key WHERE k.key = $1", key)


@pytest.mark.parametrize("level", [4, 5])
async def test_mqtt_topic_too_long(gw, token, short_topics, level: int) -> None:
    """v1/devices/me/telemetry (23 characters) is a valid topic: over a limit of 16 it is refused
    as an unknown topic (MQTT 5 PUBACK 0x90; 3.1.1 PUBACK and dropped) and nothing is stored,
    while a shorter topic (v2/t) on the same connection is stored; at a limit of 23 the same
    topic is accepted and stored."""
    short_gw, short_token = short_topics
    over, under, edge = (f"{name}_{level}_{secrets.token_hex(3)}" for name in ("over", "under", "edge"))
    client = await mqtt_device(short_gw, short_token, level)
    ack = await publish_qos1(client, TELEMETRY, orjson.dumps({over: 1}))
    assert ack == PubAck(1, Reason.TOPIC_NAME_INVALID if level == 5 else Reason.SUCCESS)
    assert (await publish_qos1(client, "v2/t", orjson.dumps({under: 1}), 2)) == PubAck(2)  # stored, then acked
    await client.close()
    assert await rows_with_key(short_gw, under) == 1
    assert await rows_with_key(short_gw, over) == 0

    client = await mqtt_device(gw, token, level)
    assert (await publish_qos1(client, TELEMETRY, orjson.dumps({edge: 1}))) == PubAck(1)
    await client.close()
    assert await rows_with_key(gw, edge) == 1


@pytest.mark.parametrize("level", [4, 5])
async def test_mqtt_client_id_too_long(gw, token, level: int) -> None:
    reader, writer = await open_raw(gw, "mqtt")
    client = RawMqtt(reader, writer, level)
    connack = await client.connect(username=token, client_id="c" * 65)
    assert connack.reason_code == Reason.CLIENT_IDENTIFIER_NOT_VALID  # 3.1.1: return code 2
    assert await client.closed()
    ok = await mqtt_device(gw, token, level)
    await ok.close()


# data points, keys and strings: HTTP 413/400, MQTT 5 PUBACK 0x99, MQTT 3.1.1 closed

BAD_PAYLOADS = {
    "datapoints": (orjson.dumps({f"k{i}": i for i in range(11)}), 413),
    "key": (orjson.dumps({"k" * 33: 1}), 400),
    "string": (orjson.dumps({"s": "x" * 101}), 400),
    "json": (orjson.dumps({"j": {"x": "y" * 100}}), 400),
}


@pytest.mark.parametrize("case", BAD_PAYLOADS)
async def test_http_payload_limits(gw, token, case: str) -> None:
    body, status = BAD_PAYLOADS[case]
    assert status_of(await http_request(gw, post(f"/api/v1/{token}/telemetry", body))) == status
    assert status_of(await http_request(gw, post(f"/api/v1/{token}/attributes", body))) == status


@pytest.mark.parametrize("case", BAD_PAYLOADS)
async def test_coap_payload_limits(gw, token, case: str) -> None:
    """CoAP (aiocoap's client over UDP): 4.13 with Size1 for too many data points, 4.00 with the
    reason for a key or a string too long; telemetry and attributes alike."""
    body, status = BAD_PAYLOADS[case]
    expected = Code.REQUEST_ENTITY_TOO_LARGE if status == 413 else Code.BAD_REQUEST
    async with coap_client() as client, asyncio.timeout(TIMEOUT):
        for resource in ("telemetry", "attributes"):
            answer = await request(client, Code.POST, f"{coap_url_of(gw)}/api/v1/{token}/{resource}", body)
            assert answer.code == expected, (resource, answer, answer.payload)
            if expected == Code.REQUEST_ENTITY_TOO_LARGE:
                assert answer.opt.size1 == LIMITS["max_payload_bytes"]
            else:
                assert answer.payload, "a 4.00 says why"


@pytest.mark.parametrize("case", BAD_PAYLOADS)
async def test_mqtt_payload_limits(gw, token, case: str) -> None:
    body, _ = BAD_PAYLOADS[case]
    client = await mqtt_device(gw, token, 5)
    assert (await publish_qos1(client, TELEMETRY, body)) == PubAck(1, Reason.PAYLOAD_FORMAT_INVALID)
    await client.close()
    old = await mqtt_device(gw, token, 4)
    await old.send(Publish(TELEMETRY, body, qos=1, packet_id=1))
    assert await old.closed()


async def test_limits_at_the_edge_pass(gw, token) -> None:
    body = orjson.dumps({**{f"k{i}": i for i in range(9)}, "k" * 32: "x" * 100})
    assert status_of(await http_request(gw, post(f"/api/v1/{token}/telemetry", body))) == 200
    client = await mqtt_device(gw, token, 5)
    assert (await publish_qos1(client, TELEMETRY, body)) == PubAck(1)
    await client.close()
    marker = "e" * 24 + secrets.token_hex(4)  # 32 characters, at the key limit
    edge = orjson.dumps({**{f"k{i}": i for i in range(9)}, marker: "x" * 100})
    async with coap_client() as coap, asyncio.timeout(TIMEOUT):
        for resource in ("telemetry", "attributes"):
            answer = await request(coap, Code.POST, f"{coap_url_of(gw)}/api/v1/{token}/{resource}", edge)
            assert answer.code == Code.CREATED, (resource, answer, answer.payload)
    assert await rows_with_key(gw, marker) == 1
