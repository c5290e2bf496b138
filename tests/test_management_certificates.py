"""/v5/iot/{project_id}/certificates (device CAs): upload, proof of possession, binding, CRL,
and the template dry run that decides as a first connection would."""

from __future__ import annotations

import datetime
import re

import pytest

from tests import pki
from tests.certificates_support import ready_ca, static_template, upload, verify
from tests.management_client import assert_error

TIME = re.compile(r"^\d{8}T\d{6}Z$")


async def test_upload_answers_201_with_iotda_fields(api) -> None:
    ca = pki.ca("My Root")
    record = await upload(api, ca)
    assert {"certificate_id", "cn_name", "owner", "status", "verify_code", "provision_enable", "template_id",
            "ocsp_enable", "ocsp_server_ca_id", "ocsp_ssl_enable", "create_date", "effective_date",
            "expiry_date"} <= set(record)
    assert record["cn_name"] == "My Root" and record["status"] is False and record["provision_enable"] is False
    assert record["template_id"] is None and record["verify_code"]
    assert all(TIME.match(record[k]) for k in ("create_date", "effective_date", "expiry_date"))
    listed = await api.call("GET", "/certificates")
    assert [c["certificate_id"] for c in listed.body["certificates"]] == [record["certificate_id"]]
    assert listed.body["page"] == {"count": 1, "marker": record["certificate_id"]}
    shown = await api.call("GET", f"/certificates/{record['certificate_id']}")
    assert shown.body == record


async def test_upload_refuses_non_ca_garbage_and_duplicates(api) -> None:
    ca = pki.ca()
    assert_error(await api.call("POST", "/certificates", json={"content": "nope"}), 400, "IOTDA.000006")
    assert_error(await api.call("POST", "/certificates", json={"content": pki.leaf(ca, CN="x").pem}), 400,
                 "IOTDA.000006")
    await upload(api, ca)
    assert_error(await api.call("POST", "/certificates", json={"content": ca.pem}), 409, "IOTDA.014306")


async def test_verification_needs_the_ca_key_and_the_verify_code(api) -> None:
    ca = pki.ca()
    record = await upload(api, ca)
    path = f"/certificates/{record['certificate_id']}/action"
    wrong_cn = pki.leaf(ca, CN="not-the-code")
    assert_error(await api.call("POST", path, params={"action_id": "verify"}, json={"verify_content": wrong_cn.pem}),
                 400, "IOTDA.014305")
    impostor = pki.ca(ca.certificate.subject.rfc4514_string().split("=", 1)[1])  # same name, another key
    forged = pki.leaf(impostor, CN=record["verify_code"])
    assert_error(await api.call("POST", path, params={"action_id": "verify"}, json={"verify_content": forged.pem}),
                 400, "IOTDA.014305")
    assert_error(await api.call("POST", path, params={"action_id": "other"}, json={"verify_content": forged.pem}),
                 400, "IOTDA.000006")
    await verify(api, ca, record)
    assert (await api.call("GET", f"/certificates/{record['certificate_id']}")).body["status"] is True


async def test_binding_needs_verification_and_a_template_and_null_unbinds(api) -> None:
    ca = pki.ca()
    record = await upload(api, ca)
    path = f"/certificates/{record['certificate_id']}"
    template = await static_template(api)
    assert_error(await api.call("PUT", path, json={"provision_enable": True, "template_id": template["template_id"]}),
                 400, "IOTDA.014304")
    await verify(api, ca, record)
    assert_error(await api.call("PUT", path, json={"provision_enable": True}), 400, "IOTDA.000006")
    assert_error(await api.call("PUT", path, json={"template_id": "ffffffffffffffffffffff00"}), 404, "IOTDA.000005")
    bound = await api.call("PUT", path, json={"provision_enable": True, "template_id": template["template_id"]})
    assert bound.status == 200 and bound.body["template_id"] == template["template_id"]
    assert bound.body["provision_enable"] is True
    # A bound template cannot be deleted.
    assert_error(await api.call("DELETE", f"/provisioning-templates/{template['template_id']}"), 400, "IOTDA.014303")
    assert_error(await api.call("PUT", path, json={"template_id": None}), 400, "IOTDA.000006")
    unbound = await api.call("PUT", path, json={"provision_enable": False, "template_id": None})
    assert unbound.status == 200 and unbound.body["template_id"] is None
    assert (await api.call("DELETE", f"/provisioning-templates/{template['template_id']}")).status == 204


async def test_delete_and_crl(api) -> None:
    ca = pki.ca()
    record = await upload(api, ca)
    path = f"/certificates/{record['certificate_id']}"
    other = pki.ca("Other")
    assert_error(await api.call("PUT", path + "/crl", json={"crl": pki.crl(other)}), 400, "IOTDA.000006")
    reply = await api.call("PUT", path + "/crl", json={"crl": pki.crl(ca)})
    assert reply.status == 200 and reply.body["crl_uploaded"] is True
    assert (await api.call("DELETE", path)).status == 204
    assert_error(await api.call("GET", path), 404, "IOTDA.000005")


async def test_evaluate_renders_the_device_without_creating_it(api, gateway) -> None:
    template = await static_template(api, tags=[{"tag_key": "site", "tag_value": {"ref":
                                                                                  "iotda::certificate::state_name"}}],
                                     device_name={"ref": "iotda::certificate::organizational_unit"})
    ca, record = await ready_ca(api, template)
    subject = dict(C="CN", O="Acme", OU="Meters", dnQualifier="q1", ST="Zhejiang", CN="node-1", serialNumber="s1")
    device = pki.leaf(ca, **subject)
    path = f"/provisioning-templates/{template['template_id']}/evaluate"
    reply = await api.call("POST", path, json={"certificate": device.pem})
    assert reply.status == 200, reply
    product = api.tenant.product_id
    assert reply.body["allowed"] is True and reply.body["action"] == "CREATED"
    assert reply.body["device"] == {"device_id": f"{product}_node-1", "device_name": "Meters", "node_id": "node-1",
                                    "product_id": product, "tags": [{"tag_key": "site", "tag_value": "Zhejiang"}],
                                    "policy_ids": ["5c90fa7d3c4e4405e8525079"]}
    assert reply.body["certificate_id"] == record["certificate_id"]
    assert await gateway.services.pool.fetchval("SELECT count(*) FROM devices WHERE project_id = $1",
                                                api.tenant.project_id) == 0


@pytest.mark.parametrize("case, reason", [
    ("missing_parameter", "MISSING_PARAMETER"),
    ("expired", "EXPIRED"),
    ("not_yet_valid", "NOT_YET_VALID"),
    ("unknown_ca", "UNKNOWN_CA"),
    ("fake_root", "UNKNOWN_CA"),
    ("revoked", "REVOKED"),
    ("disabled", "PROVISIONING_DISABLED"),
    ("unbound", "TEMPLATE_UNBOUND"),
    ("unverified", "CA_UNVERIFIED"),
])
async def test_evaluate_gives_the_exact_reason_for_a_refusal(api, gateway, case, reason) -> None:
    template = await static_template(api)
    ca, record = await ready_ca(api, template)
    full = dict(C="CN", O="Acme", OU="Meters", dnQualifier="q", ST="ZJ", CN="n1", serialNumber="s")
    path = f"/certificates/{record['certificate_id']}"
    signer = ca
    if case == "unknown_ca":
        signer = pki.ca("Stranger")
    elif case == "fake_root":
        signer = pki.ca("CA " + api.tenant.project_id)
    days = datetime.timedelta(days=1)
    leaf = {
        "missing_parameter": lambda: pki.leaf(signer, **{k: v for k, v in full.items() if k != "ST"}),
        "expired": lambda: pki.leaf(signer, not_before=-2 * days, not_after=-days, **full),
        "not_yet_valid": lambda: pki.leaf(signer, not_before=days, not_after=2 * days, **full),
    }.get(case, lambda: pki.leaf(signer, **full))()
    if case == "revoked":
        assert (await api.call("PUT", path + "/crl", json={"crl": pki.crl(ca, leaf)})).status == 200
    elif case == "disabled":
        assert (await api.call("PUT", path, json={"provision_enable": False})).status == 200
    elif case == "unbound":
        assert (await api.call("PUT", path, json={"provision_enable": False, "template_id": None})).status == 200
    elif case == "unverified":
        await api.call("PUT", path, json={"provision_enable": False, "template_id": None})
        # Unverified: a fresh upload of another CA, bound through the database (the API refuses it).
        other = pki.ca("Unverified " + api.tenant.project_id)
        rec = await upload(api, other)
        leaf = pki.leaf(other, **full)
        await gateway.services.pool.execute("UPDATE device_cas SET template_id = $1, provision_enable = true WHERE id = $2",
                                    template["template_id"], rec["certificate_id"])
    reply = await api.call("POST", f"/provisioning-templates/{template['template_id']}/evaluate",
                           json={"certificate": leaf.pem})
    assert reply.status == 200, reply
    assert reply.body["allowed"] is False and reply.body["reason"] == reason, reply.body
    assert reply.body["detail"]

