"""An in-process PKI for the tests: CAs, device certificates, CRLs, self-signed certificates
(a server's for 127.0.0.1, a device's), written as PEM."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_NAMES = {"C": NameOID.COUNTRY_NAME, "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
          "dnQualifier": NameOID.DN_QUALIFIER, "ST": NameOID.STATE_OR_PROVINCE_NAME, "CN": NameOID.COMMON_NAME,
          "serialNumber": NameOID.SERIAL_NUMBER}


def name(**parts: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(_NAMES[k], v) for k, v in parts.items()])


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass
class Issued:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def key_pem(self) -> str:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode()

    def files(self, directory: Path, stem: str, *chain: "Issued") -> tuple[str, str]:
        cert, key = directory / f"{stem}.pem", directory / f"{stem}.key"
        cert.write_text(self.pem + "".join(c.pem for c in chain))
        key.write_text(self.key_pem)
        return str(cert), str(key)


def ca(common_name: str = "Device CA", parent: Issued | None = None, **more: str) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = name(CN=common_name, **more)
    issuer = parent.certificate.subject if parent else subject
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(_now() - datetime.timedelta(days=1))
        .not_valid_after(_now() + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(parent.key if parent else key, hashes.SHA256())
    )
    return Issued(cert, key)


def leaf(issuer: Issued, *, not_before: datetime.timedelta = datetime.timedelta(minutes=-5),
         not_after: datetime.timedelta = datetime.timedelta(days=30), **subject: str) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(name(**subject)).issuer_name(issuer.certificate.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(_now() + not_before).not_valid_after(_now() + not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(issuer.key, hashes.SHA256())
    )
    return Issued(cert, key)


def crl(issuer: Issued, *revoked: Issued) -> str:
    builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer.certificate.subject)
               .last_update(_now() - datetime.timedelta(minutes=1)).next_update(_now() + datetime.timedelta(days=1)))
    for r in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(r.certificate.serial_number)
            .revocation_date(_now() - datetime.timedelta(minutes=1)).build())
    return builder.sign(issuer.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def self_signed(directory: Path) -> tuple[str, str]:
    """A server certificate for 127.0.0.1 and its key, as the files server.pem and server.key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = name(CN="127.0.0.1")
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(_now() - datetime.timedelta(minutes=1))
        .not_valid_after(_now() + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    issued = Issued(cert, key)
    cert_file, key_file = directory / "server.pem", directory / "server.key"
    cert_file.write_text(issued.pem)
    key_file.write_text(issued.key_pem)
    return str(cert_file), str(key_file)


def self_signed_pem(common_name: str = "device-1") -> str:
    """A device's self-signed certificate (ThingsBoard's X509_CERTIFICATE credentials), PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = name(CN=common_name)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(_now() - datetime.timedelta(minutes=1))
        .not_valid_after(_now() + datetime.timedelta(days=1)).sign(key, hashes.SHA256())
    )
    return Issued(cert, key).pem


def pem_body(pem: str) -> str:
    """The base64 body of a PEM certificate, as ThingsBoard stores it (no armour, no line breaks)."""
    return "".join(line for line in pem.splitlines() if not line.startswith("-----"))
