"""The MQTT transport at the byte level: return codes, timeouts, limits, flow, wills, shutdown."""

from __future__ import annotations

import asyncio
import secrets

import orjson
import pytest

from fleetgate.protocols.mqtt.packets import (
    MQTT_5, Connect, Disconnect, Property, PubAck, Publish, Reason, Will,
)
from tests.mqtt_raw import RawMqtt
from tests.support import gateway_settings, new_tenant, running_gateway
from tests.telemetry_support import writes_blocked


@pytest.fixture(scope="module")
async def small(database_url, tmp_path_factory):
    """A gateway with small MQTT limits, for the tests that reach them."""
    settings = gateway_settings(str(tmp_path_factory.mktemp("mqtt-small")), mqtt_max_inflight=3,
                                mqtt_connect_timeout_seconds=0.5, max_payload_bytes=1024)
    async with running_gateway(database_url, settings) as gw:
        yield gw


def port_of(gw) -> int:
    return int(next(l.url for l in gw.listeners if l.name == "mqtt").rsplit(":", 1)[1])


async def token_for(gw, http_url: str) -> tuple[str, str, object]:
    import aiohttp

    tenant = await new_tenant(gw.services)
    name = "wire-" + secrets.token_hex(4)
    async with aiohttp.ClientSession(http_url) as http:
        async with http.post("/api/v1/provision", json={
            "deviceName": name, "provisionDeviceKey": tenant.provision_key,
            "provisionDeviceSecret": tenant.provision_secret}) as resp:
            token = orjson.loads(await resp.read())["credentialsValue"]
    return token, name, tenant


async def rows(gw, name: str) -> int:
    return await gw.services.pool.fetchval(
        "SELECT count(*) FROM ts_kv t JOIN devices d ON d.id = t.device_id WHERE d.name = $1", name)


@pytest.fixture
async def raw_clients():
    made: list[RawMqtt] = []

    async def make(port: int, level: int = 4) -> RawMqtt:
        made.append(await RawMqtt.open(port, level))
        return made[-1]

    yield make
    for client in made:
        await client.close()


async def test_mqtt311_connack_return_codes_are_thingsboard_s(mqtt_port, raw_clients) -> None:
    unknown_token = await raw_clients(mqtt_port)
    await unknown_token.send(Connect(4, "c1", username="nope"))
    assert await unknown_token.raw(4) == b"\x20\x02\x00\x05"
    client_id_only = await raw_clients(mqtt_port)
    await client_id_only.send(Connect(4, "only-a-client-id"))
    assert await client_id_only.raw(4) == b"\x20\x02\x00\x02"


async def test_unsupported_protocol_level_gets_connack_1(mqtt_port, raw_clients) -> None:
    client = await raw_clients(mqtt_port)
    # MQTT 3.1 (MQIsdp, level 3), which the gateway does not speak.
    await client.send(b"\x10\x11\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x03abc")
    assert await client.raw(4) == b"\x20\x02\x00\x01"
    assert await client.closed()


async def test_first_packet_must_be_connect(mqtt_port, raw_clients) -> None:
    client = await raw_clients(mqtt_port)
    await client.send(b"\xc0\x00")  # PINGREQ
    assert await client.closed()


async def test_connection_that_never_speaks_is_closed(small, raw_clients) -> None:
    client = await raw_clients(port_of(small))
    assert await client.closed(timeout=5)


async def test_malformed_remaining_length_is_closed(mqtt_port, raw_clients) -> None:
    client = await raw_clients(mqtt_port)
    await client.send(b"\x10\xff\xff\xff\xff\x01")
    assert await client.closed()


async def test_keep_alive_is_enforced_at_one_and_a_half_intervals(base_url, gateway, raw_clients) -> None:
    token, _, _ = await token_for(gateway, base_url)
    client = await raw_clients(port_of(gateway), MQTT_5)
    assert (await client.connect(token, keep_alive=1)).reason_code == 0
    started = asyncio.get_running_loop().time()
    goodbye = await client.packet(timeout=5)
    assert goodbye == Disconnect(Reason.KEEP_ALIVE_TIMEOUT)
    assert asyncio.get_running_loop().time() - started >= 1.4


async def test_packet_over_the_maximum_size_is_refused(small, raw_clients) -> None:
    token, _, _ = await token_for(small, next(l.url for l in small.listeners if l.name == "http"))
    client = await raw_clients(port_of(small), MQTT_5)
    connack = await client.connect(token)
    limit = connack.properties[Property.MAXIMUM_PACKET_SIZE]
    await client.send(Publish("v1/devices/me/telemetry", b"x" * limit, qos=1, packet_id=1))
    assert await client.packet() == Disconnect(Reason.PACKET_TOO_LARGE)


async def test_mqtt5_connack_advertises_and_the_gateway_honours_its_limits(small, raw_clients) -> None:
    http_url = next(l.url for l in small.listeners if l.name == "http")
    token, name, _ = await token_for(small, http_url)
    client = await raw_clients(port_of(small), MQTT_5)
    connack = await client.connect(token)
    assert connack.properties[Property.RECEIVE_MAXIMUM] == 3
    alias_max = connack.properties[Property.TOPIC_ALIAS_MAXIMUM]
    assert alias_max >= 1
    # A topic alias set once, then used alone.
    await client.send(Publish("v1/devices/me/telemetry", b'{"a":1}', qos=1, packet_id=1,
                              properties={Property.TOPIC_ALIAS: 1}))
    await client.send(Publish("", b'{"b":2}', qos=1, packet_id=2, properties={Property.TOPIC_ALIAS: 1}))
    assert [await client.packet(), await client.packet()] == [PubAck(1), PubAck(2)]
    assert await rows(small, name) == 2
    await client.send(Publish("", b'{"c":3}', qos=1, packet_id=3, properties={Property.TOPIC_ALIAS: alias_max + 1}))
    assert await client.packet() == Disconnect(Reason.TOPIC_ALIAS_INVALID)


async def test_acknowledgements_wait_for_the_commit_and_keep_their_order(small, database_url, raw_clients) -> None:
    http_url = next(l.url for l in small.listeners if l.name == "http")
    token, name, _ = await token_for(small, http_url)
    client = await raw_clients(port_of(small))
    assert (await client.connect(token)).reason_code == 0
    async with writes_blocked(database_url):
        for packet_id in range(1, 11):
            reading = {"ts": 1767225600000 + packet_id, "values": {"n": packet_id}}
            await client.send(Publish("v1/devices/me/telemetry", orjson.dumps(reading), qos=1,
                                      packet_id=packet_id))
        with pytest.raises(TimeoutError):
            await client.packet(timeout=0.5)  # nothing is acknowledged before it is stored
    # MQTT 3.1.1 has no Receive Maximum: past 3 in flight the gateway stops reading, then resumes.
    acks = [await client.packet() for _ in range(10)]
    assert acks == [PubAck(i) for i in range(1, 11)]
    assert await rows(small, name) == 10


async def test_mqtt5_client_exceeding_receive_maximum_is_disconnected(small, database_url, raw_clients) -> None:
    http_url = next(l.url for l in small.listeners if l.name == "http")
    token, _, _ = await token_for(small, http_url)
    client = await raw_clients(port_of(small), MQTT_5)
    await client.connect(token)
    async with writes_blocked(database_url):
        for packet_id in range(1, 5):
            await client.send(Publish("v1/devices/me/telemetry", b'{"x":1}', qos=1, packet_id=packet_id))
        assert await client.packet() == Disconnect(Reason.RECEIVE_MAXIMUM_EXCEEDED)


async def test_will_on_an_uplink_topic_is_stored_when_the_connection_drops(base_url, gateway, raw_clients) -> None:
    token, name, _ = await token_for(gateway, base_url)
    client = await raw_clients(port_of(gateway))
    will = Will("v1/devices/me/telemetry", b'{"ts":1767225600000,"values":{"online":false}}')
    assert (await client.connect(token, will=will)).reason_code == 0
    client.writer.transport.abort()  # no DISCONNECT
    async with asyncio.timeout(5):
        while await rows(gateway, name) == 0:
            await gateway.services.pool.execute("SELECT pg_sleep(0.05)")
    assert await rows(gateway, name) == 1


async def test_will_on_a_foreign_topic_is_refused_on_mqtt5(base_url, gateway, raw_clients) -> None:
    token, _, _ = await token_for(gateway, base_url)
    client = await raw_clients(port_of(gateway), MQTT_5)
    connack = await client.connect(token, will=Will("some/other/topic", b"bye"))
    assert connack.reason_code == Reason.TOPIC_NAME_INVALID


async def test_shutdown_tells_mqtt5_clients_with_0x8b(database_url, tmp_path, raw_clients) -> None:
    settings = gateway_settings(str(tmp_path))
    async with running_gateway(database_url, settings) as gw:
        http_url = next(l.url for l in gw.listeners if l.name == "http")
        token, _, _ = await token_for(gw, http_url)
        client = await raw_clients(port_of(gw), MQTT_5)
        await client.connect(token)
        await gw.stop()
        assert await client.packet() == Disconnect(Reason.SERVER_SHUTTING_DOWN)


async def test_database_connections_killed_mid_run_lose_nothing_acknowledged(
    base_url, gateway, database_url, raw_clients
) -> None:
    """PostgreSQL's connections are terminated while QoS 1 messages stream in: no PUBACK
    leaves before a commit, the writers reconnect, and every acknowledged message is
    stored exactly once; what was not acknowledged the client sends again (DUP) and it
    lands too."""
    import asyncpg

    token, name, _ = await token_for(gateway, base_url)
    client = await raw_clients(port_of(gateway))
    assert (await client.connect(token)).reason_code == 0
    admin = await asyncpg.connect(database_url)
    try:
        acknowledged: set[int] = set()
        total = 200
        for packet_id in range(1, total + 1):
            reading = {"ts": 1767225600000 + packet_id, "values": {"seq": packet_id}}
            await client.send(Publish("v1/devices/me/telemetry", orjson.dumps(reading), qos=1, packet_id=packet_id))
            if packet_id == total // 2:
                killed = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE pid <> pg_backend_pid() AND datname = current_database() AND backend_type = 'client backend'")
                assert killed >= 1
        while len(acknowledged) < total:
            try:
                ack = await client.packet(timeout=10)
            except ConnectionError:
                break
            assert isinstance(ack, PubAck)
            acknowledged.add(ack.packet_id)
        stored = {r["long_v"] for r in await gateway.services.pool.fetch(
            "SELECT t.long_v FROM ts_kv t JOIN devices d ON d.id = t.device_id WHERE d.name = $1", name)}
        assert acknowledged <= stored  # nothing acknowledged is missing
        # Whatever was not acknowledged is sent again on a new connection, as a client does.
        missing = sorted(set(range(1, total + 1)) - acknowledged)
        if missing:
            again = await raw_clients(port_of(gateway))
            await again.connect(token)
            for packet_id in missing:
                reading = {"ts": 1767225600000 + packet_id, "values": {"seq": packet_id}}
                await again.send(Publish("v1/devices/me/telemetry", orjson.dumps(reading), qos=1,
                                         packet_id=packet_id, dup=True))
            assert {(await again.packet()).packet_id for _ in missing} == set(missing)
        count = await gateway.services.pool.fetchval(
            "SELECT count(*) FROM ts_kv t JOIN devices d ON d.id = t.device_id WHERE d.name = $1", name)
        assert count == total  # every message once: no loss, no duplicate
    finally:
        await admin.close()


async def test_pipelined_messages_without_ts_each_keep_their_row(base_url, gateway, raw_clients) -> None:
    """Server-stamped readings of one device never share a millisecond: none overwrites another."""
    token, name, _ = await token_for(gateway, base_url)
    client = await raw_clients(port_of(gateway))
    await client.connect(token)
    for packet_id in range(1, 51):
        await client.send(Publish("v1/devices/me/telemetry", orjson.dumps({"n": packet_id}), qos=1,
                                  packet_id=packet_id))
    assert [(await client.packet()).packet_id for _ in range(50)] == list(range(1, 51))
    assert await rows(gateway, name) == 50


async def test_nothing_larger_than_the_client_takes_is_sent(base_url, gateway, management, raw_clients) -> None:
    token, name, tenant = await token_for(gateway, base_url)
    client = await raw_clients(port_of(gateway), MQTT_5)
    connack = await client.connect(token, properties={Property.MAXIMUM_PACKET_SIZE: 128})
    assert connack.reason_code == 0
    from fleetgate.protocols.mqtt.packets import Subscribe, Subscription

    await client.send(Subscribe(1, (Subscription("v1/devices/me/attributes", 1),)))
    await client.packet()  # SUBACK
    device_id = await gateway.services.pool.fetchval("SELECT id FROM devices WHERE name = $1", name)
    for value in ("x" * 200, "small"):
        async with management.post(f"/v5/iot/{tenant.project_id}/devices/{device_id}/attributes",
                                   params={"scope": "SHARED_SCOPE"}, json={"v": value},
                                   headers={"X-Auth-Token": tenant.token}) as resp:
            assert resp.status == 200
    update = await client.packet()
    assert orjson.loads(update.payload) == {"v": "small"}  # the oversize update was never sent


async def test_one_way_rpc_is_sent_and_answered_202(base_url, gateway, management, raw_clients) -> None:
    token, name, tenant = await token_for(gateway, base_url)
    client = await raw_clients(port_of(gateway))
    await client.connect(token)
    from fleetgate.protocols.mqtt.packets import Subscribe, Subscription

    await client.send(Subscribe(1, (Subscription("v1/devices/me/rpc/request/+", 0),)))
    await client.packet()  # SUBACK
    device_id = await gateway.services.pool.fetchval("SELECT id FROM devices WHERE name = $1", name)
    async with management.post(f"/v5/iot/{tenant.project_id}/devices/{device_id}/commands",
                               json={"method": "blink", "params": 3, "oneway": True},
                               headers={"X-Auth-Token": tenant.token}) as resp:
        assert resp.status == 202
    request = await client.packet()
    assert request.topic.startswith("v1/devices/me/rpc/request/")
    assert orjson.loads(request.payload) == {"method": "blink", "params": 3}


async def test_product_switch_acknowledges_malformed_payloads_on_mqtt311(base_url, gateway, raw_clients) -> None:
    import aiohttp

    tenant = await new_tenant(gateway.services, send_ack_on_validation_error=True)
    async with aiohttp.ClientSession(base_url) as http:
        async with http.post("/api/v1/provision", json={
                "deviceName": "lenient", "provisionDeviceKey": tenant.provision_key,
                "provisionDeviceSecret": tenant.provision_secret}) as resp:
            token = orjson.loads(await resp.read())["credentialsValue"]
    client = await raw_clients(port_of(gateway))
    await client.connect(token)
    await client.send(Publish("v1/devices/me/telemetry", b"{not json", qos=1, packet_id=1))
    assert await client.packet() == PubAck(1)
    await client.send(Publish("v1/devices/me/telemetry", b'{"fine":1}', qos=1, packet_id=2))
    assert await client.packet() == PubAck(2)  # still connected


async def test_full_ingest_queue_pushes_back_and_loses_nothing(database_url, tmp_path, raw_clients) -> None:
    settings = gateway_settings(str(tmp_path), ingest_queue_rows=6)
    async with running_gateway(database_url, settings) as gw:
        token, name, _ = await token_for(gw, next(l.url for l in gw.listeners if l.name == "http"))
        client = await raw_clients(port_of(gw))
        await client.connect(token)
        async with writes_blocked(database_url):
            for packet_id in range(1, 21):
                await client.send(Publish("v1/devices/me/telemetry", b'{"a":1,"b":2,"c":3}', qos=1,
                                          packet_id=packet_id))
            with pytest.raises(TimeoutError):
                await client.packet(timeout=0.5)
        acks = [await client.packet() for _ in range(20)]
        assert acks == [PubAck(i) for i in range(1, 21)]
        assert await rows(gw, name) == 60


async def test_downlink_keeps_to_the_clients_receive_maximum(base_url, gateway, management, raw_clients) -> None:
    from fleetgate.protocols.mqtt.packets import PingReq, PingResp, Subscribe, Subscription

    token, name, tenant = await token_for(gateway, base_url)
    client = await raw_clients(port_of(gateway), MQTT_5)
    assert (await client.connect(token, properties={Property.RECEIVE_MAXIMUM: 1})).reason_code == 0
    await client.send(Subscribe(1, (Subscription("v1/devices/me/attributes", 1),)))
    await client.packet()  # SUBACK
    device_id = await gateway.services.pool.fetchval("SELECT id FROM devices WHERE name = $1", name)
    for n in range(3):
        async with management.post(f"/v5/iot/{tenant.project_id}/devices/{device_id}/attributes",
                                   params={"scope": "SHARED_SCOPE"}, json={"n": n},
                                   headers={"X-Auth-Token": tenant.token}) as resp:
            assert resp.status == 200
    received = []
    for n in range(3):
        update = await client.packet()
        assert update.qos == 1 and orjson.loads(update.payload) == {"n": n}
        received.append(update.packet_id)
        # Nothing else comes before the PUBACK: the PINGRESP is next on the wire.
        await client.send(PingReq())
        assert isinstance(await client.packet(), PingResp)
        await client.send(PubAck(update.packet_id))
    assert len(set(received)) == 3
