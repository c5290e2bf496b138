"""OTA packages end to end on a gateway of their own (small limits): the management API, and
downloads with independent clients on MQTT (paho-mqtt), HTTP (aiohttp) and CoAP (aiocoap)."""

from __future__ import annotations

import hashlib
import secrets
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson
import paho.mqtt.client as mqtt
import pytest
from aiocoap import GET, Message

from fleetgate.app import Gateway
from tests.coap_support import coap_client
from tests.management_client import Management, Reply, assert_error
from tests.paho_async import AsyncPaho, reason_value
from tests.support import Tenant, gateway_settings, new_tenant, provision_device, running_gateway

MAX_PACKAGE = 300_000
MAX_CHUNK = 100_000
IMAGE = hashlib.sha512(b"seed").digest() * 3125  # 200,000 bytes


@pytest.fixture(scope="module")
async def ota_gateway(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    settings = gateway_settings(str(tmp_path_factory.mktemp("ota")), ota_max_package_bytes=MAX_PACKAGE,
                                ota_max_chunk_bytes=MAX_CHUNK, ota_chunk_rate_per_device=1000)
    async with running_gateway(database_url, settings) as running:
        yield running


def url_of(gateway: Gateway, name: str) -> str:
    return next(listener.url for listener in gateway.listeners if listener.name == name)


@pytest.fixture
async def ota_tenant(ota_gateway: Gateway) -> Tenant:
    return await new_tenant(ota_gateway.services)


@pytest.fixture
async def ota_api(ota_gateway: Gateway, ota_tenant: Tenant) -> AsyncIterator[Management]:
    async with aiohttp.ClientSession(url_of(ota_gateway, "management")) as session:
        yield Management(session, ota_tenant)


@pytest.fixture
async def device_http(ota_gateway: Gateway) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(url_of(ota_gateway, "http")) as session:
        yield session


async def upload(api: Management, data: bytes = IMAGE, **params: str) -> Reply:
    query = {"type": "FIRMWARE", "title": "fw-" + secrets.token_hex(3), "version": "1.0", **params}
    return await api.call("POST", "/ota-upgrades/packages", data=data, params=query)


async def assigned(api: Management, target: str, target_id: str, package: dict[str, Any]) -> None:
    reply = await api.call("PUT", f"/{target}s/{target_id}/ota-packages/{package['type']}",
                           json={"package_id": package["package_id"]})
    assert reply.status == 200, reply


async def mqtt_device(clients: Callable[..., AsyncPaho], gateway: Gateway, token: str) -> AsyncPaho:
    client = clients(version=mqtt.MQTTv5)
    await client.connect(int(url_of(gateway, "mqtt").rsplit(":", 1)[1]), username=token)
    return client


# the management API


async def test_upload_show_list_download_and_delete(ota_api: Management) -> None:
    created = await upload(ota_api, checksum_algorithm="CRC32")
    assert created.status == 201, created
    package = created.body
    assert package["size"] == len(IMAGE) and package["checksum_algorithm"] == "CRC32"
    assert package["checksum"] == (zlib.crc32(IMAGE)).to_bytes(4, "little").hex()
    shown = await ota_api.call("GET", f"/ota-upgrades/packages/{package['package_id']}")
    assert shown.body == {**package, "device_states": {}}
    listed = await ota_api.call("GET", "/ota-upgrades/packages", params={"type": "FIRMWARE"})
    assert listed.body["packages"] == [package] and listed.body["page"]["count"] == 1
    assert (await ota_api.call("GET", "/ota-upgrades/packages", params={"type": "SOFTWARE"})).body["packages"] == []
    headers = {"X-Auth-Token": ota_api.tenant.token}
    path = f"/v5/iot/{ota_api.tenant.project_id}/ota-upgrades/packages/{package['package_id']}/content"
    async with ota_api.http.get(path, headers=headers) as resp:
        assert resp.status == 200 and await resp.read() == IMAGE
    assert (await ota_api.call("DELETE", f"/ota-upgrades/packages/{package['package_id']}")).status == 204
    assert_error(await ota_api.call("GET", f"/ota-upgrades/packages/{package['package_id']}"), 404, "IOTDA.000005")


async def test_a_checksum_mismatch_says_why_and_stores_nothing(ota_api: Management) -> None:
    reply = await upload(ota_api, checksum="ab" * 32)
    assert_error(reply, 400, "IOTDA.000006")
    assert hashlib.sha256(IMAGE).hexdigest() in reply.body["error_msg"]
    assert (await ota_api.call("GET", "/ota-upgrades/packages")).body["page"]["count"] == 0
    assert (await upload(ota_api, checksum=hashlib.sha256(IMAGE).hexdigest())).status == 201


async def test_an_oversize_upload_stores_nothing(ota_gateway: Gateway, ota_api: Management) -> None:
    reply = await upload(ota_api, data=b"x" * (MAX_PACKAGE + 1))
    assert_error(reply, 413, "IOTDA.000006")
    assert str(MAX_PACKAGE) in reply.body["error_msg"]

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: refused once the bytes pass the limit
        for _ in range(MAX_PACKAGE // 50_000 + 1):
            yield b"y" * 50_000

    headers = {"X-Auth-Token": ota_api.tenant.token}
    path = f"/v5/iot/{ota_api.tenant.project_id}/ota-upgrades/packages"
    async with ota_api.http.post(path, data=chunked(), headers=headers,
                                 params={"type": "SOFTWARE", "title": "big", "version": "1"}) as resp:
        assert resp.status == 413
    assert (await ota_api.call("GET", "/ota-upgrades/packages")).body["page"]["count"] == 0
    blocks = await ota_gateway.services.pool.fetchval(
        "SELECT count(*) FROM ota_package_blocks b JOIN ota_packages p ON p.id = b.package_id "
        "WHERE p.project_id = $1", ota_api.tenant.project_id)
    assert blocks == 0


async def test_bad_uploads_and_assignments(ota_api: Management, ota_gateway: Gateway,
                                           device_http: aiohttp.ClientSession) -> None:
    assert_error(await upload(ota_api, type="BOOT"), 400, "IOTDA.000006", "type must be FIRMWARE or SOFTWARE")
    assert_error(await upload(ota_api, checksum_algorithm="SHA1"), 400, "IOTDA.000006")
    assert_error(await upload(ota_api, data=b""), 400, "IOTDA.000006", "The package is empty")
    package = (await upload(ota_api, title="same")).body
    assert_error(await upload(ota_api, title="same"), 409, "IOTDA.000007")
    unknown = {"package_id": "0" * 24}
    product = ota_api.tenant.product_id
    assert_error(await ota_api.call("PUT", f"/products/{product}/ota-packages/FIRMWARE", json=unknown),
                 404, "IOTDA.000005")
    assert_error(await ota_api.call("PUT", f"/products/{'0' * 24}/ota-packages/FIRMWARE",
                                    json={"package_id": package["package_id"]}), 404, "IOTDA.000005")
    assert_error(await ota_api.call("PUT", f"/products/{product}/ota-packages/SOFTWARE",
                                    json={"package_id": package["package_id"]}), 400, "IOTDA.000006")
    assert_error(await ota_api.call("DELETE", f"/products/{product}/ota-packages/FIRMWARE"), 404, "IOTDA.000005")
    await assigned(ota_api, "product", product, package)
    assert_error(await ota_api.call("DELETE", f"/ota-upgrades/packages/{package['package_id']}"),
                 409, "IOTDA.000007")
    assert (await ota_api.call("DELETE", f"/products/{product}/ota-packages/FIRMWARE")).status == 204
    assert (await ota_api.call("DELETE", f"/ota-upgrades/packages/{package['package_id']}")).status == 204


# assignment reaches connected devices in one update


async def test_assigning_a_product_sends_one_update_with_all_five_keys(
    ota_gateway: Gateway, ota_api: Management, ota_tenant: Tenant, device_http: aiohttp.ClientSession,
    clients: Callable[..., AsyncPaho],
) -> None:
    device = await provision_device(device_http, ota_gateway, ota_tenant)
    client = await mqtt_device(clients, ota_gateway, device.token)
    await client.subscribe("v1/devices/me/attributes")
    package = (await upload(ota_api, version="2.0")).body
    await assigned(ota_api, "product", ota_tenant.product_id, package)
    message = await client.next_message()
    assert message.topic == "v1/devices/me/attributes"
    assert orjson.loads(message.payload) == {
        "fw_title": package["title"], "fw_version": "2.0", "fw_size": len(IMAGE),
        "fw_checksum": hashlib.sha256(IMAGE).hexdigest(), "fw_checksum_algorithm": "SHA256",
    }
    # the same keys answer the SDK's attribute request
    async with device_http.get(f"/api/v1/{device.token}/attributes",
                               params={"sharedKeys": "fw_title,fw_version,fw_size"}) as resp:
        assert orjson.loads(await resp.read()) == {"shared": {"fw_title": package["title"], "fw_version": "2.0",
                                                              "fw_size": len(IMAGE)}}
    assert client.messages.empty()


# downloads


async def test_mqtt_download_and_errors_on_v2_fw_error(
    ota_gateway: Gateway, ota_api: Management, ota_tenant: Tenant, device_http: aiohttp.ClientSession,
    clients: Callable[..., AsyncPaho],
) -> None:
    device = await provision_device(device_http, ota_gateway, ota_tenant)
    client = await mqtt_device(clients, ota_gateway, device.token)
    for topic_filter in ("v2/fw/response/+", "v2/fw/error", "v2/sw/error"):  # ThingsBoard grants these
        assert reason_value(await client.subscribe(topic_filter)) == 1
    await client.publish("v2/fw/request/1/chunk/0", b"")
    error = await client.next_message()
    assert error.topic == "v2/fw/error" and error.payload.startswith(b"NOT_FOUND: No firmware is assigned")
    package = (await upload(ota_api)).body
    await assigned(ota_api, "device", device.id, package)
    received = b""
    for chunk in range(4):  # 50,000 bytes a chunk, the size given once
        await client.publish(f"v2/fw/request/2/chunk/{chunk}", b"50000" if chunk == 0 else b"")
        message = await client.next_message()
        assert message.topic == f"v2/fw/response/2/chunk/{chunk}"
        received += message.payload
    assert received == IMAGE
    for request, payload, why in (
        ("v2/fw/request/2/chunk/5", b"", b"BAD_REQUEST: Chunk 5 does not exist"),
        ("v2/fw/request/3/chunk/0", b"", b"PAYLOAD_TOO_LARGE: "),  # the whole package is over the chunk limit
        ("v2/fw/request/4/chunk/x", b"10", b"BAD_REQUEST: The chunk number must be"),
        ("v2/sw/request/1/chunk/0", b"10", b"NOT_FOUND: No software"),
    ):
        await client.publish(request, payload)
        message = await client.next_message()
        assert message.topic == request[:6] + "error" and message.payload.startswith(why), message.payload
    await client.publish("v2/fw/request/2/chunk/4", b"")  # one past the end: empty, as ThingsBoard
    message = await client.next_message()
    assert (message.topic, message.payload) == ("v2/fw/response/2/chunk/4", b"")


async def test_http_download(ota_gateway: Gateway, ota_api: Management, ota_tenant: Tenant,
                             device_http: aiohttp.ClientSession) -> None:
    device = await provision_device(device_http, ota_gateway, ota_tenant)
    path = f"/api/v1/{device.token}/firmware"
    async with device_http.get(path, params={"title": "fw", "version": "1"}) as resp:
        assert resp.status == 404 and "No firmware is assigned" in await resp.text()
    package = (await upload(ota_api, version="3")).body
    await assigned(ota_api, "product", ota_tenant.product_id, package)
    query = {"title": package["title"], "version": "3", "size": "60000"}
    received = b""
    for chunk in range(5):  # 4 chunks and, as TBHTTPDevice does, one more: 200 and empty
        async with device_http.get(path, params={**query, "chunk": str(chunk)}) as resp:
            assert resp.status == 200 and resp.content_type == "application/octet-stream"
            received += await resp.read()
    assert received == IMAGE
    for params, status, why in (
        ({**query, "chunk": "5"}, 400, "Chunk 5 does not exist"),
        ({**query, "chunk": "-1"}, 400, "chunk must be a whole number"),
        ({**query, "title": "other"}, 400, "not other 3"),
        ({**query, "version": "2"}, 400, "is " + package["title"] + " 3"),
        ({**query, "size": str(MAX_CHUNK + 1)}, 413, "A chunk is at most"),
    ):
        async with device_http.get(path, params=params) as resp:
            assert resp.status == status and why in await resp.text(), (params, await resp.text())
    async with device_http.get(f"/api/v1/{device.token}/software") as resp:
        assert resp.status == 404


async def test_coap_download_with_block2(ota_gateway: Gateway, ota_api: Management, ota_tenant: Tenant,
                                         device_http: aiohttp.ClientSession) -> None:
    device = await provision_device(device_http, ota_gateway, ota_tenant)
    package = (await upload(ota_api, version="4")).body
    await assigned(ota_api, "device", device.id, package)
    base = url_of(ota_gateway, "coap")
    async with coap_client() as context:
        query = f"title={package['title']}&version=4&size=5000&chunk=1"
        # aiocoap follows the Block2 blocks of the 5,000-byte chunk and reassembles them
        response = await context.request(Message(code=GET, uri=f"{base}/fw/{device.token}?{query}")).response
        assert response.code.is_successful() and response.payload == IMAGE[5000:10000]
        first = await context.request(Message(code=GET, uri=f"{base}/fw/{device.token}?{query}"),
                                      handle_blockwise=False).response
        assert first.opt.block2 is not None and first.opt.block2.more and len(first.payload) == 1024
        past = await context.request(Message(code=GET, uri=f"{base}/fw/{device.token}?size=5000&chunk=40")).response
        assert str(past.code) == "2.05 Content" and past.payload == b""
        wrong = await context.request(Message(code=GET, uri=f"{base}/fw/{device.token}?size=5000&chunk=41")).response
        assert str(wrong.code) == "4.00 Bad Request" and b"Chunk 41" in wrong.payload
        none = await context.request(Message(code=GET, uri=f"{base}/sw/{device.token}")).response
        assert str(none.code) == "4.04 Not Found"


# progress


async def test_progress_per_device_and_per_package(ota_gateway: Gateway, ota_api: Management, ota_tenant: Tenant,
                                                   device_http: aiohttp.ClientSession) -> None:
    devices = [await provision_device(device_http, ota_gateway, ota_tenant) for _ in range(3)]
    package = (await upload(ota_api, version="5")).body
    await assigned(ota_api, "product", ota_tenant.product_id, package)
    for device, states in zip(devices, (["DOWNLOADING", "DOWNLOADED"], ["DOWNLOADING"], ["FAILED"])):
        for state in states:
            body = {"fw_state": state, "fw_error": "Checksum verification failed!" if state == "FAILED" else ""}
            async with device_http.post(f"/api/v1/{device.token}/telemetry", json=body) as resp:
                assert resp.status == 200
    async with device_http.post(f"/api/v1/{devices[0].token}/telemetry",
                                json={"current_fw_title": package["title"], "current_fw_version": "5",
                                      "fw_state": "UPDATED"}) as resp:
        assert resp.status == 200
    await ota_gateway.ota_progress.settled()
    shown = (await ota_api.call("GET", f"/ota-upgrades/packages/{package['package_id']}")).body
    assert shown["device_states"] == {"UPDATED": 1, "DOWNLOADING": 1, "FAILED": 1}
    status = (await ota_api.call("GET", f"/devices/{devices[0].id}/ota")).body
    assert status["firmware"]["state"] == "UPDATED" and status["firmware"]["current_fw_version"] == "5"
    assert status["firmware"]["package"]["package_id"] == package["package_id"]
    assert status["firmware"]["assigned_to"] == "product" and status["software"]["package"] is None
    failed = (await ota_api.call("GET", f"/devices/{devices[2].id}/ota")).body["firmware"]
    assert failed["error"] == "Checksum verification failed!"
    async with ota_api.http.get("/metrics") as resp:
        text = await resp.text()
    assert 'gateway_ota_state_reports_total{state="UPDATED",type="FIRMWARE"}' in text
    assert "gateway_ota_chunks_in_flight" in text
