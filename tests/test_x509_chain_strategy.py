"""ThingsBoard's X.509 certificate chain strategy (spec 2.3) on the auto-registration engine:
a product's CA, the device name from group 1 of a regular expression on the CN, creation and
certificate rotation, over MQTTS with mosquitto_pub."""

from __future__ import annotations

import pytest

from tests import pki
from tests.autoregistration_support import audit_reasons, devices_in, publish_as
from tests.management_client import Management, assert_error

REGEX = r"^([^.]+)\.group\.example\.com$"


@pytest.fixture
def api(tls_api: Management) -> Management:
    """This module's tenant lives on the TLS gateway."""
    return tls_api


async def test_chain_creates_rotates_and_refuses(tls, api, tmp_path):
    gw, server_cert = tls
    root = pki.ca("TB chain " + api.tenant.project_id)
    reply = await api.call("PUT", f"/products/{api.tenant.product_id}/x509-chain",
                           json={"certificate": root.pem, "certificate_regex": REGEX})
    assert reply.status == 200, reply
    assert reply.body["certificate_regex"] == REGEX and reply.body["allow_create_new_devices"] is True
    first = pki.leaf(root, CN="dev-7.group.example.com")
    code, out = await publish_as(gw, server_cert, first, tmp_path)
    assert code == 0, out
    names = [r["name"] for r in await gw.services.pool.fetch(
        "SELECT name FROM devices WHERE project_id = $1 AND product_id = $2", api.tenant.project_id,
        api.tenant.product_id)]
    assert names == ["dev-7"]
    # Same name, new certificate: ThingsBoard replaces the device's certificate.
    rotated = pki.leaf(root, CN="dev-7.group.example.com")
    code, out = await publish_as(gw, server_cert, rotated, tmp_path, attempts=1)
    assert code == 0, out
    assert len(await devices_in(gw, api.tenant.project_id)) == 1
    # A CN the expression does not match: refused, nothing created.
    code, out = await publish_as(gw, server_cert, pki.leaf(root, CN="elsewhere.example.org"), tmp_path, attempts=1)
    assert code != 0 and "not authori" in out.lower()
    assert ("FAILURE", "CN_MISMATCH") in await audit_reasons(gw, api.tenant.project_id)
    # New devices not allowed: an unknown name is refused, a known one still rotates.
    reply = await api.call("PUT", f"/products/{api.tenant.product_id}/x509-chain",
                           json={"certificate": root.pem, "certificate_regex": REGEX,
                                 "allow_create_new_devices": False})
    assert reply.status == 200
    code, out = await publish_as(gw, server_cert, pki.leaf(root, CN="dev-8.group.example.com"), tmp_path)
    assert code != 0
    assert ("FAILURE", "DEVICE_NOT_FOUND") in await audit_reasons(gw, api.tenant.project_id)
    assert len(await devices_in(gw, api.tenant.project_id)) == 1


async def test_chain_settings_are_validated(api):
    root = pki.ca("TB bad " + api.tenant.project_id)
    path = f"/products/{api.tenant.product_id}/x509-chain"
    assert_error(await api.call("PUT", path, json={"certificate": root.pem, "certificate_regex": "no-group"}), 400,
                 "IOTDA.000006")
    assert_error(await api.call("PUT", path, json={"certificate": root.pem, "certificate_regex": "(["}), 400,
                 "IOTDA.000006")
    assert_error(await api.call("PUT", "/products/ffffffffffffffffffffff00/x509-chain",
                                json={"certificate": root.pem}), 404, "IOTDA.000005")
    assert (await api.call("PUT", path, json={"certificate": root.pem})).status == 200
    assert (await api.call("DELETE", path)).status == 204
    assert_error(await api.call("DELETE", path), 404, "IOTDA.000005")
