"""The CoAP transport seen datagram by datagram: deduplication of retransmitted requests, the empty
ACK and separate response of a slow stored acknowledgement, Observe deregistration, push-back."""

from __future__ import annotations

import asyncio
import orjson
from aiocoap import Code, Message
from aiocoap.numbers.types import Type

from tests.coap_support import coap_client, device_id_of, port_of, provision_device
from tests.coap_support import request as coap_request
from tests.coap_wire import RawCoap, ack, request
from tests.metrics_support import queued
from tests.support import gateway_settings, new_tenant, running_gateway
from tests.telemetry_support import PENDING, key_rows, stored, writes_blocked


async def test_a_retransmitted_request_gets_the_cached_answer_and_is_stored_once(gateway, coap_url, tenant) -> None:
    async with coap_client() as client:
        name, token = await provision_device(client, coap_url, tenant)
    raw = await RawCoap.open(port_of(coap_url))
    try:
        # Server-stamped telemetry: a second processing would be a second row.
        message = request(Code.POST, f"/api/v1/{token}/telemetry", b'{"dup":1}')
        sent = raw.send(message)
        first = await raw.receive_bytes()
        raw.send_bytes(sent)  # the same message id again: a retransmission
        assert await raw.receive_bytes() == first
        response = Message.decode(first)
        assert (response.mtype, response.mid, response.code) == (Type.ACK, message.mid, Code.CREATED)
        assert await key_rows(gateway, tenant, name, "dup") == 1
        # A new message id is a new request.
        raw.send(request(Code.POST, f"/api/v1/{token}/telemetry", b'{"dup":2}'))
        assert (await raw.receive()).code == Code.CREATED
        assert await key_rows(gateway, tenant, name, "dup") == 2
    finally:
        raw.close()


async def test_the_dedup_window_is_the_configured_one(database_url, tmp_path) -> None:
    settings = gateway_settings(str(tmp_path), coap_dedup_seconds=1)
    async with running_gateway(database_url, settings) as gw:
        url = next(listener.url for listener in gw.listeners if listener.name == "coap")
        tenant = await new_tenant(gw.services)
        async with coap_client() as client:
            name, token = await provision_device(client, url, tenant)
        raw = await RawCoap.open(port_of(url))
        try:
            sent = raw.send(request(Code.POST, f"/api/v1/{token}/telemetry", b'{"late":1}'))
            assert (await raw.receive()).code == Code.CREATED
            raw.send_bytes(sent)
            assert (await raw.receive()).code == Code.CREATED
            assert await key_rows(gw, tenant, name, "late") == 1
            # Past the window (a time to let pass, nothing to await), the same message is new.
            await asyncio.sleep(1.3)
            raw.send_bytes(sent)
            assert (await raw.receive()).code == Code.CREATED
            assert await key_rows(gw, tenant, name, "late") == 2
        finally:
            raw.close()


async def test_a_slow_commit_is_an_empty_ack_then_a_separate_2_01(gateway, database_url, coap_url, tenant) -> None:
    async with coap_client() as client:
        name, token = await provision_device(client, coap_url, tenant)
    raw = await RawCoap.open(port_of(coap_url))
    try:
        message = request(Code.POST, f"/api/v1/{token}/telemetry", b'{"slow":1}')
        async with writes_blocked(database_url):
            raw.send(message)
            empty = await raw.receive()
            assert (empty.mtype, empty.mid, empty.code) == (Type.ACK, message.mid, Code.EMPTY)
            assert raw.nothing_received()
            await asyncio.sleep(PENDING)  # "no answer yet" is watched for a while, as in test_ingest_failures
            assert raw.nothing_received(), "answered before the commit"
        separate = await raw.receive()
        assert (separate.mtype, separate.code, separate.token) == (Type.CON, Code.CREATED, message.token)
        raw.send(ack(separate))
        assert (await stored(gateway, tenant, name))["slow"] == "1"
    finally:
        raw.close()


async def test_observe_deregistration_with_observe_1(gateway, management, coap_url, tenant) -> None:
    async with coap_client() as client:
        name, token = await provision_device(client, coap_url, tenant)
    device_id = await device_id_of(gateway, tenant, name)
    raw = await RawCoap.open(port_of(coap_url))
    try:
        register = request(Code.GET, f"/api/v1/{token}/rpc", observe=0)
        raw.send(register)
        first = await raw.receive()
        assert (first.code, first.opt.observe) == (Code.CONTENT, 0)
        assert gateway._coap.site.observing(device_id)
        deregister = request(Code.GET, f"/api/v1/{token}/rpc", observe=1)
        deregister.token = register.token
        raw.send(deregister)
        answer = await raw.receive()
        assert answer.code == Code.CONTENT and answer.opt.observe is None
        assert not gateway._coap.site.observing(device_id)
        async with management.post(f"/v5/iot/{tenant.project_id}/devices/{device_id}/commands",
                                   json={"method": "m", "params": {}, "timeout": 1000},
                                   headers={"X-Auth-Token": tenant.token}) as resp:
            assert resp.status == 409  # no longer connected: nothing reaches the device
    finally:
        raw.close()


async def test_a_reset_ends_an_observation(gateway, management, coap_url, tenant) -> None:
    async with coap_client() as client:
        name, token = await provision_device(client, coap_url, tenant)
    device_id = await device_id_of(gateway, tenant, name)
    raw = await RawCoap.open(port_of(coap_url))
    try:
        raw.send(request(Code.GET, f"/api/v1/{token}/attributes", observe=0))
        assert (await raw.receive()).opt.observe == 0
        async with management.post(f"/v5/iot/{tenant.project_id}/devices/{device_id}/attributes",
                                   params={"scope": "SHARED_SCOPE"}, json={"a": 1},
                                   headers={"X-Auth-Token": tenant.token}) as resp:
            assert resp.status == 200
        notification = await raw.receive()
        assert notification.mtype == Type.CON and orjson.loads(notification.payload) == {"a": 1}
        raw.send(Message(_mtype=Type.RST, _mid=notification.mid, code=Code.EMPTY))
        # The Reset is handled when it arrives; one more exchange on the same socket orders it.
        raw.send(request(Code.GET, f"/api/v1/{token}/attributes"))
        assert (await raw.receive()).code == Code.CONTENT
        assert not gateway._coap.site.observing(device_id)
    finally:
        raw.close()


async def test_a_full_queue_is_5_03_with_max_age(database_url, tmp_path) -> None:
    settings = gateway_settings(str(tmp_path), ingest_queue_rows=4)
    async with running_gateway(database_url, settings) as gw:
        url = next(listener.url for listener in gw.listeners if listener.name == "coap")
        tenant = await new_tenant(gw.services)
        async with coap_client() as client:
            name, token = await provision_device(client, url, tenant)
            body = b'{"a":1,"b":2,"c":3}'
            async with writes_blocked(database_url):
                waiting = asyncio.ensure_future(coap_request(client, Code.POST, f"{url}/api/v1/{token}/telemetry", body))
                await queued(gw, 3)
                done, _ = await asyncio.wait([waiting], timeout=PENDING)
                assert not done, "acknowledged before it was stored"
                refused = await coap_request(client, Code.POST, f"{url}/api/v1/{token}/telemetry", body)
                assert refused.code == Code.SERVICE_UNAVAILABLE
                assert refused.opt.max_age >= 1
            assert (await waiting).code == Code.CREATED
        assert await stored(gw, tenant, name) == {"a": "1", "b": "2", "c": "3"}
