"""Device CA certificates (IoTDA's certificates resource): upload, proof of possession,
binding a template, CRLs."""

from __future__ import annotations

import dataclasses
import re
import secrets
from typing import Any

from fleetgate.core import pki
from fleetgate.core.certificate_model import DeviceCa
from fleetgate.core.clock import SYSTEM_CLOCK, Clock
from fleetgate.core.errors import CaNotVerified, InvalidInput, NotFound, VerificationFailed
from fleetgate.core.ids import new_id
from fleetgate.core.model import Page
from fleetgate.core.ports import DeviceCaStore


class CaService:
    def __init__(self, store: DeviceCaStore, max_per_project: int, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._store = store
        self._max = max_per_project
        self._clock = clock

    async def upload(self, project_id: str, content: Any, owner: str = "") -> DeviceCa:
        certificate = pki.load_pem(content, "content")
        if not pki.is_ca(certificate):
            raise InvalidInput("content is not a CA certificate (basicConstraints CA:TRUE is required)")
        validity = pki.validity(certificate)
        ca = DeviceCa(
            id=new_id(), project_id=project_id, pem=content.strip() + "\n",
            fingerprint=pki.fingerprint(certificate), subject=pki.subject_der(certificate),
            cn_name=pki.common_name(certificate), owner=owner or project_id, verified=False,
            verify_code=secrets.token_hex(16), provision_enable=False, template_id=None,
            not_before=validity.not_before, not_after=validity.not_after, created_at=self._clock.now_ms(),
        )
        await self._store.create_ca(ca, self._max)
        return ca

    async def get(self, project_id: str, ca_id: str) -> DeviceCa:
        ca = await self._store.ca(project_id, ca_id)
        if ca is None:
            raise NotFound(f"The certificate {ca_id} does not exist")
        return ca

    async def list(self, project_id: str, limit: int, marker: str, offset: int) -> Page:
        return await self._store.list_cas(project_id, limit, marker, offset)

    async def verify(self, project_id: str, ca_id: str, verify_content: Any) -> DeviceCa:
        """Proof of possession: a certificate the CA signed whose CN is the verify code."""
        ca = await self.get(project_id, ca_id)
        proof = pki.load_pem(verify_content, "verify_content")
        if not pki.issued_by(proof, pki.load_pem(ca.pem)):
            raise VerificationFailed("The verification certificate is not signed by this CA certificate")
        if not secrets.compare_digest(pki.common_name(proof).encode(), ca.verify_code.encode()):
            raise VerificationFailed("The verification certificate's CN is not this CA's verify code")
        verified = dataclasses.replace(ca, verified=True)
        await self._store.update_ca(verified)
        return verified

    async def update(self, project_id: str, ca_id: str, body: dict[str, Any]) -> DeviceCa:
        """provision_enable and template_id (an explicit null unbinds); ocsp_* are accepted."""
        known = {"provision_enable", "template_id", "ocsp_enable", "ocsp_ssl_enable", "ocsp_server_ca_id"}
        unknown = set(body) - known
        if unknown:
            raise InvalidInput(f"Unknown fields: {', '.join(sorted(unknown))}")
        if body.get("ocsp_enable"):
            raise InvalidInput("OCSP is not supported by this gateway; upload a CRL instead")
        ca = await self.get(project_id, ca_id)
        changes: dict[str, Any] = {}
        if "template_id" in body:
            template_id = body["template_id"]
            if template_id is not None and (not isinstance(template_id, str) or not template_id):
                raise InvalidInput("template_id must be a template id or null")
            changes["template_id"] = template_id
        if body.get("provision_enable") is not None:
            if not isinstance(body["provision_enable"], bool):
                raise InvalidInput("provision_enable must be true or false")
            changes["provision_enable"] = body["provision_enable"]
        updated = dataclasses.replace(ca, **changes)
        if updated.provision_enable and not updated.verified:
            raise CaNotVerified()
        if updated.provision_enable and not updated.template_id:
            raise InvalidInput("provision_enable true must be used together with a provisioning template (template_id)")
        await self._store.update_ca(updated)
        return updated

    async def upload_crl(self, project_id: str, ca_id: str, crl_pem: Any) -> DeviceCa:
        ca = await self.get(project_id, ca_id)
        crl = pki.load_crl(crl_pem)
        if crl.issuer != pki.load_pem(ca.pem).subject or not pki.signed_by(crl, pki.load_pem(ca.pem)):
            raise InvalidInput("crl is not signed by this CA certificate")
        updated = dataclasses.replace(ca, crl_pem=crl_pem)
        await self._store.update_ca(updated)
        return updated

    async def set_product_chain(self, project_id: str, product_id: str, body: dict[str, Any]) -> DeviceCa:
        """ThingsBoard's X509_CERTIFICATE_CHAIN on a product: the CA (or intermediate) its devices
        chain to, the regular expression whose group 1 of the CN is the device name, and whether
        unknown names create devices. Replaces the product's previous chain CA."""
        unknown = set(body) - {"certificate", "certificate_regex", "allow_create_new_devices"}
        if unknown:
            raise InvalidInput(f"Unknown fields: {', '.join(sorted(unknown))}")
        pattern = body.get("certificate_regex") or "(.*)"
        try:
            if not isinstance(pattern, str) or re.compile(pattern).groups < 1:
                raise InvalidInput("certificate_regex must have a capturing group: group 1 is the device name")
        except re.error as exc:
            raise InvalidInput(f"certificate_regex is not a regular expression: {exc}") from None
        allow_create = body.get("allow_create_new_devices", True)
        if not isinstance(allow_create, bool):
            raise InvalidInput("allow_create_new_devices must be true or false")
        certificate = pki.load_pem(body.get("certificate"), "certificate")
        validity = pki.validity(certificate)
        ca = DeviceCa(
            id=new_id(), project_id=project_id, pem=body["certificate"].strip() + "\n",
            fingerprint=pki.fingerprint(certificate), subject=pki.subject_der(certificate),
            cn_name=pki.common_name(certificate), owner=project_id, verified=True, verify_code="",
            provision_enable=True, template_id=None, not_before=validity.not_before, not_after=validity.not_after,
            created_at=self._clock.now_ms(), product_id=product_id, cn_pattern=pattern, allow_create=allow_create,
        )
        await self._store.set_product_ca(ca)
        return ca

    async def clear_product_chain(self, project_id: str, product_id: str) -> None:
        if not await self._store.delete_product_ca(project_id, product_id):
            raise NotFound(f"The product {product_id} has no X.509 chain certificate")

    async def delete(self, project_id: str, ca_id: str) -> None:
        if not await self._store.delete_ca(project_id, ca_id):
            raise NotFound(f"The certificate {ca_id} does not exist")
