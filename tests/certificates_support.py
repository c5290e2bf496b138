"""Device CA certificates through the management API: upload, proof of possession, a template
bound, provisioning enabled."""

from __future__ import annotations

from typing import Any

from tests import pki
from tests.management_client import Management
from tests.template_bodies import body as template_body


async def upload(api: Management, ca: pki.Issued) -> dict[str, Any]:
    """The CA certificate uploaded: its record."""
    reply = await api.call("POST", "/certificates", json={"content": ca.pem})
    assert reply.status == 201, reply
    return reply.body


async def verify(api: Management, ca: pki.Issued, record: dict[str, Any]) -> None:
    """Proof of possession: a certificate the CA signed, its CN the record's verify_code."""
    proof = pki.leaf(ca, CN=record["verify_code"])
    reply = await api.call("POST", f"/certificates/{record['certificate_id']}/action", params={"action_id": "verify"},
                           json={"verify_content": proof.pem})
    assert reply.status == 200 and reply.body is None, reply


async def static_template(api: Management, name: str = "tpl", **device: Any) -> dict[str, Any]:
    """A template of the tenant's product (IoTDA's first example, the product id static)."""
    b = template_body(name, product_id=api.tenant.product_id, **device)
    reply = await api.call("POST", "/provisioning-templates", json=b)
    assert reply.status == 201, reply
    return reply.body


async def ready_ca(api: Management, template: dict[str, Any] | None = None) -> tuple[pki.Issued, dict[str, Any]]:
    """A CA uploaded, verified and bound to a template with provisioning enabled: the CA and its record."""
    ca = pki.ca("CA " + api.tenant.project_id)
    record = await upload(api, ca)
    await verify(api, ca, record)
    template = template or await static_template(api)
    reply = await api.call("PUT", f"/certificates/{record['certificate_id']}",
                           json={"provision_enable": True, "template_id": template["template_id"]})
    assert reply.status == 200, reply
    return ca, reply.body
