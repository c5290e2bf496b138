"""Tenant isolation on the management API: every route of the running application (taken from
its router, so a new route cannot be forgotten) is called with another project's token, on
that project's own path and on the victim's path, naming the victim's real products, devices,
templates, certificates, telemetry and attributes. Nothing of the victim's may be read, listed
or changed; the victim's state is compared before and after."""

from __future__ import annotations

import re
import secrets
from typing import Any

import orjson
import pytest

from fleetgate.protocols.http.iotda import PREFIX
from tests import pki
from tests.management_client import Management
from tests.support import Tenant, new_tenant
from tests.template_bodies import body as template_body


def management_routes(gateway) -> set[tuple[str, str]]:
    routes = set()
    for route in gateway.http_app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith(PREFIX) and route.method != "HEAD":
            routes.add((route.method, path.removeprefix(PREFIX)))
    return routes


# Each route's request: a body and query that would succeed for the resource's owner, so a
# refusal is the scoping's, not the validation's.
def requests(victim: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        ("POST", "/products"): {"json": {"name": "p-" + secrets.token_hex(3), "provision_strategy": "DISABLED"}},
        ("GET", "/products"): {},
        ("GET", "/products/{product_id}"): {},
        ("PUT", "/products/{product_id}"): {"json": {"description": "pwned"}},
        ("DELETE", "/products/{product_id}"): {},
        ("POST", "/devices"): {"json": {"device_name": "intruder", "product_id": victim["product_id"]}},
        ("GET", "/devices"): {"params": {"product_id": victim["product_id"]}},
        ("GET", "/devices/{device_id}"): {},
        ("PUT", "/devices/{device_id}"): {"json": {"description": "pwned"}},
        ("DELETE", "/devices/{device_id}"): {},
        ("GET", "/devices/{device_id}/attributes"): {"params": {"scope": "SHARED_SCOPE"}},
        ("POST", "/devices/{device_id}/attributes"): {"params": {"scope": "SHARED_SCOPE"},
                                                      "json": {"victim_attr": "pwned"}},
        ("DELETE", "/devices/{device_id}/attributes"): {"params": {"scope": "SHARED_SCOPE", "keys": "victim_attr"}},
        ("GET", "/devices/{device_id}/telemetry/latest"): {},
        ("GET", "/devices/{device_id}/telemetry/{key}"): {"params": {"start_time": 0, "end_time": 2**50}},
        ("GET", "/devices/{device_id}/telemetry"): {"params": {"keys": "victim_temp", "start_time": 0,
                                                               "end_time": 2**50, "agg": "MAX", "interval": 2**49}},
        ("GET", "/telemetry/latest"): {"params": {"keys": "victim_temp"}},
        ("POST", "/devices/{device_id}/commands"): {"json": {"method": "reboot", "params": {}, "oneway": True}},
        ("GET", "/devices/{device_id}/commands"): {},
        ("GET", "/devices/{device_id}/commands/{command_id}"): {},
        ("DELETE", "/devices/{device_id}/commands/{command_id}"): {},
        ("POST", "/provisioning-templates"): {"json": template_body("t-" + secrets.token_hex(3),
                                                                    product_id=victim["product_id"])},
        ("GET", "/provisioning-templates"): {},
        ("GET", "/provisioning-templates/{template_id}"): {},
        ("PUT", "/provisioning-templates/{template_id}"): {"json": {"description": "pwned"}},
        ("DELETE", "/provisioning-templates/{template_id}"): {},
        ("POST", "/provisioning-templates/{template_id}/evaluate"): {"json": {"certificate": victim["leaf_pem"]}},
        ("POST", "/certificates"): {"json": {"content": pki.ca("intruder CA " + secrets.token_hex(3)).pem}},
        ("GET", "/certificates"): {},
        ("GET", "/certificates/{certificate_id}"): {},
        ("PUT", "/certificates/{certificate_id}"): {"json": {"provision_enable": False}},
        ("DELETE", "/certificates/{certificate_id}"): {},
        ("POST", "/certificates/{certificate_id}/action"): {"params": {"action_id": "verify"},
                                                            "json": {"verify_content": victim["leaf_pem"]}},
        ("PUT", "/certificates/{certificate_id}/crl"): {"json": {"crl": victim["crl"]}},
        ("PUT", "/products/{product_id}/x509-chain"): {"json": {"certificate": victim["ca_pem"],
                                                                "certificate_regex": "^(.*)$"}},
        ("DELETE", "/products/{product_id}/x509-chain"): {},
        ("POST", "/devices/claim"): {"json": {"device_name": victim["device_name"], "secret_key": "victim-claim",
                                             "customer": "intruder"}},
        ("DELETE", "/devices/{device_id}/claim"): {},
    }


@pytest.fixture
async def victim(gateway, management, http) -> dict[str, Any]:
    tenant = await new_tenant(gateway.services)
    api = Management(management, tenant)
    name = "victim-" + secrets.token_hex(4)
    async with http.post("/api/v1/provision", json={"deviceName": name, "provisionDeviceKey": tenant.provision_key,
                                                    "provisionDeviceSecret": tenant.provision_secret}) as resp:
        token = orjson.loads(await resp.read())["credentialsValue"]
    async with http.post(f"/api/v1/{token}/telemetry", data=b'{"victim_temp": 41.5}') as resp:
        assert resp.status == 200
    async with http.post(f"/api/v1/{token}/claim", json={"secretKey": "victim-claim"}) as resp:
        assert resp.status == 200  # a claim in progress, which only the victim's operator may complete
    await gateway.services.claiming.settled()
    devices = await api.call("GET", "/devices", params={"device_name": name})
    device_id = devices.body["devices"][0]["device_id"]
    written = await api.call("POST", f"/devices/{device_id}/attributes", params={"scope": "SHARED_SCOPE"},
                             json={"victim_attr": "victim-marker"})
    assert written.status == 200, written
    command = await api.call("POST", f"/devices/{device_id}/commands",
                             json={"method": "victim-marker", "persistent": True})
    assert command.status == 202, command
    template = await api.call("POST", "/provisioning-templates",
                              json=template_body("victim-tpl-" + secrets.token_hex(3), product_id=tenant.product_id))
    assert template.status == 201, template
    ca = pki.ca("victim CA " + tenant.project_id)
    certificate = await api.call("POST", "/certificates", json={"content": ca.pem})
    assert certificate.status == 201, certificate
    chain_ca = pki.ca("victim chain " + tenant.project_id)
    chain = await api.call("PUT", f"/products/{tenant.product_id}/x509-chain",
                           json={"certificate": chain_ca.pem, "certificate_regex": "^(.*)$"})
    assert chain.status == 200, chain
    return {
        "tenant": tenant, "api": api, "device_name": name, "device_id": device_id, "product_id": tenant.product_id,
        "template_id": template.body["template_id"], "certificate_id": certificate.body["certificate_id"],
        "key": "victim_temp", "ca_pem": ca.pem, "leaf_pem": pki.leaf(ca, CN="leaf").pem, "crl": pki.crl(ca),
        "template_name": template.body["template_name"], "command_id": command.body["command_id"],
    }


async def snapshot(victim: dict[str, Any]) -> dict[str, Any]:
    api: Management = victim["api"]
    paths = [
        f"/products/{victim['product_id']}", f"/devices/{victim['device_id']}",
        f"/provisioning-templates/{victim['template_id']}", f"/certificates/{victim['certificate_id']}",
        f"/devices/{victim['device_id']}/telemetry/latest", "/devices", "/products", "/provisioning-templates",
        "/certificates", f"/devices/{victim['device_id']}/commands",
        f"/devices/{victim['device_id']}/commands/{victim['command_id']}",
    ]
    state = {}
    for path in paths:
        reply = await api.call("GET", path)
        assert reply.status == 200, (path, reply)
        state[path] = reply.body
    attributes = await api.call("GET", f"/devices/{victim['device_id']}/attributes", params={"scope": "SHARED_SCOPE"})
    state["attributes"] = attributes.body
    return state


def concrete(path: str, victim: dict[str, Any]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: victim[m.group(1)], path)


def secrets_of(victim: dict[str, Any]) -> list[str]:
    """What only the victim's data holds: it may never appear in an answer to the intruder."""
    tenant: Tenant = victim["tenant"]
    return [victim["device_name"], victim["template_name"], "victim-marker", "41.5", tenant.provision_secret,
            tenant.provision_key, "victim CA", "victim chain"]


async def test_a_foreign_token_reaches_nothing_of_another_project(gateway, management, victim) -> None:
    routes = management_routes(gateway)
    specs = requests(victim)
    assert routes == set(specs), (
        f"routes without an isolation case: {sorted(routes - set(specs))}; cases without a route: "
        f"{sorted(set(specs) - routes)}"
    )
    intruder = Management(management, await new_tenant(gateway.services))
    before = await snapshot(victim)
    leaks, changes = [], []
    for method, path in sorted(routes, key=lambda r: (r[0] == "DELETE", r)):
        spec = specs[(method, path)]
        target = concrete(path, victim)
        # 1. On the intruder's own path, with the victim's ids.
        own = await intruder.call(method, target, **spec)
        text = orjson.dumps(own.body).decode() if own.body is not None else ""
        # A template is a document: one naming another project's product is accepted, as one naming
        # a product that does not exist yet is, and refused at registration (PRODUCT_NOT_FOUND: the
        # product is looked up in the CA's project). Every other reference to the victim must fail.
        names_victim = "{" in path or (method, path) in (("POST", "/devices"), ("POST", "/devices/claim"))
        if names_victim and own.status < 400:
            changes.append((method, path, own.status, own.body))
        elif names_victim and own.status not in (400, 403, 404):
            changes.append((method, path, own.status, own.body))
        if any(secret in text for secret in secrets_of(victim)) or (
            method == "GET" and "{" not in path and any(victim[k] in text for k in
                                                         ("device_id", "template_id", "certificate_id"))
        ):
            leaks.append((method, path, own.status, text[:200]))
        # 2. On the victim's path: the token does not open it.
        foreign = await intruder.call(method, target, project_id=victim["tenant"].project_id, **spec)
        if foreign.status != 403:
            changes.append(("victim path", method, path, foreign.status, foreign.body))
    assert not leaks, leaks
    assert not changes, changes
    assert await snapshot(victim) == before
