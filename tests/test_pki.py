"""Unit tests of gateway/pki.py: the X.509 facts the core decides on (fingerprints, subjects,
issuers, signatures, validity, key usage, CRLs), on certificates made here with ``cryptography``."""

from __future__ import annotations

import datetime
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fleetgate.core import pki
from fleetgate.core.errors import InvalidInput
from tests import pki as test_pki

NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
DAY = datetime.timedelta(days=1)
CA = test_pki.ca("Core PKI CA")


def certificate(subject: x509.Name, *, key: CertificateIssuerPrivateKeyTypes | None = None,
                issuer: x509.Name | None = None, signer: CertificateIssuerPrivateKeyTypes | None = None,
                not_before: datetime.datetime = NOW - DAY, not_after: datetime.datetime = NOW + DAY,
                extensions: tuple[x509.ExtensionType, ...] = (), serial: int | None = None,
                algorithm: hashes.HashAlgorithm | None = hashes.SHA256()) -> x509.Certificate:
    """A certificate of ``key`` (a new EC key by default), self-signed unless ``signer`` is given."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer or subject)
               .public_key(key.public_key()).serial_number(serial or x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after))
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(signer or key, algorithm)


def named(**parts: str) -> x509.Name:
    return test_pki.name(**parts)


def pem_of(cert: x509.Certificate) -> str:
    return cert.public_bytes(Encoding.PEM).decode()


def key_usage(*, digital_signature: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature, True, False, False, False, False, False, False, False)


# --- loading ---------------------------------------------------------------------------------------


def test_load_pem_takes_the_first_certificate_of_a_chain():
    leaf = test_pki.leaf(CA, CN="first")
    assert pki.load_pem(leaf.pem + CA.pem) == leaf.certificate


@pytest.mark.parametrize("text", ["", "x" * 65_536, None, b"bytes"], ids=["empty", "65536", "null", "bytes"])
def test_load_pem_refuses_what_is_not_1_to_65535_characters_of_text(text):
    with pytest.raises(InvalidInput) as caught:
        pki.load_pem(text, "verify_content")
    assert caught.value.message == "verify_content must be a PEM text of 1 to 65535 characters"


@pytest.mark.parametrize("text", ["not a certificate",
                                  "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"])
def test_load_pem_refuses_what_is_not_a_certificate(text):
    with pytest.raises(InvalidInput) as caught:
        pki.load_pem(text)
    assert caught.value.message == "certificate is not a PEM X.509 certificate"


def test_a_stored_ca_certificate_is_parsed_once():
    pem = test_pki.ca("Parsed once").pem
    assert pki.stored_certificate(pem) is pki.stored_certificate(pem)


def test_load_der_reads_what_the_tls_layer_hands_over():
    der = CA.certificate.public_bytes(Encoding.DER)
    assert pki.load_der(der) == CA.certificate


def test_load_crl():
    crl = pki.load_crl(test_pki.crl(CA))
    assert crl.issuer == CA.certificate.subject
    for text, message in [("", "crl must be a PEM certificate revocation list"),
                          (None, "crl must be a PEM certificate revocation list"),
                          (CA.pem, "crl is not a PEM certificate revocation list")]:
        with pytest.raises(InvalidInput) as caught:
            pki.load_crl(text)
        assert caught.value.message == message


# --- fingerprints, names, subject parameters ----------------------------------------------------------


def test_the_fingerprint_is_the_lowercase_sha256_of_the_der():
    der = CA.certificate.public_bytes(Encoding.DER)
    assert pki.fingerprint(CA.certificate) == hashlib.sha256(der).hexdigest()
    assert pki.fingerprint_der(der) == pki.fingerprint(CA.certificate)
    assert len(pki.fingerprint(CA.certificate)) == 64 and pki.fingerprint(CA.certificate).islower()


def test_a_leafs_issuer_is_its_cas_subject_in_der():
    leaf = test_pki.leaf(CA, CN="d1")
    assert pki.issuer_der(leaf.certificate) == pki.subject_der(CA.certificate) == CA.certificate.subject.public_bytes()
    assert pki.subject_der(leaf.certificate) != pki.subject_der(CA.certificate)


def test_common_name():
    assert pki.common_name(test_pki.leaf(CA, CN="meter-7").certificate) == "meter-7"
    assert pki.common_name(certificate(named(O="Acme"))) == ""


def test_subject_parameters_map_each_huawei_parameter_to_its_rdn():
    leaf = test_pki.leaf(CA, C="CN", O="Acme", OU="Meters", dnQualifier="q1", ST="Zhejiang", CN="meter-1",
                         serialNumber="s1")
    assert pki.subject_parameters(leaf.certificate) == {
        "iotda::certificate::country": "CN",
        "iotda::certificate::organization": "Acme",
        "iotda::certificate::organizational_unit": "Meters",
        "iotda::certificate::distinguished_name_qualifier": "q1",
        "iotda::certificate::state_name": "Zhejiang",
        "iotda::certificate::common_name": "meter-1",
        "iotda::certificate::serial_number": "s1",
    }
    assert pki.SUBJECT_ABBREVIATIONS == {
        "iotda::certificate::country": "C", "iotda::certificate::organization": "O",
        "iotda::certificate::organizational_unit": "OU",
        "iotda::certificate::distinguished_name_qualifier": "dnQualifier",
        "iotda::certificate::state_name": "ST", "iotda::certificate::common_name": "CN",
        "iotda::certificate::serial_number": "serialNumber",
    }


def test_serial_number_is_the_subject_attribute_not_the_certificates_serial():
    cert = certificate(named(CN="n"), serial=12345)
    assert "iotda::certificate::serial_number" not in pki.subject_parameters(cert)


def test_a_repeated_attribute_gives_its_first_value_and_an_absent_one_nothing():
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "first"),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "second"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "n")])
    assert pki.subject_parameters(certificate(subject)) == {
        "iotda::certificate::organizational_unit": "first", "iotda::certificate::common_name": "n"}


# --- CA or not, and who signed it ------------------------------------------------------------------------


def test_is_ca_reads_basic_constraints():
    assert pki.is_ca(CA.certificate)
    assert not pki.is_ca(test_pki.leaf(CA, CN="leaf").certificate)
    assert not pki.is_ca(certificate(named(CN="no extensions")))


@pytest.mark.parametrize(
    ("key", "algorithm"),
    [
        (ec.generate_private_key(ec.SECP384R1()), hashes.SHA384()),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), hashes.SHA256()),
        (ed25519.Ed25519PrivateKey.generate(), None),
        (ed448.Ed448PrivateKey.generate(), None),
    ],
    ids=["ec", "rsa", "ed25519", "ed448"],
)
def test_a_signature_verifies_under_the_issuers_key_of_each_kind(key, algorithm):
    issuer = certificate(named(CN="Issuer"), key=key, algorithm=algorithm)
    leaf = certificate(named(CN="leaf"), issuer=issuer.subject, signer=key, algorithm=algorithm)
    assert pki.signed_by(leaf, issuer) and pki.issued_by(leaf, issuer)


def test_a_same_named_ca_with_another_key_did_not_issue_it():
    impostor = test_pki.ca("Core PKI CA")  # CA's name, another key
    leaf = test_pki.leaf(CA, CN="d1")
    assert leaf.certificate.issuer == impostor.certificate.subject
    assert not pki.signed_by(leaf.certificate, impostor.certificate)
    assert not pki.issued_by(leaf.certificate, impostor.certificate)


def test_the_right_key_under_another_name_did_not_issue_it():
    leaf = certificate(named(CN="d1"), issuer=named(CN="Someone else"), signer=CA.key)
    assert pki.signed_by(leaf, CA.certificate)
    assert not pki.issued_by(leaf, CA.certificate)


def test_a_key_of_another_kind_than_the_signature_does_not_verify():
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_issuer = certificate(named(CN="Core PKI CA"), key=rsa_key)
    leaf = test_pki.leaf(CA, CN="d1")  # an ECDSA signature
    assert not pki.signed_by(leaf.certificate, rsa_issuer)


def test_a_dsa_ca_is_never_taken_for_an_issuer():
    key = dsa.generate_private_key(key_size=2048)
    issuer = certificate(named(CN="DSA CA"), key=key)
    leaf = certificate(named(CN="leaf"), issuer=issuer.subject, signer=key)
    assert not pki.signed_by(leaf, issuer)


def test_a_crl_is_checked_against_its_issuer_too():
    crl = pki.load_crl(test_pki.crl(CA))
    assert pki.signed_by(crl, CA.certificate)
    assert not pki.signed_by(crl, test_pki.ca("Core PKI CA").certificate)


# --- validity and key usage ---------------------------------------------------------------------------------


def test_validity_is_in_unix_milliseconds_and_inclusive():
    cert = certificate(named(CN="d"), not_before=NOW - DAY, not_after=NOW + DAY)
    dates = pki.validity(cert)
    assert dates == pki.Validity(int((NOW - DAY).timestamp() * 1000), int((NOW + DAY).timestamp() * 1000))
    assert pki.valid_at(cert, dates.not_before) and pki.valid_at(cert, dates.not_after)
    assert not pki.valid_at(cert, dates.not_before - 1) and not pki.valid_at(cert, dates.not_after + 1)


@pytest.mark.parametrize(
    ("extensions", "problem"),
    [
        ((), None),
        ((key_usage(digital_signature=True),), None),
        ((x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),), None),
        ((x509.ExtendedKeyUsage([ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE]),), None),
        ((x509.BasicConstraints(ca=False, path_length=None),), None),
        ((x509.BasicConstraints(ca=True, path_length=None),), "the certificate is a CA certificate"),
        ((key_usage(digital_signature=False),), "the key usage does not allow digitalSignature"),
        ((x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),),
         "the extended key usage does not allow clientAuth"),
    ],
    ids=["none", "digital-signature", "client-auth", "any-usage", "not-ca", "ca", "no-digital-signature",
         "server-auth-only"],
)
def test_what_may_authenticate_a_tls_client(extensions, problem):
    cert = certificate(named(CN="d"), issuer=CA.certificate.subject, signer=CA.key, extensions=extensions)
    assert pki.usage_problem(cert) == problem


# --- revocation -----------------------------------------------------------------------------------------------


def test_a_crl_revokes_the_serials_it_lists():
    revoked, kept = test_pki.leaf(CA, CN="revoked"), test_pki.leaf(CA, CN="kept")
    crl = test_pki.crl(CA, revoked)
    assert pki.revoked(crl, revoked.certificate)
    assert not pki.revoked(crl, kept.certificate)


@pytest.mark.parametrize("crl", [None, ""])
def test_no_crl_revokes_nothing(crl):
    assert not pki.revoked(crl, test_pki.leaf(CA, CN="d").certificate)
