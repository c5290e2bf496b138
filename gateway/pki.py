"""X.509 facts the core decides on: fingerprints, subjects, issuers, validity, CRLs.

Python's ``ssl`` hands the server only the leaf; everything about which CA issued
it, whether the CA's CRL revokes it and what its subject says is read here with
``cryptography``.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fleetgate.core.errors import InvalidInput

# Huawei's certificate parameters, by the subject attribute each one reads.
SUBJECT_PARAMETERS: dict[str, x509.ObjectIdentifier] = {
    "iotda::certificate::country": NameOID.COUNTRY_NAME,
    "iotda::certificate::organization": NameOID.ORGANIZATION_NAME,
    "iotda::certificate::organizational_unit": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "iotda::certificate::distinguished_name_qualifier": NameOID.DN_QUALIFIER,
    "iotda::certificate::state_name": NameOID.STATE_OR_PROVINCE_NAME,
    "iotda::certificate::common_name": NameOID.COMMON_NAME,
    "iotda::certificate::serial_number": NameOID.SERIAL_NUMBER,
}
SUBJECT_ABBREVIATIONS = dict(zip(SUBJECT_PARAMETERS, ("C", "O", "OU", "dnQualifier", "ST", "CN", "serialNumber")))


def load_pem(pem: str, what: str = "certificate") -> x509.Certificate:
    """The first certificate of a PEM text; InvalidInput when there is none."""
    if not isinstance(pem, str) or not 1 <= len(pem) <= 65_535:
        raise InvalidInput(f"{what} must be a PEM text of 1 to 65535 characters")
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        raise InvalidInput(f"{what} is not a PEM X.509 certificate") from None
    return certificates[0]


@functools.lru_cache(maxsize=256)
def stored_certificate(pem: str) -> x509.Certificate:
    """A CA certificate the database holds, parsed once: every first connection checks its
    certificate against the CAs with its issuer's name."""
    return load_pem(pem)


def load_der(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


def load_crl(pem: str) -> x509.CertificateRevocationList:
    if not isinstance(pem, str) or not pem:
        raise InvalidInput("crl must be a PEM certificate revocation list")
    try:
        return x509.load_pem_x509_crl(pem.encode())
    except ValueError:
        raise InvalidInput("crl is not a PEM certificate revocation list") from None


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(Encoding.DER)


def fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 of the DER, lowercase hex: how IoTDA binds a certificate to a device."""
    return hashlib.sha256(der(certificate)).hexdigest()


def fingerprint_der(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def subject_der(certificate: x509.Certificate) -> bytes:
    return certificate.subject.public_bytes()


def issuer_der(certificate: x509.Certificate) -> bytes:
    return certificate.issuer.public_bytes()


def common_name(certificate: x509.Certificate) -> str:
    values = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


def subject_parameters(certificate: x509.Certificate) -> dict[str, str]:
    """Each Huawei parameter the subject carries, from its first attribute of that kind."""
    found = {}
    for name, oid in SUBJECT_PARAMETERS.items():
        values = certificate.subject.get_attributes_for_oid(oid)
        if values:
            found[name] = str(values[0].value)
    return found


def is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def signed_by(certificate: x509.Certificate | x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    """The signature verifies under the issuer's key (a same-named CA with another key fails)."""
    key = issuer.public_key()
    signature, data = certificate.signature, (
        certificate.tbs_certificate_bytes if isinstance(certificate, x509.Certificate) else certificate.tbs_certlist_bytes
    )
    hash_algorithm = certificate.signature_hash_algorithm
    try:
        if isinstance(key, rsa.RSAPublicKey):
            assert hash_algorithm is not None
            key.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            assert hash_algorithm is not None
            key.verify(signature, data, ec.ECDSA(hash_algorithm))
        elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key.verify(signature, data)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, AssertionError):
        return False
    return True


def issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    return certificate.issuer == issuer.subject and signed_by(certificate, issuer)


@dataclass(frozen=True, slots=True)
class Validity:
    not_before: int
    not_after: int


def validity(certificate: x509.Certificate) -> Validity:
    return Validity(_ms(certificate.not_valid_before_utc), _ms(certificate.not_valid_after_utc))


def valid_at(certificate: x509.Certificate, moment_ms: int) -> bool:
    dates = validity(certificate)
    return dates.not_before <= moment_ms <= dates.not_after


def usage_problem(certificate: x509.Certificate) -> str | None:
    """Why the leaf may not authenticate a TLS client, or None: a CA certificate, a key usage
    without digitalSignature, an extended key usage without clientAuth."""
    if is_ca(certificate):
        return "the certificate is a CA certificate"
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.digital_signature:
            return "the key usage does not allow digitalSignature"
    except x509.ExtensionNotFound:
        pass
    try:
        extended = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CLIENT_AUTH not in extended and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in extended:
            return "the extended key usage does not allow clientAuth"
    except x509.ExtensionNotFound:
        pass
    return None


def revoked(crl_pem: str | None, certificate: x509.Certificate) -> bool:
    if not crl_pem:
        return False
    return _crl(crl_pem).get_revoked_certificate_by_serial_number(certificate.serial_number) is not None


@functools.lru_cache(maxsize=64)
def _crl(pem: str) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl(pem.encode())


def _ms(moment: datetime.datetime) -> int:
    return int(moment.timestamp() * 1000)

