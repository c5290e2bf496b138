"""Limits per source (the table of docs/limits.md): connections and connection rate per address,
authentication back-off per address, provisioning attempts per provision key. Each on a
gateway of its own, since every client here is 127.0.0.1."""

from __future__ import annotations

import asyncio
import secrets

import orjson

from fleetgate.protocols.mqtt.packets import ConnAck, PubAck, Publish, Reason, Subscribe, Subscription
from tests.limits_support import (
    header, http_request, limited_gateway, mqtt_device, open_raw, post, provisioned_token, read_to_eof,
    status_of,
)
from tests.mqtt_raw import RawMqtt
from tests.support import new_tenant

GET_ATTRIBUTES = b"GET /api/v1/%s/attributes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


async def raw_connack(gw, level: int, username: str | None = "nobody", client_id: str = "") -> ConnAck:
    reader, writer = await open_raw(gw, "mqtt")
    client = RawMqtt(reader, writer, level)
    connack = await client.connect(username=username, client_id=client_id or "c-" + secrets.token_hex(4))
    await client.close()
    return connack


async def test_connections_per_address(database_url, tmp_path) -> None:
    async with limited_gateway(database_url, tmp_path, max_connections_per_address=2) as gw:
        token = await provisioned_token(gw)  # one connection, closed
        first = await mqtt_device(gw, token, 5)
        held = await open_raw(gw, "http")  # HTTP and MQTT count together
        response = await http_request(gw, GET_ATTRIBUTES % token.encode())
        assert status_of(response) == 429 and header(response, "Retry-After") == "1"
        for level in (5, 4):  # MQTT 5: 0x97 Quota exceeded; 3.1.1: 3 Server unavailable
            connack = await raw_connack(gw, level, token)
            assert connack.reason_code == (Reason.QUOTA_EXCEEDED if level == 5 else Reason.SERVER_UNAVAILABLE)
        await first.close()
        held[1].close()
        await read_to_eof(held[0])
        # The MQTT session is gone once its socket is: a new connection is admitted again.
        second = await mqtt_device(gw, token, 4)
        await second.close()


async def test_connection_rate_per_address(database_url, tmp_path) -> None:
    async with limited_gateway(database_url, tmp_path, connection_rate_per_address=0.01,
                               connection_burst_per_address=3) as gw:
        token = await provisioned_token(gw)  # the first of the burst of 3
        client = await mqtt_device(gw, token, 5)  # the second
        assert status_of(await http_request(gw, GET_ATTRIBUTES % token.encode())) == 200  # the third
        response = await http_request(gw, GET_ATTRIBUTES % token.encode())
        assert status_of(response) == 429 and int(header(response, "Retry-After")) >= 60
        assert (await raw_connack(gw, 5, token)).reason_code == Reason.CONNECTION_RATE_EXCEEDED
        assert (await raw_connack(gw, 4, token)).reason_code == Reason.SERVER_UNAVAILABLE
        # An open connection is not affected.
        await client.send(Publish("v1/devices/me/telemetry", b'{"a":1}', 1, packet_id=1))
        assert await client.packet() == PubAck(1)
        await client.close()


async def test_auth_backoff(database_url, tmp_path) -> None:
    async with limited_gateway(database_url, tmp_path, auth_failures_per_address=3, auth_block_seconds=30) as gw:
        token = await provisioned_token(gw)
        assert status_of(await http_request(gw, GET_ATTRIBUTES % token.encode())) == 200
        # Failures on any protocol count together: two over HTTP, one over MQTT.
        for _ in range(2):
            assert status_of(await http_request(gw, GET_ATTRIBUTES % b"wrong-token")) == 401
        assert (await raw_connack(gw, 5, "wrong-token")).reason_code == Reason.BAD_USER_NAME_OR_PASSWORD
        # Blocked now: even a valid token, before any lookup.
        response = await http_request(gw, GET_ATTRIBUTES % token.encode())
        assert status_of(response) == 429 and 25 <= int(header(response, "Retry-After")) <= 30
        telemetry = await http_request(gw, post(f"/api/v1/{token}/telemetry", b'{"a":1}'))
        assert status_of(telemetry) == 429
        assert (await raw_connack(gw, 5, token)).reason_code == Reason.CONNECTION_RATE_EXCEEDED
        assert (await raw_connack(gw, 4, token)).reason_code == Reason.NOT_AUTHORIZED
        # Provisioning needs no credentials and is limited per key instead.
        tenant = await new_tenant(gw.services)
        body = orjson.dumps({"deviceName": "d-" + secrets.token_hex(3), "provisionDeviceKey": tenant.provision_key,
                             "provisionDeviceSecret": tenant.provision_secret})
        assert status_of(await http_request(gw, post("/api/v1/provision", body))) == 200


async def test_auth_backoff_expires(database_url, tmp_path) -> None:
    async with limited_gateway(database_url, tmp_path, auth_failures_per_address=1, auth_block_seconds=0.3) as gw:
        token = await provisioned_token(gw)
        assert status_of(await http_request(gw, GET_ATTRIBUTES % b"wrong-token")) == 401
        assert status_of(await http_request(gw, GET_ATTRIBUTES % token.encode())) == 429
        # The block is a deadline, not a task: the first request after it is served.
        await asyncio.sleep(0.35)
        assert status_of(await http_request(gw, GET_ATTRIBUTES % token.encode())) == 200


async def test_provision_rate_per_key(database_url, tmp_path) -> None:
    async with limited_gateway(database_url, tmp_path, provision_rate_per_key=0.01, provision_burst_per_key=2) as gw:
        tenant = await new_tenant(gw.services)

        def request(secret: str) -> bytes:
            return post("/api/v1/provision", orjson.dumps({
                "deviceName": "d-" + secrets.token_hex(3), "provisionDeviceKey": tenant.provision_key,
                "provisionDeviceSecret": secret}))

        assert orjson.loads((await http_request(gw, request("guess"))).split(b"\r\n\r\n", 1)[1])["status"] == "NOT_FOUND"
        assert status_of(await http_request(gw, request(tenant.provision_secret))) == 200
        refused = await http_request(gw, request(tenant.provision_secret))
        assert status_of(refused) == 429 and int(header(refused, "Retry-After")) >= 60
        # MQTT: PUBACK 0x97 and a FAILURE answer on /provision/response.
        reader, writer = await open_raw(gw, "mqtt")
        client = RawMqtt(reader, writer, 5)
        assert (await client.connect(username="provision", client_id="p-1")).reason_code == 0
        await client.send(Subscribe(1, (Subscription("/provision/response", 1),)))
        assert (await client.packet()).packet_id == 1
        await client.send(Publish("/provision/request", orjson.dumps({
            "deviceName": "m", "provisionDeviceKey": tenant.provision_key,
            "provisionDeviceSecret": tenant.provision_secret}), 1, packet_id=2))
        packets = [await client.packet(), await client.packet()]
        assert PubAck(2, Reason.QUOTA_EXCEEDED) in packets
        answer = next(p for p in packets if isinstance(p, Publish))
        assert orjson.loads(answer.payload)["status"] == "FAILURE"
        await client.close()
        # Another key is not affected.
        other = await new_tenant(gw.services)
        assert await provisioned_token(gw, other)


async def test_mqtt_max_connections(database_url, tmp_path) -> None:
    async with limited_gateway(database_url, tmp_path, mqtt_max_connections=1) as gw:
        token = await provisioned_token(gw)
        first = await mqtt_device(gw, token, 4)
        reader, writer = await open_raw(gw, "mqtt")
        assert await read_to_eof(reader) == b""  # closed at once, before any CONNECT
        writer.close()
        await first.close()


async def test_coap_auth_backoff_and_provision_rate(database_url, tmp_path) -> None:
    """CoAP has no connections to count, but an address's authentication failures and a
    provision key's attempts are limited as on the other protocols: 4.29 with Max-Age."""
    import aiocoap

    from tests.coap_support import coap_client, request

    async with limited_gateway(database_url, tmp_path, auth_failures_per_address=2, auth_block_seconds=30,
                               provision_rate_per_key=0.01, provision_burst_per_key=1) as gw, \
            coap_client() as context:
        url = next(listener.url for listener in gw.listeners if listener.name == "coap")
        tenant = await new_tenant(gw.services)

        def provision(name: str) -> bytes:
            return orjson.dumps({"deviceName": name, "provisionDeviceKey": tenant.provision_key,
                                 "provisionDeviceSecret": tenant.provision_secret})

        created = await request(context, aiocoap.POST, f"{url}/api/v1/provision", provision("c-1"))
        assert created.code == aiocoap.CREATED
        token = orjson.loads(created.payload)["credentialsValue"]
        limited = await request(context, aiocoap.POST, f"{url}/api/v1/provision", provision("c-2"))
        assert limited.code == aiocoap.Code.TOO_MANY_REQUESTS and limited.opt.max_age >= 60
        for _ in range(2):
            wrong = await request(context, aiocoap.POST, f"{url}/api/v1/wrong-token/telemetry", b'{"a":1}')
            assert wrong.code == aiocoap.UNAUTHORIZED
        blocked = await request(context, aiocoap.POST, f"{url}/api/v1/{token}/telemetry", b'{"a":1}')
        assert blocked.code == aiocoap.Code.TOO_MANY_REQUESTS and 25 <= blocked.opt.max_age <= 30
