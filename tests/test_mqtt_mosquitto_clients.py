"""The MQTT transport driven by Debian's mosquitto-clients (mosquitto_pub, mosquitto_sub, mosquitto_rr).

Each client is a real process speaking to the gateway's MQTT port; the test reads
what it prints and its exit status. mosquitto_sub says nothing when it has
subscribed, so it runs with -d and the test waits for its "received SUBACK" debug
line before making the change it should see.

An answer to a request goes to the session that asked (as in ThingsBoard), so a
mosquitto_pub request cannot be answered to a separate mosquitto_sub; provisioning
uses mosquitto_rr, which subscribes and publishes in one session. An attribute
request cannot use it: its answer filter, v1/devices/me/attributes/response/+, has
a wildcard, which mosquitto_rr refuses as a response topic (and the gateway, like
ThingsBoard, grants no exact .../response/{id} filter), so paho's tests cover that.
"""

from __future__ import annotations

import asyncio
import secrets

import orjson
import pytest

from tests.cli_clients import read_until, run, started
from tests.support import Tenant, provision
from tests.telemetry_support import stored

VERSIONS = [pytest.param("mqttv311", id="3.1.1"), pytest.param("mqttv5", id="5")]
# mosquitto_sub -F: one line per message, easy to tell from its debug lines.
MESSAGE_FORMAT = "MESSAGE %t %p"


def messages(output: str) -> list[tuple[str, object]]:
    """(topic, decoded JSON payload) of each message printed with MESSAGE_FORMAT."""
    found = []
    for line in output.splitlines():
        if line.startswith("MESSAGE "):
            _, topic, payload = line.split(" ", 2)
            found.append((topic, orjson.loads(payload)))
    return found


def connection(port: int, username: str, version: str = "mqttv311") -> list[str]:
    return ["-h", "127.0.0.1", "-p", str(port), "-u", username, "-V", version]


@pytest.fixture
async def device(http, tenant: Tenant) -> tuple[str, str]:
    name, result = await provision(http, tenant)
    return name, result["credentialsValue"]


async def device_id(gateway, tenant: Tenant, name: str) -> str:
    return await gateway.services.pool.fetchval(
        "SELECT id FROM devices WHERE name = $1 AND project_id = $2", name, tenant.project_id)


async def set_shared(management, tenant: Tenant, device: str, values: dict) -> None:
    async with management.post(f"/v5/iot/{tenant.project_id}/devices/{device}/attributes",
                               params={"scope": "SHARED_SCOPE"}, json=values,
                               headers={"X-Auth-Token": tenant.token}) as resp:
        assert resp.status == 200, await resp.text()


@pytest.mark.parametrize("qos", ["1", "2"])
@pytest.mark.parametrize("version", VERSIONS)
async def test_mosquitto_pub_telemetry_is_stored_when_it_exits(gateway, tenant, device, mqtt_port, version,
                                                               qos) -> None:
    name, token = device
    code, output = await run("mosquitto_pub", *connection(mqtt_port, token, version),
                             "-t", "v1/devices/me/telemetry", "-m", '{"t":1}', "-q", qos)
    assert code == 0, output
    # mosquitto_pub exits after the PUBACK (QoS 2: PUBCOMP), and the PUBACK/PUBREC means stored.
    assert await stored(gateway, tenant, name) == {"t": "1"}


@pytest.mark.parametrize("version", VERSIONS)
async def test_mosquitto_pub_with_an_unknown_token_is_refused(mqtt_port, version) -> None:
    code, output = await run("mosquitto_pub", *connection(mqtt_port, "no-such-" + secrets.token_hex(4), version),
                             "-t", "v1/devices/me/telemetry", "-m", '{"t":1}', "-q", "1")
    assert code != 0
    # 3.1.1: return code 5 ("not authorised"); 5: 0x86 (spec 3.1: a user name without a password).
    expected = "not authorised" if version == "mqttv311" else "bad user name or password"
    assert expected in output.lower(), output


@pytest.mark.parametrize("version", VERSIONS)
async def test_mosquitto_pub_line_mode_many_messages_in_one_session(gateway, tenant, device, mqtt_port,
                                                                    version) -> None:
    """-l: one PUBLISH per stdin line, many QoS 1 messages in flight at once; all stored when it exits."""
    name, token = device
    lines = b"".join(b'{"ts":%d,"values":{"n":%d}}\n' % (1767225600000 + i, i) for i in range(500))
    process = await asyncio.create_subprocess_exec(
        "mosquitto_pub", *connection(mqtt_port, token, version), "-q", "1", "-l", "-t", "v1/devices/me/telemetry",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        async with asyncio.timeout(30):
            output, _ = await process.communicate(lines)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, output
    rows = await gateway.services.pool.fetchval(
        "SELECT count(*) FROM ts_kv t JOIN devices d ON d.id = t.device_id WHERE d.name = $1 AND d.project_id = $2",
        name, tenant.project_id)
    assert rows == 500


@pytest.mark.parametrize("version", VERSIONS)
async def test_mosquitto_sub_receives_shared_attribute_updates_and_deletions(gateway, management, tenant, device,
                                                                           mqtt_port, version) -> None:
    name, token = device
    device_key = await device_id(gateway, tenant, name)
    # stdbuf: mosquitto_sub prints with stdio, which a pipe would otherwise hold back.
    async with started("stdbuf", "-oL", "mosquitto_sub", *connection(mqtt_port, token, version), "-d", "-q", "1",
                       "-C", "2", "-F", MESSAGE_FORMAT, "-t", "v1/devices/me/attributes") as sub:
        await read_until(sub, "received SUBACK")
        await set_shared(management, tenant, device_key, {"interval": 30, "mode": "eco"})
        async with management.delete(f"/v5/iot/{tenant.project_id}/devices/{device_key}/attributes",
                                     params={"scope": "SHARED_SCOPE", "keys": "mode"},
                                     headers={"X-Auth-Token": tenant.token}) as resp:
            assert resp.status == 204
        async with asyncio.timeout(10):
            rest, _ = await sub.communicate()
    assert sub.returncode == 0, rest
    # Spec 3.2: the update as {"key": value}, a deletion as {"deleted": [keys]}.
    assert messages(rest.decode()) == [("v1/devices/me/attributes", {"interval": 30, "mode": "eco"}),
                                       ("v1/devices/me/attributes", {"deleted": ["mode"]})]


@pytest.mark.parametrize("version", VERSIONS)
async def test_mosquitto_rr_provisioning(gateway, tenant, mqtt_port, version) -> None:
    name, token = "rr-" + secrets.token_hex(4), "rr-tok-" + secrets.token_hex(8)
    request = {"deviceName": name, "provisionDeviceKey": tenant.provision_key,
               "provisionDeviceSecret": tenant.provision_secret, "credentialsType": "ACCESS_TOKEN", "token": token}
    code, output = await run("mosquitto_rr", *connection(mqtt_port, "provision", version), "-q", "1", "-W", "10",
                             "-F", MESSAGE_FORMAT, "-e", "/provision/response", "-t", "/provision/request",
                             "-m", orjson.dumps(request).decode())
    assert code == 0, output
    assert messages(output) == [("/provision/response",
                                 {"credentialsValue": token, "credentialsType": "ACCESS_TOKEN", "status": "SUCCESS"})]
    # The provisioned token works at once.
    code, output = await run("mosquitto_pub", *connection(mqtt_port, token, version), "-q", "1",
                             "-t", "v1/devices/me/telemetry", "-m", '{"provisioned":true}')
    assert code == 0, output
    assert await stored(gateway, tenant, name) == {"provisioned": "true"}


@pytest.mark.parametrize("version", VERSIONS)
async def test_mosquitto_rr_provisioning_with_a_wrong_secret(tenant, mqtt_port, version) -> None:
    request = {"deviceName": "rr-" + secrets.token_hex(4), "provisionDeviceKey": tenant.provision_key,
               "provisionDeviceSecret": "wrong-" + tenant.provision_secret}
    code, output = await run("mosquitto_rr", *connection(mqtt_port, "provision", version), "-q", "1", "-W", "10",
                             "-F", MESSAGE_FORMAT, "-e", "/provision/response", "-t", "/provision/request",
                             "-m", orjson.dumps(request).decode())
    assert code == 0, output
    assert messages(output) == [("/provision/response",
                                 {"errorMsg": "Provision data was not found!", "status": "NOT_FOUND"})]


# Spec 1.4: in a provision session only /provision/response is granted; any other filter
# gets 0x80 on 3.1.1 and TOPIC_FILTER_INVALID (0x8F = 143) on MQTT 5.
@pytest.mark.parametrize(("version", "refused"), [("mqttv311", 128), ("mqttv5", 143)])
async def test_mosquitto_sub_in_a_provision_session(mqtt_port, version, refused) -> None:
    async with started("stdbuf", "-oL", "mosquitto_sub", *connection(mqtt_port, "provision", version), "-d",
                       "-q", "1", "-t", "v1/devices/me/attributes", "-t", "/provision/response") as sub:
        lines = await read_until(sub, "Subscribed (mid: 1):")
    assert lines[-1].endswith(f"Subscribed (mid: 1): {refused}, 1"), lines


# Spec 1.4: a provisioning request without provisionDeviceKey/Secret, or with an unknown
# credentialsType, is a RuntimeException in ThingsBoard: PUBACK IMPLEMENTATION_SPECIFIC_ERROR
# (0x83 = 131) and close; a payload that is not JSON (nor protobuf) is PAYLOAD_FORMAT_INVALID (0x99 = 153).
@pytest.mark.parametrize(("body", "reason"), [
    pytest.param('{"deviceName":"x"}', 131, id="no-key"),
    pytest.param('{"provisionDeviceKey":"k","provisionDeviceSecret":"s","credentialsType":"BOGUS"}', 131,
                 id="bad-credentials-type"),
    pytest.param("not json", 153, id="not-json"),
])
async def test_mosquitto_pub_bad_provisioning_request_reason_codes(mqtt_port, body, reason) -> None:
    code, output = await run("mosquitto_pub", *connection(mqtt_port, "provision", "mqttv5"), "-d", "-q", "1",
                             "-t", "/provision/request", "-m", body)
    assert f"received PUBACK (Mid: 1, RC:{reason})" in output, output
