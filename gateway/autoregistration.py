"""Certificate auto-registration: a device whose client certificate chains to a verified
device CA is registered on its first mTLS connection, as that CA's template says.

The front-ends hand over the leaf certificate (DER) after the handshake; this module
decides. Every refusal is an audit record and a metric with its reason, while the
device sees only "not authorized". The same decision serves the dry run
(``evaluate``), which writes nothing. ThingsBoard's X.509 chain strategy (a CA owned
by a product, the device name carved from the CN) runs through the same path.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from cryptography import x509

from fleetgate.core import metrics, pki, templates
from fleetgate.core.certificate_model import BoundCertificate, DeviceCa, Registration, Template
from fleetgate.core.clock import SYSTEM_CLOCK, Clock
from fleetgate.core.errors import Conflict, InvalidInput, Unauthorized
from fleetgate.core.ids import new_id
from fleetgate.core.model import AuditRecord, Device, DeviceIdentity
from fleetgate.core.ports import RegistrationStore

ACTION = "AUTO_REGISTER"


@dataclass(frozen=True, slots=True)
class Decision:
    """Allowed with the registration to store, or refused with a reason code and its detail."""

    reason: str
    detail: str
    registration: Registration | None = None
    ca: DeviceCa | None = None
    rendered: templates.RenderedDevice | None = None

    @property
    def allowed(self) -> bool:
        return self.registration is not None


def _refused(reason: str, detail: str, ca: DeviceCa | None = None) -> Decision:
    return Decision(reason, detail, ca=ca)


class Refused(Unauthorized):
    """Not authorized; ``reason`` is for the audit log, never for the device."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__("not authorized")
        self.reason, self.detail = reason, detail


class AutoRegistration:
    def __init__(self, store: RegistrationStore, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._store = store
        self._clock = clock
        # First connections of one certificate queue here, so a burst creates one device;
        # other processes are held off by the database's unique constraints.
        self._locks: dict[str, asyncio.Lock] = {}

    async def authenticate(self, der: bytes, source: str = "") -> DeviceIdentity:
        """The device the certificate belongs to, registering it on its first connection;
        Refused (an Unauthorized) otherwise."""
        fingerprint = pki.fingerprint_der(der)
        bound = await self._store.certificate(fingerprint)
        if bound is not None:
            return await self._bound(bound, der, source)
        lock = self._locks.setdefault(fingerprint, asyncio.Lock())
        waited = lock.locked()
        try:
            async with lock:
                if waited:  # the connection before may have registered it meanwhile
                    bound = await self._store.certificate(fingerprint)
                    if bound is not None:
                        return await self._bound(bound, der, source)
                return await self._register(der, fingerprint, source)
        finally:
            if not lock.locked() and self._locks.get(fingerprint) is lock:
                del self._locks[fingerprint]

    async def evaluate(self, template: Template, pem: str) -> Decision:
        """The dry run: what a first connection with this certificate would do under this
        template, writing nothing."""
        certificate = pki.load_pem(pem, "certificate")
        bound = await self._store.certificate(pki.fingerprint(certificate))
        if bound is not None:
            return _refused("ALREADY_REGISTERED", f"the certificate is already bound to device {bound.device.device_id}")
        return await self.decide(certificate, template)

    async def decide(self, certificate: x509.Certificate, template: Template | None = None) -> Decision:
        problem = pki.usage_problem(certificate)
        if problem:
            return _refused("KEY_USAGE", problem)
        now, validity = self._clock.now_ms(), pki.validity(certificate)
        if now < validity.not_before:
            return _refused("NOT_YET_VALID", "the certificate is not valid yet")
        if now > validity.not_after:
            return _refused("EXPIRED", "the certificate has expired")
        candidates = await self._store.cas_with_subject(pki.issuer_der(certificate))
        if template is not None:
            candidates = [ca for ca in candidates if ca.project_id == template.project_id]
        ca = next((c for c in candidates if pki.issued_by(certificate, pki.stored_certificate(c.pem))), None)
        if ca is None:
            if candidates:
                return _refused("UNKNOWN_CA", "the issuer's name matches a registered CA but its key does not")
            return _refused("UNKNOWN_CA", "no registered CA certificate issued this certificate")
        if not ca.verified:
            return _refused("CA_UNVERIFIED", f"the CA certificate {ca.id} is not verified", ca)
        if now > ca.not_after or now < ca.not_before:
            return _refused("CA_EXPIRED", f"the CA certificate {ca.id} is outside its validity period", ca)
        if pki.revoked(ca.crl_pem, certificate):
            return _refused("REVOKED", f"the CA {ca.id}'s CRL revokes serial {certificate.serial_number:x}", ca)
        if ca.product_id is not None:
            return await self._chain_strategy(certificate, ca)
        if not ca.template_id:
            return _refused("TEMPLATE_UNBOUND", f"no provisioning template is bound to the CA certificate {ca.id}", ca)
        if not ca.provision_enable:
            return _refused("PROVISIONING_DISABLED", f"provisioning is disabled on the CA certificate {ca.id}", ca)
        if template is not None and template.id != ca.template_id:
            return _refused("TEMPLATE_UNBOUND", f"the CA certificate {ca.id} is bound to the template "
                                                f"{ca.template_id}, not to {template.id}", ca)
        template = template or await self._store.template_by_id(ca.template_id)
        if template is None:
            return _refused("TEMPLATE_UNBOUND", f"the template {ca.template_id} does not exist", ca)
        try:
            rendered = templates.render(templates.compile_body(template.body), pki.subject_parameters(certificate))
        except templates.RenderError as exc:
            return _refused(exc.reason, exc.detail, ca)
        except InvalidInput as exc:
            return _refused("INVALID_TEMPLATE", exc.message, ca)
        if not await self._store.product_exists(ca.project_id, rendered.product_id):
            return _refused("PRODUCT_NOT_FOUND", f"the product {rendered.product_id} does not exist", ca)
        existing = await self._store.existing_device(
            ca.project_id, rendered.device_id, rendered.product_id, rendered.node_id, rendered.device_name)
        rotate = False
        device_id = rendered.device_id
        if existing is not None:
            if not (template.allow_rotation and existing[1] == template.id):
                return _refused("DEVICE_EXISTS", f"the device {existing[0]} exists already", ca)
            rotate, device_id = True, existing[0]
        device = Device(device_id, ca.project_id, rendered.product_id, rendered.device_name, created_at=now)
        registration = Registration(
            device, rendered.node_id, template.id, ca.id, rendered.tags, rendered.policy_ids,
            pki.fingerprint(certificate), pki.common_name(certificate), validity.not_after, rotate)
        return Decision("ROTATED" if rotate else "CREATED", "", registration, ca, rendered)

    async def _chain_strategy(self, certificate: x509.Certificate, ca: DeviceCa) -> Decision:
        """ThingsBoard's X509_CERTIFICATE_CHAIN (spec 2.3): the device name is group 1 of the
        product's regular expression on the CN; a device of that name in the product gets the
        new certificate (rotation), otherwise one is created if the product allows it."""
        assert ca.product_id is not None
        cn = pki.common_name(certificate)
        match = re.search(ca.cn_pattern or "(.*)", cn)
        if match is None or match.lastindex is None or not match.group(1):
            return _refused("CN_MISMATCH", f"the CN {cn!r} does not match {ca.cn_pattern!r}", ca)
        name = match.group(1)
        existing = await self._store.existing_device(ca.project_id, "", ca.product_id, name, name)
        now = self._clock.now_ms()
        if existing is not None:
            if existing[2] != ca.product_id:
                return _refused("DEVICE_EXISTS", f"the device {existing[0]} belongs to another product", ca)
            device = Device(existing[0], ca.project_id, ca.product_id, name, created_at=now)
            rotate = True
        elif ca.allow_create:
            device, rotate = Device(new_id(), ca.project_id, ca.product_id, name, created_at=now), False
        else:
            return _refused("DEVICE_NOT_FOUND", f"no device {name} and the product may not create devices", ca)
        registration = Registration(device, name, None, ca.id, (), (), pki.fingerprint(certificate), cn,
                                    pki.validity(certificate).not_after, rotate)
        return Decision("ROTATED" if rotate else "CREATED", "", registration, ca)

    async def _bound(self, bound: BoundCertificate, der: bytes, source: str) -> DeviceIdentity:
        if not bound.enabled:
            await self._refuse(bound.device.project_id, "CERTIFICATE_DISABLED", "the device certificate is disabled",
                               source, der, device_id=bound.device.device_id)
        if bound.crl_pem and pki.revoked(bound.crl_pem, pki.load_der(der)):
            await self._refuse(bound.device.project_id, "REVOKED", "the CA's CRL revokes the certificate", source, der,
                               device_id=bound.device.device_id)
        return bound.device

    async def _register(self, der: bytes, fingerprint: str, source: str) -> DeviceIdentity:
        certificate = pki.load_der(der)
        decision = await self.decide(certificate)
        if decision.registration is None:
            await self._refuse(decision.ca.project_id if decision.ca else None, decision.reason, decision.detail,
                               source, der, ca=decision.ca)
        registration = decision.registration
        assert registration is not None
        record = _record(registration.device.project_id, "SUCCESS", decision.reason, "", source, certificate,
                         decision.ca, registration.device.id)
        try:
            await self._store.register(registration, record)
        except Conflict:
            # Another process registered the certificate (or the device) meanwhile.
            bound = await self._store.certificate(fingerprint)
            if bound is not None:
                return await self._bound(bound, der, source)
            await self._refuse(registration.device.project_id, "DEVICE_EXISTS",
                               f"the device {registration.device.id} was created meanwhile", source, der,
                               ca=decision.ca)
        metrics.AUTO_REGISTRATION.labels("SUCCESS", decision.reason).inc()
        d = registration.device
        return DeviceIdentity(d.id, d.project_id, d.product_id, d.name)

    async def _refuse(self, project_id: str | None, reason: str, detail: str, source: str, der: bytes, *,
                      ca: DeviceCa | None = None, device_id: str | None = None) -> None:
        metrics.AUTO_REGISTRATION.labels("FAILURE", reason).inc()
        await self._store.audit(
            _record(project_id, "FAILURE", reason, detail, source, pki.load_der(der), ca, device_id))
        raise Refused(reason, detail)


def _record(project_id: str | None, outcome: str, reason: str, detail: str, source: str,
            certificate: x509.Certificate, ca: DeviceCa | None, device_id: str | None) -> AuditRecord:
    return AuditRecord(
        project_id=project_id, action=ACTION, outcome=outcome, reason=reason, device_id=device_id, source=source,
        details={
            "detail": detail,
            "fingerprint": pki.fingerprint(certificate),
            "subject": certificate.subject.rfc4514_string().replace("\x00", "\ufffd"),
            "ca_id": ca.id if ca else None,
            "template_id": ca.template_id if ca else None,
        },
    )
