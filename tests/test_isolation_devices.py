"""Device isolation: a device cannot publish, subscribe or read as another device, over MQTT
(topics) or HTTP (tokens), whatever topic or path it names."""

from __future__ import annotations

import secrets

import orjson
import pytest

from protocols.mqtt.packets import PubAck, Publish, Reason, SubAck, Subscribe, Subscription
from tests.management_client import Management
from tests.mqtt_raw import RawMqtt


async def provisioned(http, tenant) -> dict:
    name = "iso-" + secrets.token_hex(4)
    async with http.post("/api/v1/provision", json={"deviceName": name, "provisionDeviceKey": tenant.provision_key,
                                                    "provisionDeviceSecret": tenant.provision_secret}) as resp:
        token = orjson.loads(await resp.read())["credentialsValue"]
    return {"name": name, "token": token}


@pytest.fixture
async def pair(gateway, http, management, tenant) -> tuple[dict, dict]:
    """Two devices of one project (the closest neighbours there are), with their ids."""
    api = Management(management, tenant)
    devices = []
    for _ in range(2):
        device = await provisioned(http, tenant)
        found = await api.call("GET", "/devices", params={"device_name": device["name"]})
        device["id"] = found.body["devices"][0]["device_id"]
        devices.append(device)
    return devices[0], devices[1]


async def stored_keys(gateway, device_id: str) -> set[str]:
    rows = await gateway.services.pool.fetch(
        "SELECT k.key FROM ts_kv t JOIN key_dictionary k ON k.key_id = t.key WHERE t.device_id = $1", device_id)
    return {r["key"] for r in rows}


def other_device_topics(victim: dict) -> list[str]:
    return [
        f"v1/devices/{victim['id']}/telemetry", f"v1/devices/{victim['name']}/telemetry",
        f"v1/devices/{victim['token']}/telemetry", "v1/gateway/telemetry", "v1/gateway/attributes",
        "v1/gateway/connect", f"v1/devices/me/telemetry/{victim['id']}", f"{victim['token']}/telemetry",
    ]


@pytest.mark.parametrize("level", [4, 5])
async def test_mqtt_device_cannot_publish_as_another(gateway, mqtt_port, pair, level: int) -> None:
    attacker, victim = pair
    client = await RawMqtt.open(mqtt_port, level)
    assert (await client.connect(username=attacker["token"], client_id="a-" + secrets.token_hex(3))).reason_code == 0
    gateway_payload = orjson.dumps({victim["name"]: [{"ts": 1700000000000, "values": {"forged": 1}}]})
    for packet_id, topic in enumerate(other_device_topics(victim), start=1):
        await client.send(Publish(topic, gateway_payload if "gateway" in topic else b'{"forged":1}', 1,
                                  packet_id=packet_id))
        ack = await client.packet()
        assert ack == PubAck(packet_id, Reason.TOPIC_NAME_INVALID if level == 5 else Reason.SUCCESS), topic
    await client.send(Publish("v1/devices/me/telemetry", b'{"own":1}', 1, packet_id=100))
    assert await client.packet() == PubAck(100)
    await client.close()
    assert await stored_keys(gateway, victim["id"]) == set()
    assert await stored_keys(gateway, attacker["id"]) == {"own"}


@pytest.mark.parametrize("level", [4, 5])
async def test_mqtt_device_cannot_subscribe_as_another(gateway, mqtt_port, management, tenant, pair,
                                                       level: int) -> None:
    attacker, victim = pair
    client = await RawMqtt.open(mqtt_port, level)
    assert (await client.connect(username=attacker["token"], client_id="s-" + secrets.token_hex(3))).reason_code == 0
    filters = ["#", "+/#", "v1/devices/+/rpc/request/+", f"v1/devices/{victim['id']}/attributes",
               f"v1/devices/{victim['name']}/rpc/request/+", "v1/devices/+/attributes", "v1/gateway/rpc",
               "v1/gateway/attributes", "$SYS/#", "/provision/response"]
    await client.send(Subscribe(1, tuple(Subscription(f, 1) for f in filters)))
    suback = await client.packet()
    assert isinstance(suback, SubAck) and all(code >= 0x80 for code in suback.reason_codes), suback
    # Its own topics are granted; the victim's updates and calls still do not reach it.
    await client.send(Subscribe(2, (Subscription("v1/devices/me/attributes", 1),
                                    Subscription("v1/devices/me/rpc/request/+", 1))))
    assert (await client.packet()).reason_codes == (1, 1)
    api = Management(management, tenant)
    written = await api.call("POST", f"/devices/{victim['id']}/attributes", params={"scope": "SHARED_SCOPE"},
                             json={"victim_only": 1})
    assert written.status == 200
    # The attacker's own update is the marker: anything for the victim would have come before it.
    await api.call("POST", f"/devices/{attacker['id']}/attributes", params={"scope": "SHARED_SCOPE"},
                   json={"attacker_marker": 1})
    packet = await client.packet()
    assert isinstance(packet, Publish) and orjson.loads(packet.payload) == {"attacker_marker": 1}, packet
    await client.close()


async def test_mqtt_attribute_request_reads_only_its_own(gateway, mqtt_port, management, tenant, pair) -> None:
    attacker, victim = pair
    await Management(management, tenant).call("POST", f"/devices/{victim['id']}/attributes",
                                              params={"scope": "SHARED_SCOPE"}, json={"victim_secret": "s3"})
    client = await RawMqtt.open(mqtt_port, 5)
    assert (await client.connect(username=attacker["token"], client_id="r-" + secrets.token_hex(3))).reason_code == 0
    await client.send(Subscribe(1, (Subscription("v1/devices/me/attributes/response/+", 1),)))
    await client.packet()
    await client.send(Publish("v1/devices/me/attributes/request/7",
                              orjson.dumps({"sharedKeys": "victim_secret", "deviceName": victim["name"]}), 1,
                              packet_id=2))
    packets = [await client.packet(), await client.packet()]
    answer = next(p for p in packets if isinstance(p, Publish))
    assert b"s3" not in answer.payload and orjson.loads(answer.payload).get("shared", {}) == {}
    await client.close()


async def test_http_token_names_exactly_one_device(gateway, http, management, tenant, pair) -> None:
    attacker, victim = pair
    await Management(management, tenant).call("POST", f"/devices/{victim['id']}/attributes",
                                              params={"scope": "SHARED_SCOPE"}, json={"victim_secret": "s3"})
    async with http.get(f"/api/v1/{attacker['token']}/attributes?sharedKeys=victim_secret") as resp:
        assert resp.status == 200 and b"s3" not in await resp.read()
    # The victim's id, name, or a variation of its token are not credentials.
    for guess in (victim["id"], victim["name"], victim["token"].upper(), victim["token"] + "x",
                  victim["token"][:-1], f"{attacker['token']}%2F..%2F{victim['token']}"):
        async with http.post(f"/api/v1/{guess}/telemetry", data=b'{"forged":1}') as resp:
            assert resp.status in (401, 404), guess
        async with http.get(f"/api/v1/{guess}/attributes") as resp:
            assert resp.status in (401, 404), guess
    assert await stored_keys(gateway, victim["id"]) == set()


async def test_mqtt_token_of_one_device_is_not_another_s_client_id(gateway, mqtt_port, pair) -> None:
    """The user name is the credential: a client id naming the victim changes nothing."""
    attacker, victim = pair
    client = await RawMqtt.open(mqtt_port, 4)
    assert (await client.connect(username=attacker["token"], client_id=victim["id"])).reason_code == 0
    await client.send(Publish("v1/devices/me/telemetry", b'{"mine":1}', 1, packet_id=1))
    assert await client.packet() == PubAck(1)
    await client.close()
    assert await stored_keys(gateway, victim["id"]) == set()
    assert "mine" in await stored_keys(gateway, attacker["id"])
