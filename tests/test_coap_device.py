"""The CoAP device transport driven by aiocoap's client API: ThingsBoard's CoAP contract (spec 1.5, 3.5)."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiocoap import Code, Message, Unreliable

from fleetgate.core import metrics
from tests.coap_support import TIMEOUT, coap_client, device_id_of, provision_device, request
from tests.telemetry_support import stored



@pytest.fixture
async def client():
    async with coap_client() as context:
        yield context


@pytest.fixture
async def device(client, coap_url, tenant):
    return await provision_device(client, coap_url, tenant)


async def test_provisioning_outcomes(client, coap_url, tenant) -> None:
    url = f"{coap_url}/api/v1/provision"
    async with asyncio.timeout(TIMEOUT):
        ok = await request(client, Code.POST, url, orjson.dumps(
            {"deviceName": "coap-prov", "provisionDeviceKey": tenant.provision_key,
             "provisionDeviceSecret": tenant.provision_secret, "token": "coap-prov-" + tenant.project_id}))
        assert ok.code == Code.CREATED
        assert ok.opt.content_format == 50
        assert ok.payload == orjson.dumps({"credentialsValue": "coap-prov-" + tenant.project_id,
                                           "credentialsType": "ACCESS_TOKEN", "status": "SUCCESS"})
        again = await request(client, Code.POST, url, orjson.dumps(
            {"deviceName": "coap-prov", "provisionDeviceKey": tenant.provision_key,
             "provisionDeviceSecret": tenant.provision_secret}))
        assert (again.code, again.payload) == (
            Code.BAD_REQUEST, b'{"errorMsg":"Failed to provision device!","status":"FAILURE"}')
        wrong = await request(client, Code.POST, url, orjson.dumps(
            {"provisionDeviceKey": tenant.provision_key, "provisionDeviceSecret": "wrong"}))
        assert (wrong.code, wrong.payload) == (
            Code.BAD_REQUEST, b'{"errorMsg":"Provision data was not found!","status":"NOT_FOUND"}')
        before = metrics.BAD_REQUESTS.labels("coap", "malformed")._value.get()
        for body in (b"{not json", b'{"provisionDeviceKey":"k"}', b""):
            bad = await request(client, Code.POST, url, body)
            assert (bad.code, bad.payload) == (Code.BAD_REQUEST, b"")
        assert metrics.BAD_REQUESTS.labels("coap", "malformed")._value.get() == before + 3
        get = await request(client, Code.GET, url)
        assert get.code == Code.METHOD_NOT_ALLOWED


async def test_telemetry_and_attributes_are_acknowledged_once_stored(gateway, client, coap_url, tenant, device) -> None:
    name, token = device
    async with asyncio.timeout(TIMEOUT):
        response = await request(client, Code.POST, f"{coap_url}/api/v1/{token}/telemetry",
                                 b'{"temperature":21.5,"humidity":40,"on":true}')
        assert (response.code, response.payload) == (Code.CREATED, b"")
        # 2.01 came after the commit: the rows are already there.
        assert await stored(gateway, tenant, name) == {"temperature": "21.5", "humidity": "40", "on": "true"}
        response = await request(client, Code.POST, f"{coap_url}/api/v1/{token}/telemetry",
                                 b'[{"ts":1767225600000,"values":{"short":1}},{"ts":1767225600001,"values":{"short":2}}]')
        assert response.code == Code.CREATED
        assert (await stored(gateway, tenant, name))["short"] == "2"

        response = await request(client, Code.POST, f"{coap_url}/api/v1/{token}/attributes", b'{"fw":"1.2","model":"x"}')
        assert response.code == Code.CREATED
        read = await request(client, Code.GET, f"{coap_url}/api/v1/{token}/attributes", uri_query=("clientKeys=fw",))
        assert read.code == Code.CONTENT
        assert orjson.loads(read.payload) == {"client": {"fw": 1.2}}
        everything = await request(client, Code.GET, f"{coap_url}/api/v1/{token}/attributes")
        assert orjson.loads(everything.payload) == {"client": {"fw": 1.2, "model": "x"}}


async def test_non_confirmable_requests_get_non_answers(gateway, client, coap_url, tenant, device) -> None:
    name, token = device
    async with asyncio.timeout(TIMEOUT):
        message = Message(code=Code.POST, uri=f"{coap_url}/api/v1/{token}/telemetry", payload=b'{"non":7}',
                          transport_tuning=Unreliable)
        response = await client.request(message).response
        assert response.code == Code.CREATED
        assert response.mtype.name == "NON"
        assert (await stored(gateway, tenant, name))["non"] == "7"


async def test_refusals_have_the_contract_s_codes(client, coap_url, device) -> None:
    _, token = device
    base = f"{coap_url}/api/v1"
    async with asyncio.timeout(TIMEOUT):
        malformed_before = metrics.BAD_REQUESTS.labels("coap", "malformed")._value.get()
        bad = await request(client, Code.POST, f"{base}/{token}/telemetry", b'{"a":')
        assert bad.code == Code.BAD_REQUEST and bad.payload
        assert metrics.BAD_REQUESTS.labels("coap", "malformed")._value.get() == malformed_before + 1
        array = await request(client, Code.POST, f"{base}/{token}/attributes", b'[{"a":1}]')
        assert array.code == Code.BAD_REQUEST

        auth_before = metrics.AUTH_FAILURES.labels("coap")._value.get()
        unknown = await request(client, Code.POST, f"{base}/no-such-token/telemetry", b'{"a":1}')
        assert (unknown.code, unknown.payload) == (Code.UNAUTHORIZED, b"")
        assert metrics.AUTH_FAILURES.labels("coap")._value.get() == auth_before + 1

        for path in ("/nothing", "/api/v2/x/telemetry", f"/api/v1/{token}/claimx", f"/api/v1/{token}/rpc/x",
                     f"/api/v1/{token}/telemetry/1"):
            assert (await request(client, Code.POST, coap_url + path, b"{}")).code == Code.NOT_FOUND, path
        fetch = await request(client, Code.GET, f"{base}/{token}/telemetry")
        assert (fetch.code, fetch.payload) == (Code.BAD_REQUEST, b"Can't fetch/subscribe to timeseries updates")
        assert (await request(client, Code.PUT, f"{base}/{token}/attributes", b"{}")).code == Code.METHOD_NOT_ALLOWED
        assert (await request(client, Code.DELETE, f"{base}/{token}/rpc")).code == Code.METHOD_NOT_ALLOWED


async def test_shared_attribute_changes_are_observed_until_deregistration(
        gateway, management, client, coap_url, tenant, device) -> None:
    name, token = device
    device_id = await device_id_of(gateway, tenant, name)
    url = f"/v5/iot/{tenant.project_id}/devices/{device_id}/attributes"
    headers = {"X-Auth-Token": tenant.token}
    async with asyncio.timeout(TIMEOUT):
        observed = client.request(Message(code=Code.GET, uri=f"{coap_url}/api/v1/{token}/attributes", observe=0))
        first = await observed.response
        assert first.code == Code.CONTENT and first.opt.observe is not None
        assert orjson.loads(first.payload) == {}
        notifications = aiter(observed.observation)
        async with management.post(url, params={"scope": "SHARED_SCOPE"}, json={"interval": 30},
                                   headers=headers) as resp:
            assert resp.status == 200
        pushed = await anext(notifications)
        assert orjson.loads(pushed.payload) == {"interval": 30}
        async with management.delete(url, params={"scope": "SHARED_SCOPE", "keys": "interval"},
                                     headers=headers) as resp:
            assert resp.status in (200, 204)
        pushed = await anext(notifications)
        assert orjson.loads(pushed.payload) == {"deleted": ["interval"]}
        # A GET with the shared key reads it too.
        async with management.post(url, params={"scope": "SHARED_SCOPE"}, json={"mode": "eco"},
                                   headers=headers) as resp:
            assert resp.status == 200
        assert orjson.loads((await anext(notifications)).payload) == {"mode": "eco"}
        read = await request(client, Code.GET, f"{coap_url}/api/v1/{token}/attributes", uri_query=("sharedKeys=mode",))
        assert orjson.loads(read.payload) == {"shared": {"mode": "eco"}}

        # aiocoap's client keeps acknowledging after cancel(); deregistration (Observe=1, and a
        # Reset) is tested on the wire in test_coap_wire.py and with libcoap in test_coap_cli_clients.py.
        observed.observation.cancel()


async def test_server_side_rpc_over_observe_and_the_device_s_reply(
        gateway, management, client, coap_url, tenant, device) -> None:
    name, token = device
    device_id = await device_id_of(gateway, tenant, name)
    async with asyncio.timeout(TIMEOUT):
        observed = client.request(Message(code=Code.GET, uri=f"{coap_url}/api/v1/{token}/rpc", observe=0))
        first = await observed.response
        assert first.code == Code.CONTENT and first.opt.observe is not None
        notifications = aiter(observed.observation)

        async def operator_call():
            async with management.post(f"/v5/iot/{tenant.project_id}/devices/{device_id}/commands",
                                       json={"method": "setGpio", "params": {"pin": 4}, "timeout": 5000},
                                       headers={"X-Auth-Token": tenant.token}) as resp:
                return resp.status, orjson.loads(await resp.read())

        call = asyncio.ensure_future(operator_call())
        pushed = orjson.loads((await anext(notifications)).payload)
        assert pushed["method"] == "setGpio" and pushed["params"] == {"pin": 4}
        reply = await request(client, Code.POST, f"{coap_url}/api/v1/{token}/rpc/{pushed['id']}", b'{"pin":4,"value":1}')
        assert reply.code == Code.CREATED
        assert await call == (200, {"response": {"pin": 4, "value": 1}})
        observed.observation.cancel()


async def test_client_side_rpc(client, coap_url, device) -> None:
    _, token = device
    async with asyncio.timeout(TIMEOUT):
        limits = await request(client, Code.POST, f"{coap_url}/api/v1/{token}/rpc",
                               b'{"method":"getSessionLimits","params":{}}')
        assert limits.code == Code.CONTENT
        assert orjson.loads(limits.payload)["maxPayloadSize"] == 65_536
        other = await request(client, Code.POST, f"{coap_url}/api/v1/{token}/rpc", b'{"method":"reboot"}')
        assert orjson.loads(other.payload) == {"error": "Unsupported RPC method: reboot"}
        assert (await request(client, Code.POST, f"{coap_url}/api/v1/{token}/rpc", b"[1]")).code == Code.BAD_REQUEST


async def test_block1_upload_within_and_over_the_limit(gateway, client, coap_url, tenant, device) -> None:
    name, token = device
    url = f"{coap_url}/api/v1/{token}/telemetry"
    async with asyncio.timeout(TIMEOUT):
        body = orjson.dumps({"ts": 1767225600000, "values": {f"key{i:04d}": i for i in range(400)}})
        assert 4096 < len(body) < 65_536
        response = await request(client, Code.POST, url, body)
        assert response.code == Code.CREATED
        values = await stored(gateway, tenant, name)
        assert len(values) == 400 and values["key0399"] == "399"

        oversize_before = metrics.BAD_REQUESTS.labels("coap", "oversize")._value.get()
        huge = orjson.dumps({"blob": "x" * 70_000})
        response = await request(client, Code.POST, url, huge)
        assert response.code == Code.REQUEST_ENTITY_TOO_LARGE
        assert response.opt.size1 == 65_536
        assert metrics.BAD_REQUESTS.labels("coap", "oversize")._value.get() == oversize_before + 1
        assert "blob" not in await stored(gateway, tenant, name)
        assert gateway._coap.site._blocks.in_progress == 0
