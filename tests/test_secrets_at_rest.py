"""Secrets at rest: after a test has made every kind of secret the gateway handles and used each,
no table of the database holds one of them in clear (nor hex-encoded, as a bytea would show it),
and no log record carries one. Hashed: access tokens (SHA-256), MQTT passwords (scrypt),
management tokens (SHA-256). Sealed (AES-GCM, storage/sealing.py): provision secrets, AK/SK
secret keys, the credentials an operator set for a pre-provisioned device until it claims them."""

from __future__ import annotations

import logging
import secrets

import orjson
import pytest

from fleetgate.app import Gateway
from fleetgate.protocols.mqtt.packets import PubAck, Publish
from tests.management_client import Management
from tests.mqtt_raw import RawMqtt
from tests.support import new_tenant


async def tables(pool) -> list[str]:
    """Every table of every schema but PostgreSQL's own, partitions through their parents."""
    return [r["name"] for r in await pool.fetch(
        """SELECT format('%I.%I', n.nspname, c.relname) AS name FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
             AND c.relpersistence <> 't'
             AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'""")]


async def found_in(pool, needles: list[str]) -> list[tuple[str, str]]:
    """(table, needle) for each needle some row of some table holds in its text form (every column)."""
    patterns = [f"%{needle}%" for needle in needles]
    hits = []
    for table in await tables(pool):
        matched = await pool.fetch(
            f"SELECT p FROM unnest($1::text[]) AS p WHERE EXISTS (SELECT 1 FROM {table} t WHERE t::text LIKE p)",
            patterns)
        hits += [(table, r["p"].strip("%")) for r in matched]
    return hits


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


async def test_no_secret_in_clear_in_any_table_or_log(gateway: Gateway, http, management, mqtt_port, logs) -> None:
    services = gateway.services
    tenant = await new_tenant(services)
    management_token = tenant.token
    extra_token = await services.projects.create_token(tenant.project_id, "second")
    _, secret_key = await services.projects.create_access_key(tenant.project_id)
    access_token = "tok-" + secrets.token_hex(12)
    password = "pw-" + secrets.token_hex(12)
    marker = "visible-" + secrets.token_hex(8)  # stored on purpose: proves the scan sees data

    async def provision(**fields) -> dict:
        body = {"deviceName": "s-" + secrets.token_hex(4), "provisionDeviceKey": tenant.provision_key,
                "provisionDeviceSecret": tenant.provision_secret, **fields}
        async with http.post("/api/v1/provision", json=body) as resp:
            return orjson.loads(await resp.read())

    assert (await provision(credentialsType="ACCESS_TOKEN", token=access_token))["status"] == "SUCCESS"
    basic = await provision(credentialsType="MQTT_BASIC", clientId="cid-" + secrets.token_hex(3),
                            username="user-" + secrets.token_hex(3), password=password)
    assert basic["status"] == "SUCCESS"
    generated = (await provision())["credentialsValue"]
    # A pre-provisioned device whose credentials wait, unclaimed, in the database.
    pre = await new_tenant(services, strategy="CHECK_PRE_PROVISIONED_DEVICES")
    pending_token, pending_password = "pend-" + secrets.token_hex(12), "pendpw-" + secrets.token_hex(12)
    api = Management(management, pre)
    await api.create_device("pre-a", auth_info={"credentials_type": "ACCESS_TOKEN", "access_token": pending_token})
    pending_basic = await api.call("POST", "/devices", json={
        "device_name": "pre-b", "product_id": pre.product_id,
        "auth_info": {"credentials_type": "MQTT_BASIC", "client_id": "pc-" + secrets.token_hex(3),
                      "user_name": "pu-" + secrets.token_hex(3), "password": pending_password}})
    assert pending_basic.status == 201, pending_basic
    # Use every secret once: devices authenticate and send data, the operator calls the API.
    async with http.post(f"/api/v1/{access_token}/telemetry", json={"marker": marker}) as resp:
        assert resp.status == 200
    async with http.post(f"/api/v1/{generated}/attributes", json={"a": 1}) as resp:
        assert resp.status == 200
    client = await RawMqtt.open(mqtt_port, 5)
    creds = basic["credentialsValue"]
    connack = await client.connect(client_id=creds["clientId"], username=creds["userName"], password=password.encode())
    assert connack.reason_code == 0
    await client.send(Publish("v1/devices/me/telemetry", b'{"t":1}', 1, packet_id=1))
    assert await client.packet() == PubAck(1)
    await client.close()
    for token in (management_token, extra_token):
        reply = await Management(management, tenant).call("GET", "/products", token=token)
        assert reply.status == 200
    # A wrong secret is logged nowhere either.
    async with http.post("/api/v1/wrong-" + access_token + "/telemetry", json={"x": 1}) as resp:
        assert resp.status == 401

    clear = {
        "management token": management_token, "second management token": extra_token, "AK/SK secret key": secret_key,
        "access token": access_token, "generated access token": generated, "MQTT password": password,
        "provision secret": tenant.provision_secret, "pre-provisioned token": pending_token,
        "pre-provisioned password": pending_password, "pre product's provision secret": pre.provision_secret,
    }
    needles = [*clear.values(), *(value.encode().hex() for value in clear.values())]
    hits = await found_in(services.pool, [*needles, marker])
    assert [hit for hit in hits if hit[1] == marker], "the scan found not even the marker"
    leaks = [(table, name) for table, needle in hits for name, value in clear.items()
             if needle in (value, value.encode().hex())]
    assert not leaks, leaks
    logged = "\n".join(record.getMessage() + str(record.args or "") for record in logs.records)
    assert not [name for name, value in clear.items() if value in logged]
