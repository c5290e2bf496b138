"""ThingsBoard's device claiming end to end: a device asks over MQTT (paho), HTTP (aiohttp), CoAP
(aiocoap) or through its gateway (v1/gateway/claim); an operator completes the claim through the
management API, and the device shows its customer.

A device's claim is acknowledged at once and stored after (as ThingsBoard does); the tests await
the gateway's own ``settled`` for it rather than polling.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import aiohttp
import orjson
import paho.mqtt.client as mqtt
from aiocoap import Code

from fleetgate.app import Gateway
from tests.coap_support import coap_client, device_id_of, provision_device, request
from tests.management_client import Management, assert_error
from tests.paho_async import reason_value
from tests.support import Tenant, new_tenant, provision


async def device(http: aiohttp.ClientSession, tenant: Tenant, **extra: Any) -> tuple[str, str]:
    name, result = await provision(http, tenant, **extra)
    return name, result["credentialsValue"]


async def mqtt_claim(clients, port: int, token: str, topic: str, payload: bytes) -> int:
    client = clients(version=mqtt.MQTTv5)
    reason, _ = await client.connect(port, username=token)
    assert reason_value(reason) == 0
    return reason_value(await client.publish(topic, payload))


async def claiming_data(gateway: Gateway, tenant: Tenant, name: str) -> dict[str, Any] | None:
    value = await gateway.services.pool.fetchval(
        "SELECT a.json_v FROM attribute_kv a JOIN devices d ON d.id = a.device_id WHERE d.project_id = $1 "
        "AND d.name = $2 AND a.scope = 'SERVER_SCOPE' AND a.key = 'claimingData'", tenant.project_id, name)
    return value


async def complete(api: Management, name: str, secret: str | None, customer: str = "acme") -> Any:
    body = {"device_name": name, "customer": customer}
    if secret is not None:
        body["secret_key"] = secret
    return await api.call("POST", "/devices/claim", json=body)


async def test_a_device_claims_over_mqtt_and_the_operator_completes_the_claim(
    gateway: Gateway, http, api: Management, tenant: Tenant, clients, mqtt_port: int
) -> None:
    name, token = await device(http, tenant)
    for malformed in (b"{", b"[]", b'{"durationMs": "soon"}'):  # MQTT 5's refusal of a malformed payload
        assert await mqtt_claim(clients, mqtt_port, token, "v1/devices/me/claim", malformed) == 0x99
    before = int(time.time() * 1000)
    payload = orjson.dumps({"secretKey": "s3cret", "durationMs": 60_000})
    assert await mqtt_claim(clients, mqtt_port, token, "v1/devices/me/claim", payload) == 0
    await gateway.services.claiming.settled()

    # ThingsBoard's claimingData server attribute, its secret only as a hash.
    data = await claiming_data(gateway, tenant, name)
    assert data is not None and set(data) == {"secretKey", "expirationTime"}
    assert "s3cret" not in data["secretKey"] and data["secretKey"].startswith("scrypt$")
    assert before + 60_000 <= data["expirationTime"] <= int(time.time() * 1000) + 60_000

    assert_error(await complete(api, name, "wrong"), 403, "IOTDA.014312")
    reply = await complete(api, name, "s3cret", "acme")
    assert reply.status == 200, reply
    assert (reply.body["device_name"], reply.body["customer"]) == (name, "acme")
    device_id = reply.body["device_id"]
    assert await claiming_data(gateway, tenant, name) is None

    shown = await api.call("GET", f"/devices/{device_id}")
    assert shown.body["customer"] == "acme"
    listed = await api.call("GET", "/devices", params={"customer": "acme"})
    assert [d["device_id"] for d in listed.body["devices"]] == [device_id]
    assert (await api.call("GET", "/devices", params={"customer": "nobody"})).body["devices"] == []
    assert_error(await complete(api, name, "s3cret", "other"), 409, "IOTDA.014314")

    # A claimed device asking again is ignored, as in ThingsBoard.
    assert await mqtt_claim(clients, mqtt_port, token, "v1/devices/me/claim", payload) == 0
    await gateway.services.claiming.settled()
    assert await claiming_data(gateway, tenant, name) is None

    released = await api.call("DELETE", f"/devices/{device_id}/claim")
    assert released.status == 204
    assert (await api.call("GET", f"/devices/{device_id}")).body["customer"] is None
    assert (await api.call("GET", "/devices", params={"customer": "acme"})).body["devices"] == []
    # The completed claim is spent: the device must ask again.
    assert_error(await complete(api, name, "s3cret"), 404, "IOTDA.014313")
    assert_error(await api.call("DELETE", "/devices/no-such-device/claim"), 404, "IOTDA.000005")


async def test_a_device_claims_over_http_with_thingsboards_defaults(
    gateway: Gateway, http, api: Management, tenant: Tenant
) -> None:
    name, token = await device(http, tenant)
    async with http.post(f"/api/v1/{token}/claim", data=b"{") as resp:
        assert resp.status == 400
    async with http.post(f"/api/v1/{token}/claim", json={"secretKey": 7}) as resp:
        assert resp.status == 400
    async with http.post("/api/v1/no-such-token/claim", json={}) as resp:
        assert resp.status == 401
    await gateway.services.claiming.settled()
    assert await claiming_data(gateway, tenant, name) is None  # nothing of a refused request is kept

    # No body: an empty secret, and a day to complete the claim.
    async with http.post(f"/api/v1/{token}/claim") as resp:
        assert resp.status == 200, await resp.text()
    await gateway.services.claiming.settled()
    data = await claiming_data(gateway, tenant, name)
    assert data is not None and data["expirationTime"] >= int(time.time() * 1000) + 86_400_000 - 60_000
    reply = await complete(api, name, None, "globex")
    assert (reply.status, reply.body["customer"]) == (200, "globex"), reply


async def test_a_device_claims_over_coap(gateway: Gateway, api: Management, tenant: Tenant, coap_url: str) -> None:
    async with coap_client() as context:
        name, token = await provision_device(context, coap_url, tenant)
        bad = await request(context, Code.POST, f"{coap_url}/api/v1/{token}/claim", b"[1")
        assert bad.code == Code.BAD_REQUEST
        claimed = await request(context, Code.POST, f"{coap_url}/api/v1/{token}/claim",
                                orjson.dumps({"secretKey": "c0ap", "durationMs": 60_000}))
        assert claimed.code == Code.CREATED, claimed
    await gateway.services.claiming.settled()
    assert_error(await complete(api, name, ""), 403, "IOTDA.014312")
    reply = await complete(api, name, "c0ap", "initech")
    assert reply.status == 200, reply
    assert reply.body["device_id"] == await device_id_of(gateway, tenant, name)
    assert reply.body["customer"] == "initech"


async def test_a_gateway_claims_for_its_sub_devices(
    gateway: Gateway, http, api: Management, tenant: Tenant, clients, mqtt_port: int
) -> None:
    _, gateway_token = await device(http, tenant, gateway=True)
    sub = "sub-" + secrets.token_hex(3)
    malformed = await mqtt_claim(clients, mqtt_port, gateway_token, "v1/gateway/claim", b'{"A": {"secretKey": 1}}')
    assert malformed == 0x99
    payload = orjson.dumps({sub: {"secretKey": "g4te", "durationMs": 60_000}})
    assert await mqtt_claim(clients, mqtt_port, gateway_token, "v1/gateway/claim", payload) == 0
    await gateway.services.claiming.settled()
    reply = await complete(api, sub, "g4te", "umbrella")
    assert reply.status == 200, reply
    assert (reply.body["device_name"], reply.body["customer"]) == (sub, "umbrella")
    assert reply.body["gateway_id"] is not None  # created behind its gateway, as on connect
    # A device that is not a gateway may not use the gateway topic.
    _, plain = await device(http, tenant)
    assert await mqtt_claim(clients, mqtt_port, plain, "v1/gateway/claim", payload) == 0x90


async def test_an_expired_claim_is_refused(gateway: Gateway, http, api: Management, tenant: Tenant) -> None:
    name, token = await device(http, tenant)
    async with http.post(f"/api/v1/{token}/claim", json={"secretKey": "s", "durationMs": 1}) as resp:
        assert resp.status == 200
    await gateway.services.claiming.settled()
    data = await claiming_data(gateway, tenant, name)
    assert data is not None and data["expirationTime"] < int(time.time() * 1000)  # a millisecond has gone
    assert_error(await complete(api, name, "s"), 404, "IOTDA.014313")
    assert (await api.call("GET", "/devices", params={"device_name": name})).body["devices"][0]["customer"] is None


async def test_the_operator_must_name_a_device_and_a_customer(api: Management, http, tenant: Tenant) -> None:
    assert_error(await complete(api, "no-such-device", "s"), 404, "IOTDA.000005")
    name, _ = await device(http, tenant)
    assert_error(await api.call("POST", "/devices/claim", json={"device_name": name}), 400, "IOTDA.000006")
    assert_error(await complete(api, name, "s", ""), 400, "IOTDA.000006")
    assert_error(await api.call("POST", "/devices/claim", data=b"{"), 400, "IOTDA.000008")
    assert_error(await api.call("POST", "/devices/claim", json={"device_name": name, "customer": "c"}, token="bad"),
                 401, "IOTDA.000002")


async def test_a_product_may_forbid_claiming(
    gateway: Gateway, http, management: aiohttp.ClientSession, mqtt_port: int, clients
) -> None:
    tenant = await new_tenant(gateway.services, allow_claiming=False)
    api = Management(management, tenant)
    product = await api.call("GET", f"/products/{tenant.product_id}")
    assert product.body["allow_claiming"] is False
    name, token = await device(http, tenant)
    payload = orjson.dumps({"secretKey": "s", "durationMs": 60_000})
    assert await mqtt_claim(clients, mqtt_port, token, "v1/devices/me/claim", payload) == 0  # acknowledged...
    await gateway.services.claiming.settled()
    assert await claiming_data(gateway, tenant, name) is None  # ...and dropped
    assert_error(await complete(api, name, "s"), 403, "IOTDA.014311")

    # The switch is the product's: turned on, the device may be claimed.
    changed = await api.call("PUT", f"/products/{tenant.product_id}", json={"allow_claiming": True})
    assert (changed.status, changed.body["allow_claiming"]) == (200, True)
    assert await mqtt_claim(clients, mqtt_port, token, "v1/devices/me/claim", payload) == 0
    await gateway.services.claiming.settled()
    assert (await complete(api, name, "s")).body["customer"] == "acme"
    assert_error(await api.call("PUT", f"/products/{tenant.product_id}", json={"allow_claiming": "yes"}),
                 400, "IOTDA.000006")
    created = await api.call("POST", "/products", json={"name": "p-" + secrets.token_hex(3)})
    assert created.body["allow_claiming"] is True  # allowed by default
