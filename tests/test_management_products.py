"""Products through the management API: CRUD with provisioning settings, pagination, errors."""

from __future__ import annotations

import pytest

from tests.management_client import Management, assert_error


async def test_create_show_update_delete(api: Management) -> None:
    created = await api.call("POST", "/products", json={
        "name": "meters", "description": "smart meters", "provision_strategy": "CHECK_PRE_PROVISIONED_DEVICES",
        "provision_key": "pk-" + api.tenant.project_id, "provision_secret": "ps-1",
    })
    assert created.status == 201
    product = created.body
    assert product["name"] == "meters" and product["description"] == "smart meters"
    assert product["provision_strategy"] == "CHECK_PRE_PROVISIONED_DEVICES"
    assert product["provision_key"] == "pk-" + api.tenant.project_id and product["provision_secret"] == "ps-1"
    assert product["send_ack_on_validation_error"] is False
    assert len(product["create_time"]) == 16 and product["create_time"].endswith("Z")

    shown = await api.call("GET", f"/products/{product['product_id']}")
    assert shown.status == 200 and shown.body == product

    updated = await api.call("PUT", f"/products/{product['product_id']}",
                             json={"description": "meters, v2", "provision_strategy": "DISABLED"})
    assert updated.status == 200
    assert updated.body == {**product, "description": "meters, v2", "provision_strategy": "DISABLED"}

    deleted = await api.call("DELETE", f"/products/{product['product_id']}")
    assert deleted.status == 204
    assert_error(await api.call("GET", f"/products/{product['product_id']}"), 404, "IOTDA.000005")


async def test_defaults_to_disabled_provisioning(api: Management) -> None:
    created = await api.call("POST", "/products", json={"name": "plain"})
    assert created.status == 201
    assert created.body["provision_strategy"] == "DISABLED"
    assert created.body["provision_key"] is None and created.body["provision_secret"] is None


@pytest.mark.parametrize(("body", "message"), [
    ({}, "name is required"),
    ({"name": 5}, "name must be a string"),
    ({"name": "x", "provision_strategy": "SOMETIMES"},
     "provision_strategy must be one of ALLOW_CREATE_NEW_DEVICES, CHECK_PRE_PROVISIONED_DEVICES, DISABLED"),
    ({"name": "x", "provision_strategy": "ALLOW_CREATE_NEW_DEVICES"},
     "provision_key and provision_secret are required unless provision_strategy is DISABLED"),
    ({"name": "x", "send_ack_on_validation_error": "yes"}, "send_ack_on_validation_error must be true or false"),
])
async def test_invalid_product(api: Management, body: dict, message: str) -> None:
    assert_error(await api.call("POST", "/products", json=body), 400, "IOTDA.000006", message)


@pytest.mark.parametrize("raw", [b"{", b"[1, 2]", b""])
async def test_malformed_body(api: Management, raw: bytes) -> None:
    assert_error(await api.call("POST", "/products", data=raw), 400, "IOTDA.000008")


async def test_update_refuses_unknown_fields(api: Management) -> None:
    reply = await api.call("PUT", f"/products/{api.tenant.product_id}", json={"product_id": "x", "colour": "red"})
    assert_error(reply, 400, "IOTDA.000006", "Unknown or read-only fields: colour, product_id")


async def test_name_and_provision_key_conflicts(api: Management) -> None:
    first = await api.call("POST", "/products", json={"name": "dup"})
    assert first.status == 201
    assert_error(await api.call("POST", "/products", json={"name": "dup"}), 409, "IOTDA.000007")
    reply = await api.call("POST", "/products", json={
        "name": "other", "provision_strategy": "ALLOW_CREATE_NEW_DEVICES",
        "provision_key": api.tenant.provision_key, "provision_secret": "s",
    })
    assert_error(reply, 409, "IOTDA.000007", "Device profile with such provision device key already exists!")


async def test_product_with_devices_cannot_be_deleted(api: Management) -> None:
    await api.create_device("keeps-the-product")
    assert_error(await api.call("DELETE", f"/products/{api.tenant.product_id}"), 409, "IOTDA.000007")


async def test_unknown_product(api: Management) -> None:
    missing = "f" * 24
    assert_error(await api.call("GET", f"/products/{missing}"), 404, "IOTDA.000005")
    assert_error(await api.call("PUT", f"/products/{missing}", json={}), 404, "IOTDA.000005")
    assert_error(await api.call("DELETE", f"/products/{missing}"), 404, "IOTDA.000005")


async def test_pagination_newest_first_with_marker_and_offset(api: Management) -> None:
    for n in range(4):
        assert (await api.call("POST", "/products", json={"name": f"page-{n}"})).status == 201
    everything = await api.call("GET", "/products", params={"limit": 50})
    ids = [p["product_id"] for p in everything.body["products"]]
    assert everything.body["page"] == {"count": 5, "marker": ids[-1]}
    assert ids == sorted(ids, reverse=True)
    assert [p["name"] for p in everything.body["products"][:4]] == ["page-3", "page-2", "page-1", "page-0"]

    first = await api.call("GET", "/products", params={"limit": 2})
    assert [p["product_id"] for p in first.body["products"]] == ids[:2]
    assert first.body["page"] == {"count": 5, "marker": ids[1]}
    second = await api.call("GET", "/products", params={"limit": 2, "marker": first.body["page"]["marker"]})
    assert [p["product_id"] for p in second.body["products"]] == ids[2:4]
    skipped = await api.call("GET", "/products", params={"limit": 2, "offset": 3})
    assert [p["product_id"] for p in skipped.body["products"]] == ids[3:5]
    beyond = await api.call("GET", "/products", params={"marker": ids[-1]})
    assert beyond.body == {"products": [], "page": {"count": 5, "marker": None}}
    default = await api.call("GET", "/products")
    assert len(default.body["products"]) == 5


@pytest.mark.parametrize(("params", "code", "message"), [
    ({"limit": 0}, "IOTDA.000017", "limit must be an integer from 1 to 50"),
    ({"limit": 51}, "IOTDA.000017", "limit must be an integer from 1 to 50"),
    ({"limit": "ten"}, "IOTDA.000017", "limit must be an integer from 1 to 50"),
    ({"offset": -1}, "IOTDA.000018", "offset must be an integer from 0 to 500"),
    ({"offset": 501}, "IOTDA.000018", "offset must be an integer from 0 to 500"),
    ({"marker": "xyz"}, "IOTDA.000006", "marker must be 24 hexadecimal digits"),
])
async def test_pagination_parameters_out_of_range(api: Management, params: dict, code: str, message: str) -> None:
    assert_error(await api.call("GET", "/products", params=params), 400, code, message)


async def test_projects_see_only_their_products(api: Management, gateway) -> None:
    from tests.support import new_tenant

    other = await new_tenant(gateway.services)
    listed = await api.call("GET", "/products")
    assert [p["product_id"] for p in listed.body["products"]] == [api.tenant.product_id]
    # Another project's product id through one's own project: absent, not forbidden.
    assert_error(await api.call("GET", f"/products/{other.product_id}"), 404, "IOTDA.000005")
    assert_error(await api.call("DELETE", f"/products/{other.product_id}"), 404, "IOTDA.000005")
