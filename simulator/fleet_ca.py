"""A local test CA for simulated devices: device certificates minted on the fly, and the CA
made known to a gateway through its management API (upload, proof of possession, template,
binding), as an operator would do it.

Device certificates are ECDSA P-256, subject ``CN={name}`` plus any fixed fields
(``O=Acme,OU=Meters``), valid from five minutes ago for 30 days, client-auth
only; each is written with its key in one PEM file, which is what a TLS
context loads. All are minted before any device connects.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fleetgate.simulator.errors import SimulatorError


_SUBJECT_FIELDS = {
    "C": NameOID.COUNTRY_NAME, "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "dnQualifier": NameOID.DN_QUALIFIER, "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "serialNumber": NameOID.SERIAL_NUMBER,
}


class CaError(SimulatorError):
    """The test CA could not be loaded or registered."""


@dataclass(frozen=True, slots=True)
class TestCa:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def load(cls, cert_file: str, key_file: str) -> TestCa:
        try:
            certificate = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
            key = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise CaError(f"cannot load the CA ({cert_file}, {key_file}): {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CaError("the CA key must be an EC key (ECDSA)")
        return cls(certificate, key)

    @classmethod
    def create(cls, common_name: str) -> TestCa:
        """A new self-signed CA (P-256), valid from a day ago for a year."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(certificate, key)

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    def issue(self, common_name: str, subject: Sequence[tuple[str, str]] = ()) -> tuple[bytes, bytes]:
        """A device certificate and its key, as PEM."""
        key = ec.generate_private_key(ec.SECP256R1())
        attributes = [x509.NameAttribute(_SUBJECT_FIELDS[k], v) for k, v in subject]
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder().subject_name(x509.Name(attributes)).issuer_name(self.certificate.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return certificate.public_bytes(serialization.Encoding.PEM), key_pem

    def write_server(self, directory: Path, host: str = "127.0.0.1") -> tuple[str, str]:
        """A server certificate for ``host`` (an IP address), signed by this CA: (cert file, key file)."""
        import ipaddress

        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(self.certificate.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        directory.mkdir(parents=True, exist_ok=True)
        cert_file, key_file = directory / "server.pem", directory / "server.key"
        cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        return str(cert_file), str(key_file)

    def write_devices(self, directory: Path, names: Sequence[str], subject: Sequence[tuple[str, str]] = ()) -> tuple[str, ...]:
        """One PEM file (certificate, then key) a device; their paths, in order."""
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, name in enumerate(names):
            cert, key = self.issue(name, subject)
            path = directory / f"device-{i}.pem"
            path.write_bytes(cert + key)
            path.chmod(0o600)
            paths.append(str(path))
        return tuple(paths)


def parse_subject(text: str) -> tuple[tuple[str, str], ...]:
    """``O=Acme,OU=Meters`` -> pairs; the CN is each device's name and is not given here."""
    pairs = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key not in _SUBJECT_FIELDS or not value:
            raise CaError(f"subject field {part!r}: expected one of {', '.join(_SUBJECT_FIELDS)} as KEY=VALUE")
        pairs.append((key, value))
    return tuple(pairs)


@dataclass(frozen=True, slots=True)
class Registration:
    certificate_id: str
    template_id: str


async def register_ca(ca: TestCa, management_url: str, project_id: str, token: str, product_id: str) -> Registration:
    """Upload the CA, prove its key (a certificate for the verify code), create a template
    (node id and device name from the certificate's CN, the given product), bind it."""
    prefix = f"/v5/iot/{project_id}"
    async with aiohttp.ClientSession(management_url, headers={"X-Auth-Token": token}) as http:
        record = await _call(http, "POST", f"{prefix}/certificates", {"content": ca.pem}, 201)
        proof, _ = ca.issue(str(record["verify_code"]))
        await _call(http, "POST", f"{prefix}/certificates/{record['certificate_id']}/action?action_id=verify",
                    {"verify_content": proof.decode()}, 200)
        cn = {"ref": "iotda::certificate::common_name"}
        template = await _call(http, "POST", f"{prefix}/provisioning-templates", {
            "template_name": f"simulate-{record['certificate_id'][:12]}",
            "description": "iot-gateway-simulate",
            "template_body": {
                "parameters": {"iotda::certificate::common_name": {"type": "String"}},
                "resources": {"device": {"device_name": cn, "node_id": cn, "product_id": product_id}},
            },
        }, 201)
        await _call(http, "PUT", f"{prefix}/certificates/{record['certificate_id']}",
                    {"provision_enable": True, "template_id": template["template_id"]}, 200)
    return Registration(str(record["certificate_id"]), str(template["template_id"]))


async def _call(http: aiohttp.ClientSession, method: str, path: str, body: dict[str, Any], expected: int) -> Any:
    async with http.request(method, path, json=body) as response:
        text = await response.text()
        if response.status != expected:
            raise CaError(f"{method} {path}: HTTP {response.status}: {text[:300]}")
        return await response.json() if text else None
