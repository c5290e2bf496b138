"""Devices through the management API: registration with credentials, pre-provisioning, list, update, delete."""

from __future__ import annotations

import orjson
import pytest

from tests.management_client import Management, assert_error
from tests.pki import self_signed_pem
from tests.support import Tenant, new_tenant

DEVICE_KEYS = {"device_id", "device_name", "product_id", "description", "gateway", "node_type", "gateway_id",
               "customer", "create_time", "provisioned", "status", "last_online_time", "last_offline_time", "last_activity_time",
               "auth_info", "node_id"}


async def post_telemetry(http, token: str, payload: object) -> int:
    async with http.post(f"/api/v1/{token}/telemetry", data=orjson.dumps(payload)) as resp:
        return resp.status


async def provision(http, tenant: Tenant, device_name: str) -> dict:
    body = {"deviceName": device_name, "provisionDeviceKey": tenant.provision_key,
            "provisionDeviceSecret": tenant.provision_secret}
    async with http.post("/api/v1/provision", json=body) as resp:
        assert resp.status == 200
        return orjson.loads(await resp.read())


async def pending_of(gateway, device_id: str):
    return await gateway.services.pool.fetchval(
        "SELECT pending FROM device_credentials WHERE device_id = $1", device_id)


async def test_create_generates_an_access_token_shown_once(api: Management, http) -> None:
    device = await api.create_device("thermo-1", description="hall", gateway=True)
    assert set(device) == DEVICE_KEYS
    assert device["device_name"] == "thermo-1" and device["description"] == "hall" and device["gateway"] is True
    assert device["product_id"] == api.tenant.product_id and device["provisioned"] is False
    token = device["auth_info"]["access_token"]
    assert len(token) == 20 and token.isalnum()
    assert device["auth_info"] == {"credentials_type": "ACCESS_TOKEN", "client_id": None, "user_name": None,
                                   "access_token": token}

    shown = await api.call("GET", f"/devices/{device['device_id']}")
    assert shown.status == 200
    assert shown.body["auth_info"] == {"credentials_type": "ACCESS_TOKEN", "client_id": None, "user_name": None}
    assert {k: v for k, v in shown.body.items() if k != "auth_info"} == \
        {k: v for k, v in device.items() if k != "auth_info"}
    assert await post_telemetry(http, token, {"t": 1}) == 200


async def test_create_with_chosen_credentials(api: Management) -> None:
    token = await api.create_device("tok", auth_info={"credentials_type": "ACCESS_TOKEN", "access_token": "tok-" +
                                                      api.tenant.project_id})
    assert token["auth_info"]["access_token"] == "tok-" + api.tenant.project_id
    basic = await api.create_device("basic", auth_info={
        "credentials_type": "MQTT_BASIC", "client_id": "c-" + api.tenant.project_id, "user_name": "u", "password": "p"})
    assert basic["auth_info"] == {"credentials_type": "MQTT_BASIC", "client_id": "c-" + api.tenant.project_id,
                                  "user_name": "u", "password": "p"}
    shown = await api.call("GET", f"/devices/{basic['device_id']}")
    assert shown.body["auth_info"] == {"credentials_type": "MQTT_BASIC", "client_id": "c-" + api.tenant.project_id,
                                       "user_name": "u"}
    cert = await api.create_device("cert", auth_info={"credentials_type": "X509_CERTIFICATE",
                                                      "certificate": self_signed_pem("cert")})
    assert cert["auth_info"] == {"credentials_type": "X509_CERTIFICATE", "client_id": None, "user_name": None}


async def test_no_clear_secret_is_kept_outside_pre_provisioning(api: Management, gateway) -> None:
    device = await api.create_device("plain", auth_info={"credentials_type": "MQTT_BASIC",
                                                         "client_id": "plain-" + api.tenant.project_id,
                                                         "user_name": "u", "password": "secret"})
    row = await gateway.services.pool.fetchrow(
        "SELECT * FROM device_credentials WHERE device_id = $1", device["device_id"])
    assert row["pending"] is None
    assert row["password_hash"].startswith("scrypt$") and "secret" not in row["password_hash"]


@pytest.mark.parametrize(("auth_info", "message"), [
    ({"credentials_type": "MQTT_BASIC"}, "Both mqtt client id and user name are empty!"),
    ({"credentials_type": "MQTT_BASIC", "client_id": "", "user_name": ""},
     "Both mqtt client id and user name are empty!"),
    ({"credentials_type": "MQTT_BASIC", "client_id": "c", "password": "p"},
     "Password cannot be specified along with client id"),
    ({"credentials_type": "ACCESS_TOKEN", "access_token": " "}, "Device credentials id should be specified!"),
    ({"credentials_type": "ACCESS_TOKEN", "access_token": "x" * 257}, "Access token is longer than 256 characters!"),
    ({"credentials_type": "X509_CERTIFICATE", "certificate": "-----BEGIN CERTIFICATE-----\nbm9wZQ==\n"},
     "Invalid X509 certificate!"),
    ({"credentials_type": "X509_CERTIFICATE"}, "certificate is required"),
    ({"credentials_type": "LWM2M_CREDENTIALS"},
     "credentials_type must be one of ACCESS_TOKEN, MQTT_BASIC, X509_CERTIFICATE"),
    ({"credentials_type": "ACCESS_TOKEN", "access_token": 42}, "access_token must be a string"),
])
async def test_invalid_credentials(api: Management, auth_info: dict, message: str) -> None:
    reply = await api.call("POST", "/devices", json={"device_name": "bad", "product_id": api.tenant.product_id,
                                                     "auth_info": auth_info})
    assert_error(reply, 400, "IOTDA.000006", message)


@pytest.mark.parametrize(("body", "message"), [
    ({"product_id": "p"}, "device_name is required"),
    ({"device_name": "d"}, "product_id is required"),
    ({"device_name": "", "product_id": "p"},
     "device_name must be 1 to 256 characters, without control characters or surrounding spaces"),
    ({"device_name": " d", "product_id": "p"},
     "device_name must be 1 to 256 characters, without control characters or surrounding spaces"),
    ({"device_name": "d" * 257, "product_id": "p"},
     "device_name must be 1 to 256 characters, without control characters or surrounding spaces"),
    ({"device_name": "d", "product_id": "p", "description": "x" * 2049},
     "description must be a string of at most 2048 characters"),
    ({"device_name": "d", "product_id": "p", "gateway": "yes"}, "gateway must be true or false"),
    ({"device_name": "d", "product_id": "p", "auth_info": "token"}, "auth_info must be a JSON object"),
])
async def test_invalid_device(api: Management, body: dict, message: str) -> None:
    assert_error(await api.call("POST", "/devices", json=body), 400, "IOTDA.000006", message)


async def test_product_must_be_the_projects(api: Management, gateway) -> None:
    other = await new_tenant(gateway.services)
    reply = await api.call("POST", "/devices", json={"device_name": "d", "product_id": other.product_id})
    assert_error(reply, 404, "IOTDA.000005", f"Product {other.product_id} does not exist")


async def test_name_and_credentials_conflicts(api: Management) -> None:
    token = {"credentials_type": "ACCESS_TOKEN", "access_token": "dup-" + api.tenant.project_id}
    await api.create_device("first", auth_info=token)
    reply = await api.call("POST", "/devices", json={"device_name": "first", "product_id": api.tenant.product_id})
    assert_error(reply, 409, "IOTDA.000007", "A device with this name already exists in the project.")
    reply = await api.call("POST", "/devices", json={"device_name": "second", "product_id": api.tenant.product_id,
                                                     "auth_info": token})
    assert_error(reply, 409, "IOTDA.000007", "Specified credentials are already registered!")


async def test_pre_provisioned_device_gets_exactly_its_credentials_once(management, http, gateway) -> None:
    tenant = await new_tenant(gateway.services, strategy="CHECK_PRE_PROVISIONED_DEVICES")
    api = Management(management, tenant)
    chosen = "pre-" + tenant.project_id
    device = await api.create_device("pre-1", auth_info={"credentials_type": "ACCESS_TOKEN", "access_token": chosen})
    assert await pending_of(gateway, device["device_id"]) is not None

    first = await provision(http, tenant, "pre-1")
    assert first == {"credentialsValue": chosen, "credentialsType": "ACCESS_TOKEN", "status": "SUCCESS"}
    assert await pending_of(gateway, device["device_id"]) is None
    assert await provision(http, tenant, "pre-1") == {"errorMsg": "Failed to provision device!", "status": "FAILURE"}
    shown = await api.call("GET", f"/devices/{device['device_id']}")
    assert shown.body["provisioned"] is True
    assert await post_telemetry(http, chosen, {"t": 1}) == 200


async def test_pre_provisioned_mqtt_basic(management, http, gateway) -> None:
    tenant = await new_tenant(gateway.services, strategy="CHECK_PRE_PROVISIONED_DEVICES")
    api = Management(management, tenant)
    await api.create_device("pre-basic", auth_info={"credentials_type": "MQTT_BASIC", "client_id": "cid-" +
                                                    tenant.project_id, "user_name": "user", "password": "pass"})
    result = await provision(http, tenant, "pre-basic")
    assert result == {"credentialsValue": {"clientId": "cid-" + tenant.project_id, "userName": "user",
                                           "password": "pass"},
                      "credentialsType": "MQTT_BASIC", "status": "SUCCESS"}


async def test_credentials_replaced_after_provisioning_keep_no_clear_value(management, http, gateway) -> None:
    tenant = await new_tenant(gateway.services, strategy="CHECK_PRE_PROVISIONED_DEVICES")
    api = Management(management, tenant)
    device = await api.create_device("pre-2")
    assert (await provision(http, tenant, "pre-2"))["status"] == "SUCCESS"
    replaced = await api.call("PUT", f"/devices/{device['device_id']}", json={"auth_info": {}})
    assert replaced.status == 200 and len(replaced.body["auth_info"]["access_token"]) == 20
    assert await pending_of(gateway, device["device_id"]) is None


async def test_credentials_replaced_before_provisioning_are_the_ones_handed_out(management, http, gateway) -> None:
    tenant = await new_tenant(gateway.services, strategy="CHECK_PRE_PROVISIONED_DEVICES")
    api = Management(management, tenant)
    device = await api.create_device("pre-3")
    new = {"credentials_type": "ACCESS_TOKEN", "access_token": "new-" + tenant.project_id}
    assert (await api.call("PUT", f"/devices/{device['device_id']}", json={"auth_info": new})).status == 200
    assert (await provision(http, tenant, "pre-3"))["credentialsValue"] == "new-" + tenant.project_id


async def test_update(api: Management, http) -> None:
    device = await api.create_device("before")
    old_token = device["auth_info"]["access_token"]
    assert await post_telemetry(http, old_token, {"t": 1}) == 200  # now cached by the authenticator
    path = f"/devices/{device['device_id']}"

    renamed = await api.call("PUT", path, json={"device_name": "after", "description": "moved", "gateway": True})
    assert renamed.status == 200
    assert renamed.body == {**device, "device_name": "after", "description": "moved", "gateway": True,
                            "node_type": "GATEWAY",
                            "auth_info": {"credentials_type": "ACCESS_TOKEN", "client_id": None, "user_name": None}}
    assert (await api.call("GET", path)).body == renamed.body

    new = {"credentials_type": "ACCESS_TOKEN", "access_token": "rotated-" + api.tenant.project_id}
    rotated = await api.call("PUT", path, json={"auth_info": new})
    assert rotated.body["auth_info"]["access_token"] == "rotated-" + api.tenant.project_id
    assert await post_telemetry(http, old_token, {"t": 2}) == 401
    assert await post_telemetry(http, "rotated-" + api.tenant.project_id, {"t": 3}) == 200


async def test_update_errors(api: Management) -> None:
    first = await api.create_device("one")
    await api.create_device("two")
    path = f"/devices/{first['device_id']}"
    assert_error(await api.call("PUT", path, json={"product_id": "x"}), 400, "IOTDA.000006",
                 "Unknown or read-only fields: product_id")
    assert_error(await api.call("PUT", path, json={"device_name": "two"}), 409, "IOTDA.000007")
    assert_error(await api.call("PUT", path, json={"auth_info": {"credentials_type": "MQTT_BASIC"}}), 400,
                 "IOTDA.000006", "Both mqtt client id and user name are empty!")
    assert_error(await api.call("PUT", "/devices/" + "0" * 24, json={}), 404, "IOTDA.000005")
    # A refused change changes nothing.
    assert (await api.call("GET", path)).body["device_name"] == "one"


async def test_delete_removes_credentials_attributes_and_telemetry(api: Management, http, gateway) -> None:
    device = await api.create_device("doomed")
    device_id, token = device["device_id"], device["auth_info"]["access_token"]
    assert await post_telemetry(http, token, {"ts": 1_700_000_000_000, "values": {"t": 1}}) == 200
    assert (await api.call("POST", f"/devices/{device_id}/attributes", params={"scope": "SHARED_SCOPE"},
                           json={"a": 1})).status == 200

    assert (await api.call("DELETE", f"/devices/{device_id}")).status == 204
    assert_error(await api.call("GET", f"/devices/{device_id}"), 404, "IOTDA.000005")
    assert_error(await api.call("DELETE", f"/devices/{device_id}"), 404, "IOTDA.000005")
    assert await post_telemetry(http, token, {"t": 2}) == 401
    for table in ("device_credentials", "attribute_kv", "ts_kv"):
        count = await gateway.services.pool.fetchval(f"SELECT count(*) FROM {table} WHERE device_id = $1", device_id)
        assert count == 0, table


async def test_another_projects_device_is_not_found(management, api: Management, http, gateway) -> None:
    other = Management(management, await new_tenant(gateway.services))
    foreign = await other.create_device("foreign")
    path = f"/devices/{foreign['device_id']}"
    assert_error(await api.call("GET", path), 404, "IOTDA.000005")
    assert_error(await api.call("PUT", path, json={"device_name": "mine"}), 404, "IOTDA.000005")
    assert_error(await api.call("DELETE", path), 404, "IOTDA.000005")
    assert (await other.call("GET", path)).body["device_name"] == "foreign"


async def test_list_pagination_and_filters(management, api: Management, http, gateway) -> None:
    second_product = (await api.call("POST", "/products", json={"name": "second"})).body["product_id"]
    created = [await api.create_device(f"dev-{n}", product_id=second_product if n % 2 else None) for n in range(5)]
    ids = [d["device_id"] for d in reversed(created)]

    everything = await api.call("GET", "/devices")
    assert [d["device_id"] for d in everything.body["devices"]] == ids
    assert everything.body["page"] == {"count": 5, "marker": ids[-1]}
    assert all(set(d) == DEVICE_KEYS and "access_token" not in d["auth_info"] for d in everything.body["devices"])

    first = await api.call("GET", "/devices", params={"limit": 2})
    assert [d["device_id"] for d in first.body["devices"]] == ids[:2]
    second = await api.call("GET", "/devices", params={"limit": 2, "marker": first.body["page"]["marker"]})
    assert [d["device_id"] for d in second.body["devices"]] == ids[2:4]
    assert second.body["page"]["count"] == 5
    skipped = await api.call("GET", "/devices", params={"limit": 2, "offset": 4})
    assert [d["device_id"] for d in skipped.body["devices"]] == ids[4:]

    by_product = await api.call("GET", "/devices", params={"product_id": second_product})
    assert [d["device_name"] for d in by_product.body["devices"]] == ["dev-3", "dev-1"]
    assert by_product.body["page"]["count"] == 2
    by_name = await api.call("GET", "/devices", params={"device_name": "dev-2"})
    assert [d["device_id"] for d in by_name.body["devices"]] == [created[2]["device_id"]]

    # Another project's devices never show.
    await Management(management, await new_tenant(gateway.services)).create_device("dev-2")
    assert (await api.call("GET", "/devices", params={"device_name": "dev-2"})).body["page"]["count"] == 1

    assert_error(await api.call("GET", "/devices", params={"limit": 51}), 400, "IOTDA.000017")
    assert_error(await api.call("GET", "/devices", params={"offset": 501}), 400, "IOTDA.000018")


async def test_text_postgresql_cannot_hold_is_refused(api: Management) -> None:
    reply = await api.call("POST", "/devices", json={"device_name": "d", "product_id": api.tenant.product_id,
                                                     "description": "a\x00b"})
    assert_error(reply, 400, "IOTDA.000006", "Text cannot contain the character U+0000")
    assert_error(await api.call("GET", "/devices/a%00b"), 400, "IOTDA.000006")


async def test_oversized_body(api: Management, gateway) -> None:
    size = gateway.settings.max_payload_bytes + 1
    reply = await api.call("POST", "/devices", data=b'{"description": "' + b"x" * size + b'"}')
    assert_error(reply, 413, "IOTDA.000006", f"The body is larger than {size - 1} bytes")


async def test_a_device_that_provisioned_itself_can_be_managed(api: Management, http) -> None:
    result = await provision(http, api.tenant, "self-made")
    assert result["status"] == "SUCCESS"
    listed = await api.call("GET", "/devices", params={"device_name": "self-made"})
    (device,) = listed.body["devices"]
    assert device["description"] == "" and device["provisioned"] is True
    renamed = await api.call("PUT", f"/devices/{device['device_id']}", json={"device_name": "renamed"})
    assert renamed.status == 200 and renamed.body == {**device, "device_name": "renamed"}
    assert await post_telemetry(http, result["credentialsValue"], {"t": 1}) == 200
