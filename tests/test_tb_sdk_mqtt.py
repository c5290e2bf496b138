"""ThingsBoard's Python device SDK (tb-mqtt-client's TBDeviceMqttClient, MQTT 5) against the gateway.

The SDK runs as a script in its own virtual environment (tests/tb_sdk_venv.py), driven
over its stdin and stdout (tests/sdk_script.py), so the test can act at the right moment,
e.g. push an attribute once the SDK reports its SUBACKs.
"""

from __future__ import annotations

import secrets
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest

from fleetgate.app import Gateway
from tests.pki import self_signed_pem
from tests.sdk_script import TB_MQTT_PREAMBLE, ScriptClient, running_script
from tests.support import Tenant, provision
from tests.telemetry_support import stored

SCRIPT_LIMIT = 120  # seconds: the script exits by itself after this, whatever it is doing

SCRIPT = TB_MQTT_PREAMBLE + textwrap.dedent(
    """
    from tb_device_mqtt import TBDeviceMqttClient


    def on_attribute_update(content, exception):
        emit("attribute_update", content=content)


    def on_rpc(reply):
        def handler(request_id, content):
            emit("rpc_request", id=request_id, content=content)
            client.send_rpc_reply(request_id, reply)
        return handler


    for do, command in commands():
        if do == "connect":
            client = TBDeviceMqttClient(command["host"], port=command["port"], username=command.get("username"),
                                        password=command.get("password"), client_id=command.get("client_id", ""))
            paho = connect(client, 4)  # the SDK subscribes to four filters on CONNACK
            emit("connected", subscribed=subscribed.wait(WAIT), subacks=subacks, limits=limits.wait(WAIT),
                 is_connected=client.is_connected(), max_payload_size=client.max_payload_size,
                 max_inflight=paho._max_inflight_messages, rate_limits_received=client.rate_limits_received)
        elif do == "telemetry":
            emit("published", **wait_published(client.send_telemetry(command["data"])))
        elif do == "attributes":
            emit("published", **wait_published(client.send_attributes(command["data"])))
        elif do == "request_attributes":
            client.request_attributes(command.get("client_keys"), command.get("shared_keys"),
                                      callback=on_attribute_response)
        elif do == "subscribe_to_all_attributes":
            emit("subscription", id=client.subscribe_to_all_attributes(on_attribute_update))
        elif do == "rpc_handler":
            client.set_server_side_rpc_request_handler(on_rpc(command["reply"]))
            emit("rpc_handler_set")
        elif do == "provision":
            emit("provisioned", credentials=TBDeviceMqttClient.provision(**command))
        elif do == "disconnect":
            client.disconnect()
            client.stop()
            emit("disconnected")
        elif do == "exit":
            break
    """
)


@pytest.fixture
def sdk_script(tmp_path: Path) -> Path:
    script = tmp_path / "tb_sdk_mqtt_client.py"
    script.write_text(SCRIPT)
    return script


@pytest.fixture
async def device(http, tenant: Tenant) -> tuple[str, str]:
    name, result = await provision(http, tenant)
    return name, result["credentialsValue"]


async def device_id(gateway: Gateway, tenant: Tenant, name: str) -> str:
    return await gateway.services.pool.fetchval(
        "SELECT id FROM devices WHERE name = $1 AND project_id = $2", name, tenant.project_id)


async def set_shared(management, tenant: Tenant, device: str, values: dict[str, Any]) -> None:
    async with management.post(f"/v5/iot/{tenant.project_id}/devices/{device}/attributes",
                               params={"scope": "SHARED_SCOPE"}, json=values,
                               headers={"X-Auth-Token": tenant.token}) as resp:
        assert resp.status == 200, await resp.text()


async def connect(client: ScriptClient, port: int, **credentials: Any) -> dict[str, Any]:
    connected = await client.call("connect", "connected", host="127.0.0.1", port=port, **credentials)
    assert connected["is_connected"], client.events
    return connected


async def test_sdk_connects_with_mqtt5_and_applies_session_limits(gateway, device, mqtt_port, tb_python,
                                                                   sdk_script) -> None:
    _, token = device
    settings = gateway.settings
    async with running_script(tb_python, sdk_script, SCRIPT_LIMIT) as client:
        connected = await connect(client, mqtt_port, username=token)
        connack = next(e for e in client.events if e["event"] == "connack")
        await client.call("disconnect", "disconnected")
        log = await client.finish()

    # The MQTT 5 CONNACK carries the limits the SDK reads (and did not crash on).
    assert connack["reason"] == 0
    properties = connack["properties"]
    assert properties["MaximumPacketSize"] > 0 and properties["ReceiveMaximum"] > 0
    # Its four subscriptions are granted at QoS 1.
    assert connected["subscribed"] and connected["subacks"] == [1, 1, 1, 1]
    # getSessionLimits is answered by the gateway, and the SDK applied the answer (80 % of each).
    assert connected["limits"] and connected["rate_limits_received"]
    (limits,) = [e["response"] for e in client.events if e["event"] == "session_limits"]
    assert limits == {
        "maxPayloadSize": settings.max_payload_bytes,
        "maxInflightMessages": settings.mqtt_max_inflight,
        "rateLimits": {"messages": "", "telemetryMessages": "", "telemetryDataPoints": ""},
    }
    assert connected["max_payload_size"] == int(settings.max_payload_bytes * 0.8)
    assert connected["max_inflight"] == int(settings.mqtt_max_inflight * 0.8)
    assert "Service configuration was successfully retrieved and applied." in log
    assert "Timeout while waiting for service configuration" not in log
    # Its only complaint is its own doing: it hands the CONNACK's two limits to on_service_configuration,
    # which wants "rateLimits" and says it cannot use them (getSessionLimits then applies all of them).
    complaints = [line for line in log.splitlines() if line.startswith(("WARNING", "ERROR", "CRITICAL"))]
    assert complaints == [
        "WARNING tb_connection Cannot retrieve service configuration, session will use default configuration."]


async def test_sdk_telemetry_attributes_and_attribute_request(gateway, management, tenant, device, mqtt_port,
                                                              tb_python, sdk_script) -> None:
    name, token = device
    await set_shared(management, tenant, await device_id(gateway, tenant, name), {"target": 21.5, "mode": "eco"})
    async with running_script(tb_python, sdk_script, SCRIPT_LIMIT) as client:
        await connect(client, mqtt_port, username=token)
        # A plain dict is sent as [{...}]: the gateway must take the array form.
        sent = await client.call("telemetry", "published", data={"temperature": 21.5, "humidity": 40, "on": True})
        assert sent == {"event": "published", "acked": True, "reasons": [0], "messages": 1}
        # The PUBACK came after the commit.
        assert await stored(gateway, tenant, name) == {"temperature": "21.5", "humidity": "40", "on": "true"}
        sent = await client.call("telemetry", "published",
                                 data={"ts": 1767225600000, "values": {"with_ts": 3}})
        assert sent["reasons"] == [0]
        assert (await stored(gateway, tenant, name))["with_ts"] == "3"

        sent = await client.call("attributes", "published", data={"fw": "1.0.3", "serial": 1234, "ok": False})
        assert sent["acked"] and set(sent["reasons"]) == {0}

        answer = await client.call("request_attributes", "attribute_response",
                                   client_keys=["fw", "serial"], shared_keys=["target"])
        assert answer["error"] is None
        assert answer["content"] == {"client": {"fw": "1.0.3", "serial": 1234}, "shared": {"target": 21.5}}
        answer = await client.call("request_attributes", "attribute_response", shared_keys=["mode", "target"])
        assert answer["content"] == {"shared": {"mode": "eco", "target": 21.5}}
        answer = await client.call("request_attributes", "attribute_response", client_keys=["ok"])
        assert answer["content"] == {"client": {"ok": False}}
        await client.call("disconnect", "disconnected")
        await client.finish()

    attributes = await gateway.services.pool.fetch(
        "SELECT key, bool_v, long_v, str_v FROM attribute_kv WHERE device_id = $1 AND scope = 'CLIENT_SCOPE' "
        "ORDER BY key", await device_id(gateway, tenant, name))
    assert [tuple(r) for r in attributes] == [("fw", None, None, "1.0.3"), ("ok", False, None, None),
                                              ("serial", None, 1234, None)]


async def test_sdk_attribute_updates_and_server_side_rpc(gateway, management, tenant, device, mqtt_port, tb_python,
                                                         sdk_script) -> None:
    name, token = device
    device_key = await device_id(gateway, tenant, name)
    async with running_script(tb_python, sdk_script, SCRIPT_LIMIT) as client:
        await connect(client, mqtt_port, username=token)  # returns once the SDK's SUBACKs are in
        await client.call("subscribe_to_all_attributes", "subscription")
        await set_shared(management, tenant, device_key, {"interval": 30, "label": "hall"})
        update = await client.event("attribute_update")
        assert update["content"] == {"interval": 30, "label": "hall"}
        async with management.delete(f"/v5/iot/{tenant.project_id}/devices/{device_key}/attributes",
                                     params={"scope": "SHARED_SCOPE", "keys": "label"},
                                     headers={"X-Auth-Token": tenant.token}) as resp:
            assert resp.status == 204
        update = await client.event("attribute_update")
        assert update["content"] == {"deleted": ["label"]}

        await client.call("rpc_handler", "rpc_handler_set", reply={"gpio": 4, "value": 1})
        async with management.post(f"/v5/iot/{tenant.project_id}/devices/{device_key}/commands",
                                   json={"method": "setGpio", "params": {"pin": 4}, "timeout": 10000},
                                   headers={"X-Auth-Token": tenant.token}) as resp:
            status, body = resp.status, orjson.loads(await resp.read())
        request = await client.event("rpc_request")
        assert request["content"] == {"method": "setGpio", "params": {"pin": 4}}
        assert (status, body) == (200, {"response": {"gpio": 4, "value": 1}})
        await client.call("disconnect", "disconnected")
        await client.finish()


@pytest.mark.parametrize("kind", ["ACCESS_TOKEN", "MQTT_BASIC", "X509_CERTIFICATE"])
async def test_sdk_provision(gateway, tenant, mqtt_port, tb_python, sdk_script, kind) -> None:
    name = f"sdk-mqtt-{kind.lower()}-{secrets.token_hex(3)}"
    request: dict[str, Any] = {"host": "127.0.0.1", "port": mqtt_port, "provision_device_key": tenant.provision_key,
                               "provision_device_secret": tenant.provision_secret, "device_name": name}
    if kind == "ACCESS_TOKEN":
        token = "sdk-tok-" + secrets.token_hex(8)
        request["access_token"] = token
        expected: Any = token
        login = {"username": token}
    elif kind == "MQTT_BASIC":
        basic = {"client_id": "cid-" + secrets.token_hex(4), "username": "user-" + secrets.token_hex(4),
                 "password": "pw-" + secrets.token_hex(4)}
        request.update(basic)
        expected = {"clientId": basic["client_id"], "userName": basic["username"], "password": basic["password"]}
        login = basic
    else:
        pem = self_signed_pem(name)
        request["hash"] = pem
        expected = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
        login = {}

    async with running_script(tb_python, sdk_script, SCRIPT_LIMIT) as client:
        provisioned = await client.call("provision", "provisioned", **request)
        assert provisioned["credentials"] == {"credentialsValue": expected, "credentialsType": kind,
                                              "status": "SUCCESS"}
        if login:
            # The provisioned credentials log the SDK in; its telemetry is stored.
            await connect(client, mqtt_port, **login)
            sent = await client.call("telemetry", "published", data={"provisioned_with": kind})
            assert sent["reasons"] == [0]
            assert await stored(gateway, tenant, name) == {"provisioned_with": kind}
            await client.call("disconnect", "disconnected")
        log = await client.finish()
    assert "Provisioning was unsuccessful" not in log


async def test_sdk_provision_failures_return_none(gateway, tenant, mqtt_port, tb_python, sdk_script) -> None:
    """The SDK returns None and logs the errorMsg for NOT_FOUND (wrong secret) and FAILURE (name taken)."""
    name = "sdk-mqtt-twice-" + secrets.token_hex(3)
    request = {"host": "127.0.0.1", "port": mqtt_port, "provision_device_key": tenant.provision_key,
               "provision_device_secret": tenant.provision_secret, "device_name": name}
    async with running_script(tb_python, sdk_script, SCRIPT_LIMIT) as client:
        first = await client.call("provision", "provisioned", **request)
        assert first["credentials"]["status"] == "SUCCESS"
        again = await client.call("provision", "provisioned", **request)
        wrong = await client.call("provision", "provisioned",
                                  **{**request, "provision_device_secret": "wrong-" + tenant.provision_secret})
        log = await client.finish()
    assert again["credentials"] is None and wrong["credentials"] is None
    assert "status FAILURE and message: Failed to provision device!" in log
    assert "status NOT_FOUND and message: Provision data was not found!" in log
