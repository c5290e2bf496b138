"""Claim provisioning over HTTP, row by row of the spec's outcome matrix (1.6) and every credential
type (1.1), with the exact response bytes (1.2, key order included) and the PostgreSQL rows."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from typing import Any

import aiohttp
import orjson
import pytest

from fleetgate.core import credentials as creds
from fleetgate.app import Gateway
from fleetgate.core.model import Credentials, CredentialsType, MqttBasic
from fleetgate.storage.rows import pending_from_json
from fleetgate.storage.sealing import Sealer, load_key
from tests.pki import pem_body, self_signed_pem
from tests.support import TEST_SECRETS_KEY, Tenant, new_tenant, pre_provision

NOT_FOUND = b'{"errorMsg":"Provision data was not found!","status":"NOT_FOUND"}'
FAILURE = b'{"errorMsg":"Failed to provision device!","status":"FAILURE"}'
ALNUM20 = re.compile(rb"[A-Za-z0-9]{20}")
GENERATED_TOKEN = re.compile(
    rb'\{"credentialsValue":"([A-Za-z0-9]{20})","credentialsType":"ACCESS_TOKEN","status":"SUCCESS"\}'
)


def token_success(token: str) -> bytes:
    return b'{"credentialsValue":"%s","credentialsType":"ACCESS_TOKEN","status":"SUCCESS"}' % token.encode()


async def provision(http: aiohttp.ClientSession, body: Any) -> bytes:
    """POST /api/v1/provision; every business outcome is 200 with a JSON body."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with http.post("/api/v1/provision", data=data) as resp:
        assert (resp.status, resp.content_type) == (200, "application/json")
        return await resp.read()


async def refused(http: aiohttp.ClientSession, body: bytes) -> tuple[int, str]:
    async with http.post("/api/v1/provision", data=body) as resp:
        return resp.status, await resp.text()


def ask(tenant: Tenant, name: str | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "provisionDeviceKey": tenant.provision_key, "provisionDeviceSecret": tenant.provision_secret,
    }
    if name is not None:
        body["deviceName"] = name
    return body | fields


def unique(prefix: str = "dev") -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


async def devices_of(gateway: Gateway, project_id: str) -> list[dict[str, Any]]:
    rows = await gateway.services.pool.fetch(
        """SELECT d.*, c.type, c.lookup, c.password_hash, c.client_id, c.user_name, c.certificate, c.pending,
                  (SELECT str_v FROM attribute_kv a WHERE a.device_id = d.id AND a.scope = 'SERVER_SCOPE'
                   AND a.key = 'provisionState') AS provision_state
           FROM devices d LEFT JOIN device_credentials c ON c.device_id = d.id
           WHERE d.project_id = $1 ORDER BY d.created_at, d.id""",
        project_id,
    )
    return [dict(r) for r in rows]


async def device_named(gateway: Gateway, project_id: str, name: str) -> dict[str, Any]:
    (row,) = [d for d in await devices_of(gateway, project_id) if d["name"] == name]
    return row


@pytest.fixture
async def pre_tenant(gateway: Gateway) -> Tenant:
    return await new_tenant(gateway.services, strategy="CHECK_PRE_PROVISIONED_DEVICES")


@pytest.fixture(params=["ALLOW_CREATE_NEW_DEVICES", "CHECK_PRE_PROVISIONED_DEVICES"])
async def any_tenant(request: pytest.FixtureRequest, gateway: Gateway) -> Tenant:
    return await new_tenant(gateway.services, strategy=request.param)


# --- NOT_FOUND --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"provisionDeviceKey": ""},
        {"provisionDeviceKey": "   "},
        {"provisionDeviceSecret": ""},
        {"provisionDeviceSecret": " \t"},
        {"provisionDeviceKey": "", "provisionDeviceSecret": ""},
        {"provisionDeviceKey": "unknown-key"},
        {"provisionDeviceSecret": "wrong-secret"},
        {"provisionDeviceKey": "key\u0000"},
    ],
    ids=["key-empty", "key-blank", "secret-empty", "secret-blank", "both-empty", "unknown-key", "wrong-secret",
         "key-nul"],
)
async def test_not_found(http, gateway, any_tenant, change):
    # A device of that name exists: claimable under CHECK_PRE, a taken name under ALLOW_CREATE.
    # NOT_FOUND comes first either way.
    name = unique()
    await pre_provision(gateway, any_tenant, name, Credentials(CredentialsType.ACCESS_TOKEN, unique("tok")))
    assert await provision(http, ask(any_tenant, name) | change) == NOT_FOUND
    (device,) = await devices_of(gateway, any_tenant.project_id)
    assert device["provision_state"] is None and device["pending"] is not None


@pytest.mark.parametrize("secret_of", [str.upper, lambda s: s + " ", lambda s: " " + s, lambda s: s[:-1]])
async def test_the_secret_must_match_exactly(http, tenant, secret_of):
    assert await provision(http, ask(tenant, unique(), provisionDeviceSecret=secret_of(tenant.provision_secret))) == (
        NOT_FOUND
    )


async def test_disabled_product_is_not_found_even_with_its_key_and_secret(http, gateway):
    disabled = await new_tenant(gateway.services, strategy="DISABLED")
    assert await provision(http, ask(disabled, unique())) == NOT_FOUND
    assert await devices_of(gateway, disabled.project_id) == []


# --- ALLOW_CREATE_NEW_DEVICES -----------------------------------------------------------------


async def test_allow_create_makes_a_device(http, gateway, tenant):
    name = unique()
    body = await provision(http, ask(tenant, name))
    token = GENERATED_TOKEN.fullmatch(body).group(1).decode()
    device = await device_named(gateway, tenant.project_id, name)
    assert (device["product_id"], device["gateway"], device["type"], device["provision_state"]) == (
        tenant.product_id, False, "ACCESS_TOKEN", "provisioned",
    )
    # No clear token in the database: the lookup is its SHA-256, nothing is pending.
    assert device["lookup"] == "t:" + hashlib.sha256(token.encode()).hexdigest()
    assert device["pending"] is None
    assert token not in repr(device)
    audit = await gateway.services.pool.fetchrow(
        "SELECT action, outcome, device_id, details FROM audit_log WHERE project_id = $1", tenant.project_id)
    assert tuple(audit) == ("PROVISION", "SUCCESS", device["id"], {"device_name": name,
                                                                   "credentials_type": "ACCESS_TOKEN"})
    # The token works at once.
    async with http.post(f"/api/v1/{token}/telemetry", data=b'{"t":1}') as resp:
        assert resp.status == 200


@pytest.mark.parametrize("name_field", [{}, {"deviceName": ""}, {"deviceName": None}], ids=["absent", "empty", "null"])
async def test_allow_create_without_a_name_generates_one(http, gateway, tenant, name_field):
    assert GENERATED_TOKEN.fullmatch(await provision(http, ask(tenant) | name_field))
    (device,) = await devices_of(gateway, tenant.project_id)
    assert ALNUM20.fullmatch(device["name"].encode())


async def test_the_name_is_trimmed(http, gateway, tenant):
    name = unique()
    assert GENERATED_TOKEN.fullmatch(await provision(http, ask(tenant, f"  {name}\t\n")))
    assert (await device_named(gateway, tenant.project_id, name))["provision_state"] == "provisioned"


async def test_a_taken_name_fails(http, gateway, tenant):
    name = unique()
    assert GENERATED_TOKEN.fullmatch(await provision(http, ask(tenant, name)))
    assert await provision(http, ask(tenant, name)) == FAILURE
    assert await provision(http, ask(tenant, f" {name} ")) == FAILURE
    assert [d["name"] for d in await devices_of(gateway, tenant.project_id)] == [name]
    outcomes = await gateway.services.pool.fetch(
        "SELECT outcome FROM audit_log WHERE project_id = $1 ORDER BY id", tenant.project_id)
    assert [r["outcome"] for r in outcomes] == ["SUCCESS", "FAILURE", "FAILURE"]


async def test_a_name_taken_in_another_product_of_the_project_fails(http, gateway, tenant):
    """The name is unique in the tenant (project), whatever product holds it."""
    key, secret = unique("key"), unique("secret")
    await gateway.services.products.create(tenant.project_id, unique("product"), strategy="ALLOW_CREATE_NEW_DEVICES",
                                           provision_key=key, provision_secret=secret)
    name = unique()
    assert GENERATED_TOKEN.fullmatch(await provision(http, ask(tenant, name)))
    assert await provision(http, {"deviceName": name, "provisionDeviceKey": key, "provisionDeviceSecret": secret}) == (
        FAILURE
    )


async def test_the_same_name_in_another_project_is_free(http, gateway, tenant):
    other = await new_tenant(gateway.services)
    name = unique()
    assert GENERATED_TOKEN.fullmatch(await provision(http, ask(tenant, name)))
    assert GENERATED_TOKEN.fullmatch(await provision(http, ask(other, name)))


@pytest.mark.parametrize("name", [" ", "\t\r\n", "\u0000"])
@pytest.mark.parametrize("key", ["right", "wrong"])
async def test_a_whitespace_only_name_fails(http, gateway, any_tenant, name, key):
    """ThingsBoard checks the trimmed name even before the key: FAILURE, not NOT_FOUND."""
    body = ask(any_tenant, name) | ({} if key == "right" else {"provisionDeviceKey": unique("unknown")})
    assert await provision(http, body) == FAILURE
    assert await devices_of(gateway, any_tenant.project_id) == []


async def test_a_nul_inside_the_name_fails(http, gateway, any_tenant):
    assert await provision(http, ask(any_tenant, "a\u0000b")) == FAILURE
    assert await devices_of(gateway, any_tenant.project_id) == []


async def test_twenty_concurrent_requests_for_one_new_name(http, gateway, tenant):
    name = unique()
    bodies = await asyncio.gather(*(provision(http, ask(tenant, name)) for _ in range(20)))
    assert sum(1 for b in bodies if GENERATED_TOKEN.fullmatch(b)) == 1
    assert bodies.count(FAILURE) == 19
    (device,) = await devices_of(gateway, tenant.project_id)
    token = next(GENERATED_TOKEN.fullmatch(b).group(1) for b in bodies if b != FAILURE)
    assert device["lookup"] == "t:" + hashlib.sha256(token).hexdigest()


async def test_the_gateway_flag(http, gateway, tenant):
    name = unique()
    assert GENERATED_TOKEN.fullmatch(await provision(http, ask(tenant, name, gateway=True)))
    assert (await device_named(gateway, tenant.project_id, name))["gateway"] is True


async def test_numbers_are_read_as_strings(http, gateway):
    """getAsString(): a numeric key, secret, name and token all work."""
    key, secret = secrets.randbelow(10**15) + 10**15, secrets.randbelow(10**15) + 10**15
    numeric = await new_tenant(gateway.services)
    await gateway.services.products.create(numeric.project_id, unique("numeric"), strategy="ALLOW_CREATE_NEW_DEVICES",
                                           provision_key=str(key), provision_secret=str(secret))
    token = secrets.randbelow(10**12) + 10**12
    body = {"provisionDeviceKey": key, "provisionDeviceSecret": secret, "deviceName": 42, "token": token}
    assert await provision(http, body) == token_success(str(token))
    device = await device_named(gateway, numeric.project_id, "42")
    assert device["lookup"] == creds.token_lookup(str(token))


# --- credential types -------------------------------------------------------------------------


async def test_device_chosen_access_token(http, gateway, tenant):
    name, token = unique(), unique("token")
    assert await provision(http, ask(tenant, name, credentialsType="ACCESS_TOKEN", token=token)) == token_success(token)
    device = await device_named(gateway, tenant.project_id, name)
    assert (device["type"], device["lookup"], device["pending"]) == ("ACCESS_TOKEN", creds.token_lookup(token), None)


async def test_a_token_without_credentials_type_is_an_access_token(http, gateway, tenant):
    token = unique("token")
    assert await provision(http, ask(tenant, unique(), token=token)) == token_success(token)


@pytest.mark.parametrize(
    ("fields", "value", "lookup_of"),
    [
        ({"clientId": "C", "username": "U", "password": "P"}, b'{"clientId":"C","userName":"U","password":"P"}',
         lambda c, u: "b:" + creds.sha3_hex(f"{c}|{u}")),
        ({"username": "U", "password": "P"}, b'{"clientId":null,"userName":"U","password":"P"}',
         lambda c, u: creds.token_lookup(u)),
        ({"clientId": "C"}, b'{"clientId":"C","userName":null,"password":null}',
         lambda c, u: "b:" + creds.sha3_hex(c)),
        ({"clientId": "C", "username": "U"}, b'{"clientId":"C","userName":"U","password":null}',
         lambda c, u: "b:" + creds.sha3_hex(f"{c}|{u}")),
    ],
    ids=["all-three", "username-password", "client-id-only", "client-id-username"],
)
async def test_mqtt_basic(http, gateway, tenant, fields, value, lookup_of):
    # Unique values, so that no two test runs share credentials.
    suffix = secrets.token_hex(4)
    fields = {k: f"{v}-{suffix}" for k, v in fields.items()}
    value = re.sub(rb'"([CUP])"', lambda m: b'"%s-%s"' % (m.group(1), suffix.encode()), value)
    name = unique()
    body = await provision(http, ask(tenant, name, credentialsType="MQTT_BASIC", **fields))
    assert body == b'{"credentialsValue":%s,"credentialsType":"MQTT_BASIC","status":"SUCCESS"}' % value
    device = await device_named(gateway, tenant.project_id, name)
    client_id, user_name, password = fields.get("clientId"), fields.get("username"), fields.get("password")
    assert (device["type"], device["lookup"], device["client_id"], device["user_name"], device["pending"]) == (
        "MQTT_BASIC", lookup_of(client_id, user_name), client_id, user_name, None,
    )
    if password is None:
        assert device["password_hash"] is None
    else:
        assert password not in device["password_hash"]
        assert creds.verify_password(password, device["password_hash"])


@pytest.mark.parametrize(
    "fields",
    [{"password": "P"}, {"clientId": "C", "password": "P"}, {"clientId": "C\u0000"}],
    ids=["password-only", "client-id-password", "client-id-nul"],
)
async def test_invalid_mqtt_basic_fails(http, gateway, tenant, fields):
    assert await provision(http, ask(tenant, unique(), credentialsType="MQTT_BASIC", **fields)) == FAILURE
    assert await devices_of(gateway, tenant.project_id) == []


async def test_mqtt_basic_without_fields_is_an_access_token_device(http, gateway, tenant):
    name = unique()
    body = await provision(http, ask(tenant, name, credentialsType="MQTT_BASIC"))
    token = GENERATED_TOKEN.fullmatch(body).group(1).decode()
    assert (await device_named(gateway, tenant.project_id, name))["lookup"] == creds.token_lookup(token)


@pytest.mark.parametrize("form", ["pem", "pem-crlf", "body"])
async def test_x509_certificate(http, gateway, tenant, form):
    pem = self_signed_pem(unique("cn"))
    body_text = pem_body(pem)
    sent = {"pem": pem, "pem-crlf": pem.replace("\n", "\r\n"), "body": body_text}[form]
    name = unique()
    body = await provision(http, ask(tenant, name, credentialsType="X509_CERTIFICATE", hash=sent))
    assert body == b'{"credentialsValue":"%s","credentialsType":"X509_CERTIFICATE","status":"SUCCESS"}' % (
        body_text.encode()
    )
    device = await device_named(gateway, tenant.project_id, name)
    assert (device["type"], device["lookup"], device["certificate"]) == (
        "X509_CERTIFICATE", "x:" + hashlib.sha3_256(body_text.encode()).hexdigest(), body_text,
    )


@pytest.mark.parametrize(
    "certificate", ["not a certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"]
)
async def test_an_invalid_certificate_fails(http, gateway, tenant, certificate):
    assert await provision(http, ask(tenant, unique(), credentialsType="X509_CERTIFICATE", hash=certificate)) == FAILURE
    assert await devices_of(gateway, tenant.project_id) == []


async def test_lwm2m_is_an_access_token_without_fields_and_a_failure_with_them(http, gateway, tenant):
    assert GENERATED_TOKEN.fullmatch(await provision(http, ask(tenant, unique(), credentialsType="LWM2M_CREDENTIALS")))
    assert await provision(http, ask(tenant, unique(), credentialsType="LWM2M_CREDENTIALS", token="t")) == FAILURE


# --- colliding credentials --------------------------------------------------------------------


def _collisions() -> list[Any]:
    """(first request's credentials, second request's) that map to one stored credential."""
    pem, other_pem = self_signed_pem(unique("cn")), self_signed_pem(unique("cn"))
    token, client_id, user_name = unique("token"), unique("c"), unique("u")
    x509 = {"credentialsType": "X509_CERTIFICATE"}
    basic = {"credentialsType": "MQTT_BASIC"}
    return [
        pytest.param({"token": token}, {"token": token}, id="token"),
        pytest.param(x509 | {"hash": pem}, x509 | {"hash": pem}, id="certificate"),
        pytest.param(x509 | {"hash": other_pem}, x509 | {"hash": pem_body(other_pem)}, id="certificate-pem-vs-body"),
        pytest.param(basic | {"clientId": client_id, "username": user_name, "password": "p1"},
                     basic | {"clientId": client_id, "username": user_name, "password": "p2"}, id="mqtt-basic"),
        pytest.param(basic | {"clientId": client_id}, basic | {"clientId": client_id}, id="mqtt-client-id"),
    ]


@pytest.mark.parametrize(("first_fields", "second_fields"), _collisions())
async def test_colliding_credentials_fail(http, gateway, tenant, first_fields, second_fields):
    first = unique()
    assert b'"status":"SUCCESS"' in await provision(http, ask(tenant, first, **first_fields))
    assert await provision(http, ask(tenant, unique(), **second_fields)) == FAILURE
    # The second device was rolled back with its credentials.
    assert [d["name"] for d in await devices_of(gateway, tenant.project_id)] == [first]


async def test_a_user_name_collides_with_an_equal_access_token(http, gateway, tenant):
    """ThingsBoard keys a user-name-only MQTT_BASIC credential by the bare user name, like a token."""
    shared = unique("shared")
    assert await provision(http, ask(tenant, unique(), token=shared)) == token_success(shared)
    assert await provision(http, ask(tenant, unique(), credentialsType="MQTT_BASIC", username=shared)) == FAILURE


async def test_credentials_collide_across_projects(http, gateway, tenant):
    other = await new_tenant(gateway.services)
    token = unique("token")
    assert await provision(http, ask(tenant, unique(), token=token)) == token_success(token)
    assert await provision(http, ask(other, unique(), token=token)) == FAILURE


# --- CHECK_PRE_PROVISIONED_DEVICES ------------------------------------------------------------


async def test_check_pre_returns_the_existing_token_once(http, gateway, pre_tenant):
    name, token = unique(), unique("token")
    device = await pre_provision(gateway, pre_tenant, name, Credentials(CredentialsType.ACCESS_TOKEN, token))
    before = await device_named(gateway, pre_tenant.project_id, name)
    # Kept until claimed, sealed (storage/sealing.py): the clear token is not in the row.
    assert set(before["pending"]) == {"sealed"} and token not in str(before["pending"])
    sealer = Sealer(load_key(TEST_SECRETS_KEY))
    assert pending_from_json(before["pending"], sealer) == Credentials(CredentialsType.ACCESS_TOKEN, token)
    assert before["provision_state"] is None
    # Credentials in the request are ignored.
    request = ask(pre_tenant, name, credentialsType="ACCESS_TOKEN", token=unique("ignored"))
    assert await provision(http, request) == token_success(token)
    after = await device_named(gateway, pre_tenant.project_id, name)
    assert (after["id"], after["provision_state"], after["pending"], after["lookup"]) == (
        device.id, "provisioned", None, creds.token_lookup(token),
    )
    # Strict (newer ThingsBoard): an already provisioned device cannot be claimed again.
    assert await provision(http, ask(pre_tenant, name)) == FAILURE
    async with http.post(f"/api/v1/{token}/telemetry", data=b'{"t":1}') as resp:
        assert resp.status == 200


async def test_check_pre_returns_existing_mqtt_basic_credentials(http, gateway, pre_tenant):
    name, client_id = unique(), unique("client")
    basic = Credentials(CredentialsType.MQTT_BASIC, MqttBasic(client_id, None, None))
    await pre_provision(gateway, pre_tenant, name, basic)
    assert await provision(http, ask(pre_tenant, name)) == (
        b'{"credentialsValue":{"clientId":"%s","userName":null,"password":null},'
        b'"credentialsType":"MQTT_BASIC","status":"SUCCESS"}' % client_id.encode()
    )


async def test_check_pre_returns_an_existing_certificate(http, gateway, pre_tenant):
    name, pem = unique(), self_signed_pem(unique("cn"))
    await pre_provision(gateway, pre_tenant, name, Credentials(CredentialsType.X509_CERTIFICATE, pem))
    assert await provision(http, ask(pre_tenant, name)) == (
        b'{"credentialsValue":"%s","credentialsType":"X509_CERTIFICATE","status":"SUCCESS"}' % pem_body(pem).encode()
    )


@pytest.mark.parametrize("name", ["missing", None], ids=["missing", "no-name"])
async def test_check_pre_without_the_device_fails_and_creates_nothing(http, gateway, pre_tenant, name):
    assert await provision(http, ask(pre_tenant, None if name is None else unique(name))) == FAILURE
    assert await devices_of(gateway, pre_tenant.project_id) == []


async def test_check_pre_device_in_another_product_fails(http, gateway, pre_tenant):
    other = await gateway.services.products.create(pre_tenant.project_id, unique("other"))
    name = unique()
    await pre_provision(gateway, pre_tenant, name, Credentials(CredentialsType.ACCESS_TOKEN, unique("t")), other.id)
    assert await provision(http, ask(pre_tenant, name)) == FAILURE
    assert (await device_named(gateway, pre_tenant.project_id, name))["provision_state"] is None


async def test_check_pre_concurrent_claims_succeed_once(http, gateway, pre_tenant):
    name, token = unique(), unique("token")
    await pre_provision(gateway, pre_tenant, name, Credentials(CredentialsType.ACCESS_TOKEN, token))
    bodies = await asyncio.gather(*(provision(http, ask(pre_tenant, name)) for _ in range(10)))
    assert sorted(bodies) == sorted([token_success(token)] + [FAILURE] * 9)


# --- requests refused before provisioning (400 where ThingsBoard answers 500) -----------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "Invalid JSON"),
        (b"", "Invalid JSON"),
        (b"[]", "The provisioning request must be a JSON object"),
        (b'{"provisionDeviceSecret":"s"}', "Failed to find the field provisionDeviceKey in JSON body!"),
        (b'{"provisionDeviceKey":null,"provisionDeviceSecret":"s"}',
         "Failed to find the field provisionDeviceKey in JSON body!"),
        (b'{"provisionDeviceKey":"k"}', "Failed to find the field provisionDeviceSecret in JSON body!"),
        (b'{"provisionDeviceKey":"k","provisionDeviceSecret":"s","credentialsType":"PASSWORD"}',
         "No enum constant CredentialsType.PASSWORD"),
        (b'{"provisionDeviceKey":{"a":1},"provisionDeviceSecret":"s"}',
         "The field provisionDeviceKey must be a string"),
        (b'{"provisionDeviceKey":"k","provisionDeviceSecret":"s","deviceName":["x"]}',
         "The field deviceName must be a string"),
    ],
)
async def test_malformed_requests_are_400_with_a_message(http, body, message):
    status, text = await refused(http, body)
    assert status == 400 and text.startswith(message), text


async def test_a_body_over_the_limit_is_413(http, gateway, tenant):
    body = orjson.dumps(ask(tenant, unique(), padding="x" * gateway.settings.max_payload_bytes))
    status, _ = await refused(http, body)
    assert status == 413
    assert await devices_of(gateway, tenant.project_id) == []
