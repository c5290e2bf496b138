"""Tenant isolation on the management API: every route of the running application (taken from
its router, so a new route cannot be forgotten) is called with another project's token, on
that project's own path and on the victim's path, naming the victim's real products, devices,
templates, certificates, telemetry and attributes, OTA packages, IoTDA messages and shadow,
forwarding rules, actions and dead letters. Nothing of the victim's may be read, listed or
changed; the victim's state is compared before and after. The live WebSocket feed, outside the
/v5 prefix, has a test of its own here."""

from __future__ import annotations

import re
import secrets
from typing import Any

import aiohttp
import orjson
import pytest

from fleetgate.protocols.http.iotda import PREFIX
from tests import iotda_support as iotda_device, pki
from tests.management_client import Management, assert_error
from tests.support import Tenant, free_port, new_tenant
from tests.template_bodies import body as template_body

# Nothing listens there: the victim's action fails, and the intruder's would go nowhere.
_NOWHERE = f"http://127.0.0.1:{free_port()}"
_HOOK, _INTRUDER_HOOK = _NOWHERE + "/victim-hook", _NOWHERE + "/intruder-hook"
_WS = "/api/ws/plugins/telemetry"
# A JSON string, so that a leaked download is read as text and caught by secrets_of.
_IMAGE = b'"victim-marker firmware image"'


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
    iotda = {"device_id": victim["iotda_device_id"]}  # "ids": path parameters other than the victim's defaults
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
        ("GET", "/telemetry/latest"): {"params": {"keys": "victim_temp", "product_id": victim["product_id"]}},
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
        # OTA packages: the victim's image is assigned to its product and to its device.
        ("POST", "/ota-upgrades/packages"): {"params": {"type": "FIRMWARE", "title": "intruder-fw", "version": "1"},
                                             "data": b"intruder image"},
        ("GET", "/ota-upgrades/packages"): {"params": {"type": "FIRMWARE"}},
        ("GET", "/ota-upgrades/packages/{package_id}"): {},
        ("GET", "/ota-upgrades/packages/{package_id}/content"): {},
        ("DELETE", "/ota-upgrades/packages/{package_id}"): {},
        ("PUT", "/devices/{device_id}/ota-packages/{type}"): {"json": {"package_id": victim["package_id"]}},
        ("DELETE", "/devices/{device_id}/ota-packages/{type}"): {},
        ("PUT", "/products/{product_id}/ota-packages/{type}"): {"json": {"package_id": victim["package_id"]}},
        ("DELETE", "/products/{product_id}/ota-packages/{type}"): {},
        ("GET", "/devices/{device_id}/ota"): {},
        # IoTDA's device calls, on the victim's device that authenticates with a secret.
        ("POST", "/devices/{device_id}/action"): {"ids": iotda, "params": {"action_id": "resetSecret"},
                                                  "json": {"secret": "Intruder_0123", "force_disconnect": True}},
        ("POST", "/devices/{device_id}/messages"): {"ids": iotda, "json": {"message": "pwned", "ttl": 60}},
        ("GET", "/devices/{device_id}/messages"): {"ids": iotda},
        ("GET", "/devices/{device_id}/messages/{message_id}"): {"ids": iotda},
        ("PUT", "/devices/{device_id}/properties"): {"ids": iotda, "json": {"services": [
            {"service_id": "victim_svc", "properties": {"victim_desired": "pwned"}}]}},
        ("GET", "/devices/{device_id}/properties"): {"ids": iotda, "params": {"service_id": "victim_svc"}},
        ("GET", "/devices/{device_id}/shadow"): {"ids": iotda},
        ("PUT", "/devices/{device_id}/shadow"): {"ids": iotda, "json": {"shadow": [
            {"service_id": "victim_svc", "desired": {"victim_desired": "pwned"}}]}},
        # Forwarding: the victim's rule, its HTTP action and a dead letter of that action.
        ("POST", "/routing-rule/rules"): {"json": {"rule_name": "intruder", "app_type": "GLOBAL",
                                                   "subject": {"resource": "device.property", "event": "report"}}},
        ("GET", "/routing-rule/rules"): {},
        ("GET", "/routing-rule/rules/{rule_id}"): {},
        ("PUT", "/routing-rule/rules/{rule_id}"): {"json": {"description": "pwned", "active": True}},
        ("DELETE", "/routing-rule/rules/{rule_id}"): {},
        ("POST", "/routing-rule/actions"): {"json": {"rule_id": victim["rule_id"], "channel": "HTTP_FORWARDING",
                                                     "channel_detail": {"http_forwarding": {"url": _INTRUDER_HOOK}}}},
        ("GET", "/routing-rule/actions"): {"params": {"rule_id": victim["rule_id"]}},
        ("GET", "/routing-rule/actions/{rule_action_id}"): {},
        ("PUT", "/routing-rule/actions/{rule_action_id}"): {
            "json": {"channel_detail": {"http_forwarding": {"url": _INTRUDER_HOOK}}}},
        ("DELETE", "/routing-rule/actions/{rule_action_id}"): {},
        ("GET", "/routing-rule/actions/{rule_action_id}/dead-letters"): {},
        ("POST", "/routing-rule/actions/{rule_action_id}/dead-letters/replay"): {"json": {}},
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
    state = {
        "tenant": tenant, "api": api, "device_name": name, "device_id": device_id, "product_id": tenant.product_id,
        "template_id": template.body["template_id"], "certificate_id": certificate.body["certificate_id"],
        "key": "victim_temp", "ca_pem": ca.pem, "leaf_pem": pki.leaf(ca, CN="leaf").pem, "crl": pki.crl(ca),
        "template_name": template.body["template_name"], "command_id": command.body["command_id"],
        "token": token, **await _ota(api, device_id, tenant.product_id), **await _iotda(api, tenant.product_id),
        **await _forwarding(gateway, api, http, token),
    }
    # The victim device's requests are written as activity every presence_flush_seconds: now,
    # so that no test's snapshots of it straddle that write.
    await gateway.presence.flush()
    return state


async def _ota(api: Management, device_id: str, product_id: str) -> dict[str, Any]:
    title = "victim-fw-" + secrets.token_hex(3)
    package = await api.call("POST", "/ota-upgrades/packages", data=_IMAGE,
                             params={"type": "FIRMWARE", "title": title, "version": "1.0"})
    assert package.status == 201, package
    package_id = package.body["package_id"]
    for target in (f"/products/{product_id}", f"/devices/{device_id}"):
        assigned = await api.call("PUT", f"{target}/ota-packages/FIRMWARE", json={"package_id": package_id})
        assert assigned.status == 200, assigned
    return {"package_id": package_id, "package_title": title, "type": "FIRMWARE"}


async def _iotda(api: Management, product_id: str) -> dict[str, Any]:
    """A device of the victim's that authenticates with a secret, with a message waiting for it
    (offline, it is held within its ttl) and a desired value in its shadow."""
    name, secret = "victim-iotda-" + secrets.token_hex(3), "VictimSecret_" + secrets.token_hex(4)
    device = await api.call("POST", "/devices", json={
        "node_id": "node-" + secrets.token_hex(3), "device_name": name, "product_id": product_id,
        "auth_info": {"auth_type": "SECRET", "secret": secret, "secure_access": False}})
    assert device.status == 201, device
    device_id = device.body["device_id"]
    message = await api.call("POST", f"/devices/{device_id}/messages",
                             json={"message": {"note": "victim-marker"}, "name": "victim-message", "ttl": 60})
    assert message.status == 201, message
    shadow = await api.call("PUT", f"/devices/{device_id}/shadow", json={"shadow": [
        {"service_id": "victim_svc", "desired": {"victim_desired": "victim-marker"}}]})
    assert shadow.status == 200, shadow
    return {"iotda_device_id": device_id, "iotda_device_name": name, "iotda_secret": secret,
            "message_id": message.body["message_id"]}


async def _forwarding(gateway, api: Management, http, token: str) -> dict[str, Any]:
    """An active rule whose HTTP action fails, one report of the victim's dead-lettered as the
    forwarder does after its attempts (a claim at the end of time takes the lane from whoever
    holds it), then the rule switched off so that nothing more is tried."""
    rule_name = "victim-rule-" + secrets.token_hex(3)
    rule = await api.call("POST", "/routing-rule/rules", json={
        "rule_name": rule_name, "subject": {"resource": "device.property", "event": "report"},
        "app_type": "GLOBAL", "active": True})
    assert rule.status == 201, rule
    rule_id = rule.body["rule_id"]
    hook_token = "victim-hook-" + secrets.token_hex(4)
    action = await api.call("POST", "/routing-rule/actions", json={
        "rule_id": rule_id, "channel": "HTTP_FORWARDING",
        "channel_detail": {"http_forwarding": {"url": _HOOK, "token": hook_token, "timeout": 1}}})
    assert action.status == 201, action
    action_id = action.body["action_id"]
    async with http.post(f"/api/v1/{token}/telemetry", data=b'{"victim_forwarded": 1}') as resp:
        assert resp.status == 200
    store = gateway._forwarding.store  # noqa: SLF001
    lane = await store.claim(action_id, "isolation-test", 2**62, 1000, 10)
    assert lane is not None and len(lane.items) == 1
    await store.dead_letter(lane.items, "attempts", "refused", 1)
    await store.release(lane, "isolation-test")
    off = await api.call("PUT", f"/routing-rule/rules/{rule_id}", json={"active": False})
    assert off.status == 200, off
    dead = await api.call("GET", f"/routing-rule/actions/{action_id}/dead-letters")
    assert dead.status == 200 and dead.body["count"] == 1, dead
    return {"rule_id": rule_id, "rule_name": rule_name, "rule_action_id": action_id, "hook_token": hook_token}


async def snapshot(victim: dict[str, Any]) -> dict[str, Any]:
    api: Management = victim["api"]
    paths = [
        f"/products/{victim['product_id']}", f"/devices/{victim['device_id']}",
        f"/provisioning-templates/{victim['template_id']}", f"/certificates/{victim['certificate_id']}",
        f"/devices/{victim['device_id']}/telemetry/latest", "/devices", "/products", "/provisioning-templates",
        "/certificates", f"/devices/{victim['device_id']}/commands",
        f"/devices/{victim['device_id']}/commands/{victim['command_id']}",
        "/ota-upgrades/packages", f"/ota-upgrades/packages/{victim['package_id']}",
        f"/ota-upgrades/packages/{victim['package_id']}/content", f"/devices/{victim['device_id']}/ota",
        f"/devices/{victim['iotda_device_id']}/ota", f"/devices/{victim['iotda_device_id']}",
        f"/devices/{victim['iotda_device_id']}/messages",
        f"/devices/{victim['iotda_device_id']}/messages/{victim['message_id']}",
        f"/devices/{victim['iotda_device_id']}/shadow",
        "/routing-rule/rules", f"/routing-rule/rules/{victim['rule_id']}", "/routing-rule/actions",
        f"/routing-rule/actions/{victim['rule_action_id']}",
        f"/routing-rule/actions/{victim['rule_action_id']}/dead-letters",
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
    """The path with the victim's ids in it."""
    return re.sub(r"\{(\w+)\}", lambda m: victim[m.group(1)], path)


_IDS = ("device_id", "template_id", "certificate_id", "iotda_device_id", "package_id", "rule_id", "rule_action_id",
        "message_id", "command_id")


def secrets_of(victim: dict[str, Any]) -> list[str]:
    """What only the victim's data holds: it may never appear in an answer to the intruder."""
    tenant: Tenant = victim["tenant"]
    return [victim["device_name"], victim["template_name"], "victim-marker", "41.5", tenant.provision_secret,
            tenant.provision_key, "victim CA", "victim chain", victim["token"], victim["package_title"],
            victim["iotda_device_name"], victim["iotda_secret"], victim["rule_name"], victim["hook_token"],
            "victim-hook", "victim-message"]


async def test_a_foreign_token_reaches_nothing_of_another_project(gateway, management, victim, clients,
                                                                  mqtt_port) -> None:
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
        spec = dict(specs[(method, path)])
        target = concrete(path, {**victim, **spec.pop("ids", {})})
        # 1. On the intruder's own path, with the victim's ids.
        own = await intruder.call(method, target, **spec)
        text = orjson.dumps(own.body).decode() if own.body is not None else ""
        # A template is a document: one naming another project's product is accepted, as one naming
        # a product that does not exist yet is, and refused at registration (PRODUCT_NOT_FOUND: the
        # product is looked up in the CA's project). Every other reference to the victim must fail.
        names_victim = "{" in path or (method, path) in (("POST", "/devices"), ("POST", "/devices/claim"),
                                                         ("POST", "/routing-rule/actions"))
        if names_victim and own.status < 400:
            changes.append((method, path, own.status, own.body))
        elif names_victim and own.status not in (400, 403, 404):
            changes.append((method, path, own.status, own.body))
        if any(secret in text for secret in secrets_of(victim)) or (
            method == "GET" and "{" not in path and any(victim[k] in text for k in _IDS)
        ):
            leaks.append((method, path, own.status, text[:200]))
        # 2. On the victim's path: the token does not open it.
        foreign = await intruder.call(method, target, project_id=victim["tenant"].project_id, **spec)
        if foreign.status != 403:
            changes.append(("victim path", method, path, foreign.status, foreign.body))
    assert not leaks, leaks
    assert not changes, changes
    assert await snapshot(victim) == before
    # A secret is not shown after it is set: the device itself proves it was not reset.
    _, reason = await iotda_device.connect(clients, mqtt_port, victim["iotda_device_id"], victim["iotda_secret"])
    assert reason == 0


async def test_the_intruders_own_resources_name_nothing_of_the_victims(gateway, management, victim) -> None:
    """References from the intruder's own device, product and action to the victim's package,
    message and dead letters: refused, or matching nothing."""
    intruder = Management(management, await new_tenant(gateway.services))
    device = await intruder.create_device("intruder-" + secrets.token_hex(3))
    (dead,) = (await victim["api"].call("GET", f"/routing-rule/actions/{victim['rule_action_id']}/dead-letters")
               ).body["dead_letters"]
    rule = await intruder.call("POST", "/routing-rule/rules", json={
        "rule_name": "intruder", "subject": {"resource": "device.property", "event": "report"}})
    action = await intruder.call("POST", "/routing-rule/actions", json={
        "rule_id": rule.body["rule_id"], "channel": "HTTP_FORWARDING",
        "channel_detail": {"http_forwarding": {"url": _INTRUDER_HOOK}}})
    assert action.status == 201, action
    before = await snapshot(victim)
    for target in (f"/devices/{device['device_id']}", f"/products/{intruder.tenant.product_id}"):
        reply = await intruder.call("PUT", f"{target}/ota-packages/FIRMWARE", json={"package_id": victim["package_id"]})
        assert_error(reply, 404, "IOTDA.000005")
    reply = await intruder.call("GET", f"/devices/{device['device_id']}/messages/{victim['message_id']}")
    assert_error(reply, 404, "IOTDA.000005")
    replayed = await intruder.call("POST", f"/routing-rule/actions/{action.body['action_id']}/dead-letters/replay",
                                   json={"ids": [dead["id"]]})
    assert replayed.status == 200 and replayed.body == {"replayed": 0}, replayed
    assert await snapshot(victim) == before


async def test_a_foreign_token_on_the_live_feed_gets_errors_and_no_data(gateway, management, http, victim) -> None:
    """ThingsBoard's error shape (errorCode 2, no data) for every command naming the victim's
    device; and no update of it afterwards, proven by ordering: the intruder's next answer comes
    after the victim's own subscriber has received the update."""
    device_id = victim["device_id"]
    async with http.post(f"/api/v1/{victim['token']}/attributes", data=b'{"victim_client": "victim-marker"}') as resp:
        assert resp.status == 200
    intruder = Management(management, await new_tenant(gateway.services))
    own = await intruder.create_device("intruder-" + secrets.token_hex(3))
    owner = await management.ws_connect(_WS, headers={"X-Auth-Token": victim["tenant"].token})
    foreign = await management.ws_connect(_WS, headers={"X-Auth-Token": intruder.tenant.token})
    try:
        await owner.send_json({"tsSubCmds": [{"cmdId": 1, "entityType": "DEVICE", "entityId": device_id}]})
        assert (await _receive(owner))["data"]["victim_temp"][0][1] == "41.5"
        subscription = {"entityType": "DEVICE", "entityId": device_id}
        history = {**subscription, "keys": "victim_temp", "startTs": 0, "endTs": 2**50}
        await foreign.send_json({
            "tsSubCmds": [{"cmdId": 1, **subscription}, {"cmdId": 2, **subscription, "keys": "victim_temp"}],
            "attrSubCmds": [{"cmdId": 3, **subscription}, {"cmdId": 4, **subscription, "scope": "SERVER_SCOPE"}],
            "historyCmds": [{"cmdId": 5, **history}, {"cmdId": 6, **history, "agg": "MAX", "interval": 2**49}],
        })
        refused = {"errorCode": 2, "errorMsg": f"Device {device_id} does not exist", "data": None}
        answers = [await _receive(foreign) for _ in range(6)]
        assert sorted(answers, key=lambda a: a["subscriptionId"]) == [
            {"subscriptionId": n, **refused} for n in range(1, 7)]

        async with http.post(f"/api/v1/{victim['token']}/telemetry", data=b'{"victim_temp": 42.5}') as resp:
            assert resp.status == 200
        assert (await _receive(owner))["data"]["victim_temp"][0][1] == "42.5"
        await foreign.send_json({"tsSubCmds": [{"cmdId": 7, "entityType": "DEVICE", "entityId": own["device_id"]}]})
        assert await _receive(foreign) == {"subscriptionId": 7, "errorCode": 0, "errorMsg": None, "data": {}}
    finally:
        await owner.close()
        await foreign.close()


async def _receive(ws) -> dict[str, Any]:
    message = await ws.receive(timeout=10)
    assert message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), message
    return orjson.loads(message.data)
