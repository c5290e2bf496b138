"""Unit tests of gateway/autoregistration.py: the decision on a device certificate's first
connection (registered, or refused for each reason with its audit record and metric), later
connections, certificate rotation, ThingsBoard's chain strategy and the dry run, over an
in-memory RegistrationStore (spec 1.5, 4.1, 6.3)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import re
import time
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from prometheus_client import REGISTRY

from fleetgate.core import pki
from fleetgate.core.autoregistration import AutoRegistration, Decision, Refused
from fleetgate.core.certificate_model import DeviceCa, Registration, Template
from fleetgate.core.errors import InvalidInput, Unauthorized
from fleetgate.core.model import AuditRecord, Device, DeviceIdentity
from fleetgate.core.templates import RenderedDevice
from tests import pki as test_pki
from tests.fakes import FakeRegistrationStore, SetClock
from tests.template_bodies import body as template_body

PROJECT, PRODUCT = "p1", "prod1"
POLICY = "5c90fa7d3c4e4405e8525079"
SUBJECT = dict(C="CN", O="Acme", OU="Meters", dnQualifier="q1", ST="ZJ", serialNumber="s1")
DAY = datetime.timedelta(days=1)
CHAIN_REGEX = r"^([^.]+)\.group\.example\.com$"
SOURCE = "mqtts:192.0.2.7:50000"


def template(template_id: str = "t1", project_id: str = PROJECT, allow_rotation: bool = False,
             body: dict[str, Any] | None = None) -> Template:
    """IoTDA's first example with the product id static and the device named by its node id (CN)."""
    if body is None:
        named_by_cn = {"ref": "iotda::certificate::common_name"}
        body = template_body(product_id=PRODUCT, device_name=named_by_cn)["template_body"]
    return Template(template_id, project_id, "tpl-" + template_id, "", body, 0, 0, allow_rotation)


def ca_record(issued: test_pki.Issued, ca_id: str = "ca1", **fields: Any) -> DeviceCa:
    """The CA as the management API stores it: verified, provisioning enabled, bound to t1."""
    cert = issued.certificate
    dates = pki.validity(cert)
    values: dict[str, Any] = dict(
        id=ca_id, project_id=PROJECT, pem=issued.pem, fingerprint=pki.fingerprint(cert), subject=pki.subject_der(cert),
        cn_name=pki.common_name(cert), owner="owner", verified=True, verify_code="code", provision_enable=True,
        template_id="t1", not_before=dates.not_before, not_after=dates.not_after, created_at=0)
    return DeviceCa(**(values | fields))


def der(issued: test_pki.Issued | x509.Certificate) -> bytes:
    cert = issued.certificate if isinstance(issued, test_pki.Issued) else issued
    return cert.public_bytes(Encoding.DER)


def failures(reason: str) -> float:
    return REGISTRY.get_sample_value("gateway_auto_registration_total", {"outcome": "FAILURE", "reason": reason}) or 0.0


def successes(reason: str) -> float:
    return REGISTRY.get_sample_value("gateway_auto_registration_total", {"outcome": "SUCCESS", "reason": reason}) or 0.0


def audit(outcome: str, reason: str, certificate: x509.Certificate, *, project_id: str | None = PROJECT,
          detail: str = "", device_id: str | None = None, ca_id: str | None = "ca1",
          template_id: str | None = "t1") -> AuditRecord:
    return AuditRecord(project_id, "AUTO_REGISTER", outcome, reason, device_id, SOURCE, {
        "detail": detail, "fingerprint": pki.fingerprint(certificate),
        "subject": certificate.subject.rfc4514_string(), "ca_id": ca_id, "template_id": template_id})


@pytest.fixture
def ca() -> test_pki.Issued:
    return test_pki.ca("Unit CA")


@pytest.fixture
def store(ca: test_pki.Issued) -> FakeRegistrationStore:
    s = FakeRegistrationStore()
    s.add_ca(ca_record(ca))
    s.add_template(template())
    s.add_product(PROJECT, PRODUCT)
    return s


@pytest.fixture
def clock() -> SetClock:
    """The wall clock's time when the test starts, the certificates being made with real dates."""
    return SetClock(time.time_ns() // 1_000_000)


@pytest.fixture
def registry(store: FakeRegistrationStore, clock: SetClock) -> AutoRegistration:
    return AutoRegistration(store, clock=clock)


async def refused(registry: AutoRegistration, certificate: bytes) -> Refused:
    with pytest.raises(Refused) as caught:
        await registry.authenticate(certificate, SOURCE)
    return caught.value


# --- registered on the first connection -----------------------------------------------------------------


async def test_a_first_connection_registers_the_device_the_template_renders(registry, store, ca, clock):
    device = test_pki.leaf(ca, CN="meter-1", **SUBJECT)
    before = successes("CREATED")
    identity = await registry.authenticate(der(device), SOURCE)
    assert identity == DeviceIdentity(f"{PRODUCT}_meter-1", PROJECT, PRODUCT, "meter-1")
    assert store.registered == [Registration(
        Device(f"{PRODUCT}_meter-1", PROJECT, PRODUCT, "meter-1", created_at=clock.now), "meter-1", "t1", "ca1",
        (("Acme", "Meters"),), (POLICY,), pki.fingerprint(device.certificate), "meter-1",
        pki.validity(device.certificate).not_after)]
    assert store.audit_records == [audit("SUCCESS", "CREATED", device.certificate, device_id=f"{PRODUCT}_meter-1")]
    assert successes("CREATED") == before + 1


async def test_later_connections_are_the_bound_device_with_nothing_written(registry, store, ca):
    device = der(test_pki.leaf(ca, CN="meter-1", **SUBJECT))
    first = await registry.authenticate(device, SOURCE)
    assert await registry.authenticate(device, SOURCE) == first
    assert len(store.registered) == 1 and len(store.audit_records) == 1


async def test_simultaneous_first_connections_register_one_device(registry, store, ca):
    device = der(test_pki.leaf(ca, CN="burst", **SUBJECT))
    identities = await asyncio.gather(*(registry.authenticate(device, SOURCE) for _ in range(20)))
    assert set(identities) == {DeviceIdentity(f"{PRODUCT}_burst", PROJECT, PRODUCT, "burst")}
    assert len(store.registered) == 1
    assert store.register_calls == 1  # the others waited and found it bound, not one transaction each
    assert [r.reason for r in store.audit_records] == ["CREATED"]


async def test_a_registration_another_process_made_meanwhile_is_taken(registry, store, ca, monkeypatch):
    device = test_pki.leaf(ca, CN="raced", **SUBJECT)
    register = store.register

    async def raced(registration: Registration, record: AuditRecord) -> None:
        await register(registration, dataclasses.replace(record, source="the other process"))
        await register(registration, record)  # the clash the database would report

    monkeypatch.setattr(store, "register", raced)
    assert (await registry.authenticate(der(device), SOURCE)).device_id == f"{PRODUCT}_raced"
    assert [(r.outcome, r.source) for r in store.audit_records] == [("SUCCESS", "the other process")]


async def test_a_device_created_meanwhile_by_another_certificate_refuses_this_one(registry, store, ca, monkeypatch):
    device = test_pki.leaf(ca, CN="raced", **SUBJECT)
    register = store.register

    async def raced(registration: Registration, record: AuditRecord) -> None:
        store.add_device(registration.device)
        await register(registration, record)

    monkeypatch.setattr(store, "register", raced)
    refusal = await refused(registry, der(device))
    assert (refusal.reason, refusal.detail) == ("DEVICE_EXISTS", f"the device {PRODUCT}_raced was created meanwhile")
    assert store.audit_records == [audit("FAILURE", "DEVICE_EXISTS", device.certificate,
                                         detail=f"the device {PRODUCT}_raced was created meanwhile")]


# --- refused: each reason, an audit record, a metric, "not authorized" to the device ----------------------


def _client_certificate(ca: test_pki.Issued, *extensions: x509.ExtensionType) -> x509.Certificate:
    key = test_pki.leaf(ca, CN="x").key
    builder = (x509.CertificateBuilder().subject_name(test_pki.name(CN="usage", **SUBJECT))
               .issuer_name(ca.certificate.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(datetime.datetime.now(datetime.UTC) - DAY)
               .not_valid_after(datetime.datetime.now(datetime.UTC) + DAY))
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(ca.key, hashes.SHA256())


def _case(case: str, store: FakeRegistrationStore, ca: test_pki.Issued, now: int
          ) -> tuple[x509.Certificate, str, dict[str, Any]]:
    """Set the case up: the certificate presented, the refusal's detail and the audit's other fields."""
    subject = dict(SUBJECT, CN="bad-" + case.lower().replace("_", "-"))
    leaf = test_pki.leaf(ca, **subject).certificate
    record = store.cas["ca1"]
    unbound = {"project_id": None, "ca_id": None, "template_id": None}
    if case == "KEY_USAGE":
        leaf = _client_certificate(ca, x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]))
        return leaf, "the extended key usage does not allow clientAuth", unbound
    if case == "CA_AS_CLIENT":
        return test_pki.ca("A CA", parent=ca).certificate, "the certificate is a CA certificate", unbound
    if case == "NOT_YET_VALID":
        return test_pki.leaf(ca, not_before=DAY, not_after=2 * DAY, **subject).certificate, \
            "the certificate is not valid yet", unbound
    if case == "EXPIRED":
        return test_pki.leaf(ca, not_before=-2 * DAY, not_after=-DAY, **subject).certificate, \
            "the certificate has expired", unbound
    if case == "UNKNOWN_CA":
        return test_pki.leaf(test_pki.ca("Stranger"), **subject).certificate, \
            "no registered CA certificate issued this certificate", unbound
    if case == "FAKE_ROOT":
        return test_pki.leaf(test_pki.ca("Unit CA"), **subject).certificate, \
            "the issuer's name matches a registered CA but its key does not", unbound
    if case == "CA_UNVERIFIED":
        store.add_ca(dataclasses.replace(record, verified=False))
        return leaf, "the CA certificate ca1 is not verified", {}
    if case == "CA_EXPIRED":
        store.add_ca(dataclasses.replace(record, not_after=now - 1))
        return leaf, "the CA certificate ca1 is outside its validity period", {}
    if case == "CA_NOT_YET_VALID":
        store.add_ca(dataclasses.replace(record, not_before=now + 1))
        return leaf, "the CA certificate ca1 is outside its validity period", {}
    if case == "REVOKED":
        revoked = test_pki.leaf(ca, **subject)
        store.add_ca(dataclasses.replace(record, crl_pem=test_pki.crl(ca, revoked)))
        return revoked.certificate, f"the CA ca1's CRL revokes serial {revoked.certificate.serial_number:x}", {}
    if case == "TEMPLATE_UNBOUND":
        store.add_ca(dataclasses.replace(record, template_id=None))
        return leaf, "no provisioning template is bound to the CA certificate ca1", {"template_id": None}
    if case == "TEMPLATE_GONE":
        del store.templates["t1"]
        return leaf, "the template t1 does not exist", {}
    if case == "PROVISIONING_DISABLED":
        store.add_ca(dataclasses.replace(record, provision_enable=False))
        return leaf, "provisioning is disabled on the CA certificate ca1", {}
    if case == "MISSING_PARAMETER":
        without_st = {k: v for k, v in subject.items() if k != "ST"}
        return test_pki.leaf(ca, **without_st).certificate, \
            "the certificate has no iotda::certificate::state_name (subject ST)", {}
    if case == "INVALID_VALUE":
        return test_pki.leaf(ca, **dict(subject, CN="bad value")).certificate, \
            "the rendered node_id 'bad value' is not at most 64 letters, digits, _ and -", {}
    if case == "INVALID_TEMPLATE":
        store.add_template(template(body={"resources": {}}))
        return leaf, "template_body.resources.device must be a JSON object", {}
    if case == "PRODUCT_NOT_FOUND":
        store.products.clear()
        return leaf, f"the product {PRODUCT} does not exist", {}
    if case == "DEVICE_EXISTS":
        store.add_device(Device("made-by-hand", PROJECT, PRODUCT, subject["CN"]))  # the same name
        return leaf, "the device made-by-hand exists already", {}
    raise AssertionError(case)


REASONS = {"CA_AS_CLIENT": "KEY_USAGE", "FAKE_ROOT": "UNKNOWN_CA", "CA_NOT_YET_VALID": "CA_EXPIRED",
           "TEMPLATE_GONE": "TEMPLATE_UNBOUND"}


@pytest.mark.parametrize("case", [
    "KEY_USAGE", "CA_AS_CLIENT", "NOT_YET_VALID", "EXPIRED", "UNKNOWN_CA", "FAKE_ROOT", "CA_UNVERIFIED",
    "CA_EXPIRED", "CA_NOT_YET_VALID", "REVOKED", "TEMPLATE_UNBOUND", "TEMPLATE_GONE", "PROVISIONING_DISABLED",
    "MISSING_PARAMETER", "INVALID_VALUE", "INVALID_TEMPLATE", "PRODUCT_NOT_FOUND", "DEVICE_EXISTS",
])
async def test_each_refusal_is_audited_with_its_reason_and_the_device_learns_nothing(registry, store, ca, clock,
                                                                                     case):
    certificate, detail, audited = _case(case, store, ca, clock.now)
    reason = REASONS.get(case, case)
    devices_before, before = dict(store.devices), failures(reason)
    refusal = await refused(registry, der(certificate))
    assert isinstance(refusal, Unauthorized) and refusal.message == "not authorized"
    assert (refusal.reason, refusal.detail) == (reason, detail)
    assert store.audit_records == [audit("FAILURE", reason, certificate, detail=detail, **audited)]
    assert failures(reason) == before + 1
    assert store.registered == [] and store.bindings == {} and store.devices == devices_before


@pytest.mark.parametrize(("changes", "reason"), [
    ({"verified": False, "provision_enable": False, "template_id": None}, "CA_UNVERIFIED"),
    ({"template_id": None, "provision_enable": False}, "TEMPLATE_UNBOUND"),
    ({"crl_pem": "revoking", "provision_enable": False}, "REVOKED"),
])
async def test_the_first_failed_check_is_the_reason(registry, store, ca, changes, reason):
    device = test_pki.leaf(ca, CN="n1", **SUBJECT)
    if "crl_pem" in changes:
        changes = dict(changes, crl_pem=test_pki.crl(ca, device))
    store.add_ca(dataclasses.replace(store.cas["ca1"], **changes))
    assert (await registry.decide(device.certificate)).reason == reason


async def test_an_expired_certificate_is_refused_before_its_issuer_is_looked_for(registry, store):
    stranger = test_pki.ca("Stranger")
    expired = test_pki.leaf(stranger, not_before=-2 * DAY, not_after=-DAY, CN="n1")
    assert (await registry.decide(expired.certificate)).reason == "EXPIRED"


async def test_the_certificates_validity_is_inclusive_of_its_bounds(registry, clock, ca):
    device = test_pki.leaf(ca, CN="edge", **SUBJECT).certificate
    dates = pki.validity(device)
    for now, reason in [(dates.not_before - 1, "NOT_YET_VALID"), (dates.not_before, "CREATED"),
                        (dates.not_after, "CREATED"), (dates.not_after + 1, "EXPIRED")]:
        clock.now = now
        assert (await registry.decide(device)).reason == reason, now


async def test_a_device_is_created_at_the_clocks_time(registry, clock, store, ca):
    clock.now += 12_345
    await registry.authenticate(der(test_pki.leaf(ca, CN="timed", **SUBJECT)), SOURCE)
    assert store.devices[f"{PRODUCT}_timed"].created_at == clock.now


async def test_of_two_cas_with_the_issuers_name_the_one_whose_key_signed_it_decides(registry, store, ca):
    impostor = test_pki.ca("Unit CA")  # the same name, another key, registered elsewhere
    store.add_ca(ca_record(impostor, "ca0", project_id="p0", verified=False))
    decision = await registry.decide(test_pki.leaf(ca, CN="n1", **SUBJECT).certificate)
    assert decision.allowed and decision.ca is not None and decision.ca.id == "ca1"


# --- a device that exists, and certificate rotation ----------------------------------------------------------


async def test_an_existing_device_is_refused_unless_its_template_allows_rotation(registry, store, ca):
    first = test_pki.leaf(ca, CN="rot-1", **SUBJECT)
    await registry.authenticate(der(first), SOURCE)
    second = test_pki.leaf(ca, CN="rot-1", **SUBJECT)  # a new key and certificate, the same node id
    refusal = await refused(registry, der(second))
    assert (refusal.reason, refusal.detail) == ("DEVICE_EXISTS", f"the device {PRODUCT}_rot-1 exists already")

    store.add_template(template(allow_rotation=True))
    before = successes("ROTATED")
    identity = await registry.authenticate(der(second), SOURCE)
    assert identity.device_id == f"{PRODUCT}_rot-1"
    assert store.registered[-1].rotate and store.registered[-1].device.id == f"{PRODUCT}_rot-1"
    assert store.audit_records[-1] == audit("SUCCESS", "ROTATED", second.certificate, device_id=f"{PRODUCT}_rot-1")
    assert successes("ROTATED") == before + 1
    assert len(store.devices) == 1

    # The replaced certificate no longer authenticates the device.
    refusal = await refused(registry, der(first))
    assert (refusal.reason, refusal.detail) == ("CERTIFICATE_DISABLED", "the device certificate is disabled")
    assert store.audit_records[-1] == audit("FAILURE", "CERTIFICATE_DISABLED", first.certificate,
                                            detail="the device certificate is disabled",
                                            device_id=f"{PRODUCT}_rot-1", ca_id=None, template_id=None)


async def test_rotation_binds_only_devices_the_same_template_registered(registry, store, ca):
    store.add_template(template(allow_rotation=True))
    store.add_device(Device(f"{PRODUCT}_by-hand", PROJECT, PRODUCT, "by-hand"))  # the management API's
    store.add_template(template("t2", allow_rotation=True))
    other_ca = test_pki.ca("Other CA")
    store.add_ca(ca_record(other_ca, "ca2", template_id="t2"))
    await registry.authenticate(der(test_pki.leaf(other_ca, CN="by-t2", **SUBJECT)), SOURCE)
    for name in ("by-hand", "by-t2"):
        decision = await registry.decide(test_pki.leaf(ca, CN=name, **SUBJECT).certificate)
        assert (decision.reason, decision.detail) == ("DEVICE_EXISTS", f"the device {PRODUCT}_{name} exists already")


async def test_a_bound_certificate_the_cas_crl_now_revokes_is_refused(registry, store, ca):
    device = test_pki.leaf(ca, CN="later-revoked", **SUBJECT)
    await registry.authenticate(der(device), SOURCE)
    store.add_ca(dataclasses.replace(store.cas["ca1"], crl_pem=test_pki.crl(ca, device)))
    refusal = await refused(registry, der(device))
    assert (refusal.reason, refusal.detail) == ("REVOKED", "the CA's CRL revokes the certificate")
    assert store.audit_records[-1].device_id == f"{PRODUCT}_later-revoked"


# --- ThingsBoard's X.509 chain strategy: a product's CA, the name carved from the CN -------------------------


@pytest.fixture
def chain_ca(store: FakeRegistrationStore) -> test_pki.Issued:
    root = test_pki.ca("Chain root")
    # No template and provisioning not enabled: the product's strategy decides, not a template.
    store.add_ca(ca_record(root, "chain", product_id=PRODUCT, cn_pattern=CHAIN_REGEX, template_id=None,
                           provision_enable=False))
    return root


async def test_the_chain_strategy_creates_a_device_named_by_group_1_of_the_cn(registry, store, chain_ca, clock):
    device = test_pki.leaf(chain_ca, CN="dev-7.group.example.com")
    identity = await registry.authenticate(der(device), SOURCE)
    assert (identity.project_id, identity.product_id, identity.name) == (PROJECT, PRODUCT, "dev-7")
    assert re.fullmatch(r"[0-9a-f]{24}", identity.device_id)
    (registration,) = store.registered
    assert registration == Registration(
        Device(identity.device_id, PROJECT, PRODUCT, "dev-7", created_at=clock.now), "dev-7", None, "chain", (), (),
        pki.fingerprint(device.certificate), "dev-7.group.example.com", pki.validity(device.certificate).not_after)
    assert store.audit_records == [audit("SUCCESS", "CREATED", device.certificate, device_id=identity.device_id,
                                         ca_id="chain", template_id=None)]


async def test_the_chain_strategy_rotates_a_device_of_that_name_in_the_product(registry, store, chain_ca):
    first = await registry.authenticate(der(test_pki.leaf(chain_ca, CN="dev-7.group.example.com")), SOURCE)
    second = await registry.authenticate(der(test_pki.leaf(chain_ca, CN="dev-7.group.example.com")), SOURCE)
    assert second == first
    assert [r.rotate for r in store.registered] == [False, True]
    assert [r.reason for r in store.audit_records] == ["CREATED", "ROTATED"]


@pytest.mark.parametrize(("pattern", "cn"), [
    (CHAIN_REGEX, "elsewhere.example.org"),
    ("dev-[0-9]+", "dev-7"),  # no group
    ("^dev-()", "dev-7"),  # an empty group 1
])
async def test_a_cn_the_expression_does_not_carve_a_name_from_is_refused(registry, store, chain_ca, pattern, cn):
    store.add_ca(dataclasses.replace(store.cas["chain"], cn_pattern=pattern))
    refusal = await refused(registry, der(test_pki.leaf(chain_ca, CN=cn)))
    assert (refusal.reason, refusal.detail) == ("CN_MISMATCH", f"the CN {cn!r} does not match {pattern!r}")


async def test_without_an_expression_the_whole_cn_is_the_name(registry, store, chain_ca):
    store.add_ca(dataclasses.replace(store.cas["chain"], cn_pattern=None))
    assert (await registry.authenticate(der(test_pki.leaf(chain_ca, CN="whole.cn")), SOURCE)).name == "whole.cn"


async def test_a_product_that_may_not_create_devices_only_rotates(registry, store, chain_ca):
    await registry.authenticate(der(test_pki.leaf(chain_ca, CN="known.group.example.com")), SOURCE)
    store.add_ca(dataclasses.replace(store.cas["chain"], allow_create=False))
    refusal = await refused(registry, der(test_pki.leaf(chain_ca, CN="dev-8.group.example.com")))
    assert (refusal.reason, refusal.detail) == (
        "DEVICE_NOT_FOUND", "no device dev-8 and the product may not create devices")
    rotated = await registry.authenticate(der(test_pki.leaf(chain_ca, CN="known.group.example.com")), SOURCE)
    assert rotated.name == "known" and store.registered[-1].rotate


async def test_a_device_of_that_name_in_another_product_is_not_taken_over(registry, store, chain_ca):
    store.add_device(Device("theirs", PROJECT, "prod2", "dev-7"))
    refusal = await refused(registry, der(test_pki.leaf(chain_ca, CN="dev-7.group.example.com")))
    assert (refusal.reason, refusal.detail) == ("DEVICE_EXISTS", "the device theirs belongs to another product")


async def test_the_chain_strategy_still_needs_a_verified_ca(registry, store, chain_ca):
    store.add_ca(dataclasses.replace(store.cas["chain"], verified=False))
    assert (await registry.decide(test_pki.leaf(chain_ca, CN="dev-7.group.example.com").certificate)).reason == (
        "CA_UNVERIFIED")


# --- the dry run -----------------------------------------------------------------------------------------------


async def test_evaluate_decides_as_a_first_connection_would_and_writes_nothing(registry, store, ca):
    device = test_pki.leaf(ca, CN="dry", **SUBJECT)
    decision = await registry.evaluate(store.templates["t1"], device.pem)
    assert isinstance(decision, Decision) and decision.allowed and decision.reason == "CREATED"
    assert decision.rendered == RenderedDevice(f"{PRODUCT}_dry", "dry", "dry", PRODUCT, (("Acme", "Meters"),),
                                               (POLICY,))
    assert decision.ca == store.cas["ca1"]
    assert store.registered == [] and store.audit_records == [] and store.devices == {}


async def test_evaluate_renders_the_template_given_not_the_stored_one(registry, store, ca):
    edited = template(body=template_body(product_id=PRODUCT)["template_body"])  # the device named by O
    decision = await registry.evaluate(edited, test_pki.leaf(ca, CN="dry", **SUBJECT).pem)
    assert decision.rendered is not None and decision.rendered.device_name == "Acme"


async def test_evaluate_of_a_certificate_already_bound(registry, store, ca):
    device = test_pki.leaf(ca, CN="bound", **SUBJECT)
    await registry.authenticate(der(device), SOURCE)
    decision = await registry.evaluate(store.templates["t1"], device.pem)
    assert not decision.allowed
    assert (decision.reason, decision.detail) == (
        "ALREADY_REGISTERED", f"the certificate is already bound to device {PRODUCT}_bound")


async def test_evaluate_with_a_template_the_ca_is_not_bound_to(registry, store, ca):
    decision = await registry.evaluate(template("t2"), test_pki.leaf(ca, CN="dry", **SUBJECT).pem)
    assert (decision.reason, decision.detail) == (
        "TEMPLATE_UNBOUND", "the CA certificate ca1 is bound to the template t1, not to t2")


async def test_evaluate_with_another_projects_template_sees_none_of_this_projects_cas(registry, store, ca):
    decision = await registry.evaluate(template(project_id="p2"), test_pki.leaf(ca, CN="dry", **SUBJECT).pem)
    assert (decision.reason, decision.detail) == ("UNKNOWN_CA", "no registered CA certificate issued this certificate")


async def test_evaluate_refuses_what_is_not_a_certificate(registry, store):
    with pytest.raises(InvalidInput):
        await registry.evaluate(store.templates["t1"], "not a certificate")
