"""Device isolation: a device cannot publish, subscribe or read as another device, over MQTT
(topics), HTTP or CoAP (tokens), whatever topic or path it names."""

from __future__ import annotations

import asyncio
import secrets

import orjson
import pytest
from aiocoap import Code, Message

from fleetgate.protocols.mqtt.packets import PubAck, Publish, Reason, SubAck, Subscribe, Subscription
from tests.coap_support import coap_client, observe, request
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


# CoAP: the token is a segment of every path, so it is the only credential; it names one device.

async def attributes_of(gateway, device_id: str) -> dict:
    rows = await gateway.services.pool.fetch(
        "SELECT scope, key, coalesce(long_v::text, dbl_v::text, str_v, bool_v::text, json_v::text) AS v "
        "FROM attribute_kv WHERE device_id = $1", device_id)
    return {(r["scope"], r["key"]): r["v"] for r in rows}


def guesses(attacker: dict, victim: dict) -> list[str]:
    """Tokens that are not the victim's: its id, its name, variations of its token, an unknown one."""
    return [victim["id"], victim["name"], victim["token"].upper(), victim["token"] + "x", victim["token"][:-1],
            "no-such-token", attacker["token"] + victim["token"]]


async def test_coap_token_names_exactly_one_device(gateway, coap_url, management, tenant, pair) -> None:
    """With its own token a device posts telemetry and attributes and reads attributes as itself
    only; any other token is refused 4.01 (a path with more segments 4.04), and the victim's
    rows and attributes are as they were."""
    attacker, victim = pair
    api = Management(management, tenant)
    await api.call("POST", f"/devices/{victim['id']}/attributes", params={"scope": "SHARED_SCOPE"},
                   json={"victim_secret": "s3"})
    victim_attributes = await attributes_of(gateway, victim["id"])
    forged = orjson.dumps({"forged": 1})
    async with coap_client() as client, asyncio.timeout(30):
        base = f"{coap_url}/api/v1"
        for resource in ("telemetry", "attributes"):
            own = await request(client, Code.POST, f"{base}/{attacker['token']}/{resource}", b'{"own":1}')
            assert own.code == Code.CREATED, own
        read = await request(client, Code.GET, f"{base}/{attacker['token']}/attributes",
                             uri_query=("sharedKeys=victim_secret", "clientKeys=forged"))
        assert read.code == Code.CONTENT and b"s3" not in read.payload and orjson.loads(read.payload) == {}, read
        for guess in guesses(attacker, victim):
            for resource in ("telemetry", "attributes"):
                answer = await request(client, Code.POST, f"{base}/{guess}/{resource}", forged)
                assert answer.code == Code.UNAUTHORIZED and not answer.payload, (guess, resource, answer)
            answer = await request(client, Code.GET, f"{base}/{guess}/attributes", uri_query=("sharedKeys=victim_secret",))
            assert answer.code == Code.UNAUTHORIZED and not answer.payload, (guess, answer)
        # Segments around a token are not a path to another device (CoAP paths are not normalised).
        for path in ((attacker["token"], "..", victim["token"], "telemetry"), (victim["token"], "telemetry", "x"),
                     (attacker["token"], victim["token"], "telemetry")):
            answer = await client.request(Message(code=Code.POST, uri=coap_url, uri_path=("api", "v1", *path),
                                                  payload=forged)).response
            assert answer.code == Code.NOT_FOUND, (path, answer)
    assert await stored_keys(gateway, victim["id"]) == set()
    assert await stored_keys(gateway, attacker["id"]) == {"own"}
    assert await attributes_of(gateway, victim["id"]) == victim_attributes
    assert ("CLIENT_SCOPE", "own") in await attributes_of(gateway, attacker["id"])


async def test_coap_observations_reach_only_the_token_s_device(gateway, coap_url, management, tenant,
                                                               pair) -> None:
    """An Observe on attributes or RPC with another token is refused 4.01 and starts nothing; with
    its own token a device is sent its own shared-attribute updates and RPC requests, never the
    victim's (the victim observing alongside gets those)."""
    attacker, victim = pair
    api = Management(management, tenant)
    async with coap_client() as client, asyncio.timeout(30):
        base = f"{coap_url}/api/v1"
        for guess in guesses(attacker, victim):
            for resource in ("attributes", "rpc"):
                first, _, started = await observe(client, f"{base}/{guess}/{resource}")
                assert first.code == Code.UNAUTHORIZED and first.opt.observe is None, (guess, resource, first)
        assert not gateway._coap.site.observing(victim["id"])
        first, attacker_attributes, attacker_watch = await observe(client, f"{base}/{attacker['token']}/attributes")
        assert first.code == Code.CONTENT and first.opt.observe is not None, first
        first, attacker_rpc, attacker_rpc_watch = await observe(client, f"{base}/{attacker['token']}/rpc")
        assert first.code == Code.CONTENT and first.opt.observe is not None, first
        first, victim_rpc, victim_rpc_watch = await observe(client, f"{base}/{victim['token']}/rpc")
        assert first.code == Code.CONTENT, first

        # Attributes: the victim's update first, then the attacker's marker, which must come first.
        await api.call("POST", f"/devices/{victim['id']}/attributes", params={"scope": "SHARED_SCOPE"},
                       json={"victim_only": 1})
        await api.call("POST", f"/devices/{attacker['id']}/attributes", params={"scope": "SHARED_SCOPE"},
                       json={"attacker_marker": 1})
        assert orjson.loads((await anext(attacker_attributes)).payload) == {"attacker_marker": 1}

        # RPC: a call to the victim reaches the victim's observation only.
        async def call(device: dict, method: str) -> tuple[int, dict]:
            reply = await api.call("POST", f"/devices/{device['id']}/commands",
                                   json={"method": method, "params": {}, "timeout": 5000})
            return reply.status, reply.body

        victim_call = asyncio.ensure_future(call(victim, "victimOnly"))
        pushed = orjson.loads((await anext(victim_rpc)).payload)
        assert pushed["method"] == "victimOnly", pushed
        answer = await request(client, Code.POST, f"{base}/{victim['token']}/rpc/{pushed['id']}", b'{"ok":1}')
        assert answer.code == Code.CREATED, answer
        assert await victim_call == (200, {"response": {"ok": 1}})
        attacker_call = asyncio.ensure_future(call(attacker, "attackerMarker"))
        mine = orjson.loads((await anext(attacker_rpc)).payload)
        assert mine["method"] == "attackerMarker", mine  # nothing of the victim's came before it
        answer = await request(client, Code.POST, f"{base}/{attacker['token']}/rpc/{mine['id']}", b"{}")
        assert answer.code == Code.CREATED, answer
        assert (await attacker_call)[0] == 200
        for started in (attacker_watch, attacker_rpc_watch, victim_rpc_watch):
            started.observation.cancel()


async def test_coap_rpc_reply_only_settles_the_token_s_own_call(gateway, coap_url, management, tenant,
                                                                 pair) -> None:
    """A reply posted with the attacker's token, or with a token that is not the victim's, to the
    id of a call made to the victim settles nothing (2.01 and dropped, as a late reply; 4.01):
    the operator gets the victim's own reply."""
    attacker, victim = pair
    api = Management(management, tenant)
    async with coap_client() as client, asyncio.timeout(30):
        base = f"{coap_url}/api/v1"
        first, victim_rpc, watch = await observe(client, f"{base}/{victim['token']}/rpc")
        assert first.code == Code.CONTENT, first
        operator = asyncio.ensure_future(api.call("POST", f"/devices/{victim['id']}/commands",
                                                  json={"method": "read", "params": {}, "timeout": 5000}))
        pushed = orjson.loads((await anext(victim_rpc)).payload)
        forged = orjson.dumps({"forged": True})
        answer = await request(client, Code.POST, f"{base}/{attacker['token']}/rpc/{pushed['id']}", forged)
        assert answer.code == Code.CREATED, answer  # the attacker's own (unknown) call: dropped
        for guess in guesses(attacker, victim):
            answer = await request(client, Code.POST, f"{base}/{guess}/rpc/{pushed['id']}", forged)
            assert answer.code == Code.UNAUTHORIZED, (guess, answer)
        assert not operator.done()
        answer = await request(client, Code.POST, f"{base}/{victim['token']}/rpc/{pushed['id']}", b'{"real":1}')
        assert answer.code == Code.CREATED, answer
        reply = await operator
        assert (reply.status, reply.body) == (200, {"response": {"real": 1}})
        watch.observation.cancel()
    assert await stored_keys(gateway, victim["id"]) == set()
