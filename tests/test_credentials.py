"""Unit tests of gateway/credentials.py: ThingsBoard's credential ids, hashing and validation (spec 1.1, 3.1)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fleetgate.core import credentials as creds
from fleetgate.core.errors import CredentialsInvalid
from fleetgate.core.model import Credentials, CredentialsType, MqttBasic, StoredCredentials
from tests.pki import pem_body, self_signed_pem

TOKEN, BASIC, X509 = CredentialsType.ACCESS_TOKEN, CredentialsType.MQTT_BASIC, CredentialsType.X509_CERTIFICATE


@pytest.fixture(scope="module")
def pem() -> str:
    return self_signed_pem()


# --- hashes and lookup keys -------------------------------------------------------------------


def test_sha3_matches_thingsboards_test_vector():
    assert creds.sha3_hex("ThingsBoard") == "281c7ba06d0ac2ff651fa968572f26a38c96225ea54644522837b54b9c6144f7"


def test_token_lookup_is_a_prefixed_sha256_never_the_token():
    lookup = creds.token_lookup("sLzc0gDAZPkGMzFVTyUY")
    assert lookup == "t:" + hashlib.sha256(b"sLzc0gDAZPkGMzFVTyUY").hexdigest()
    assert "sLzc0gDAZPkGMzFVTyUY" not in lookup


@pytest.mark.parametrize(
    ("client_id", "user_name", "expected"),
    [
        ("client", "user", "b:" + creds.sha3_hex("client|user")),
        ("client", None, "b:" + creds.sha3_hex("client")),
        ("client", "", "b:" + creds.sha3_hex("client")),
        # ThingsBoard keys a user-name-only credential by the user name, like a token.
        (None, "user", creds.token_lookup("user")),
        ("", "user", creds.token_lookup("user")),
    ],
)
def test_mqtt_basic_lookup_follows_format_simple_mqtt_credentials(client_id, user_name, expected):
    assert creds.mqtt_basic_lookup(client_id, user_name) == expected


@pytest.mark.parametrize(("client_id", "user_name"), [(None, None), ("", ""), ("", None)])
def test_mqtt_basic_lookup_needs_a_client_id_or_user_name(client_id, user_name):
    with pytest.raises(CredentialsInvalid, match="Both mqtt client id and user name are empty!"):
        creds.mqtt_basic_lookup(client_id, user_name)


def test_trim_certificate_drops_markers_and_line_breaks(pem):
    assert creds.trim_certificate(pem) == pem_body(pem)
    assert creds.trim_certificate(pem.replace("\n", "\r\n")) == pem_body(pem)
    assert creds.trim_certificate(pem_body(pem)) == pem_body(pem)
    assert "\n" not in creds.trim_certificate(pem) and "-----" not in creds.trim_certificate(pem)


def test_certificate_lookup_is_sha3_of_the_body_and_agrees_with_the_der_form(pem):
    body = pem_body(pem)
    assert creds.certificate_lookup(body) == "x:" + hashlib.sha3_256(body.encode()).hexdigest()
    der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)
    assert creds.certificate_lookup_from_der(der) == creds.certificate_lookup(body)


# --- secrets ----------------------------------------------------------------------------------


def test_password_hash_round_trip_and_salt():
    first, second = creds.hash_password("pa55"), creds.hash_password("pa55")
    assert first != second and first.startswith("scrypt$") and "pa55" not in first
    assert creds.verify_password("pa55", first) and creds.verify_password("pa55", second)
    assert not creds.verify_password("pa56", first)
    assert not creds.verify_password("", first)


@pytest.mark.parametrize("stored", ["", "garbage", "scrypt$zz$00", "scrypt$00"])
def test_verify_password_against_a_malformed_hash_is_false(stored):
    assert creds.verify_password("pa55", stored) is False


def test_secrets_equal():
    assert creds.secrets_equal("secret", "secret")
    assert not creds.secrets_equal("secret", "Secret")
    assert not creds.secrets_equal("secret", "secret ")
    assert creds.secrets_equal("sécret", "sécret")


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["a", "sLzc0gDAZPkGMzFVTyUY", "x" * 256])
def test_valid_access_tokens(token):
    assert creds.validate(Credentials(TOKEN, token)) == Credentials(TOKEN, token)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("", "Device credentials id should be specified!"),
        ("   ", "Device credentials id should be specified!"),
        ("x" * 257, "Access token is longer than 256 characters!"),
    ],
)
def test_invalid_access_tokens(token, message):
    with pytest.raises(CredentialsInvalid) as caught:
        creds.validate(Credentials(TOKEN, token))
    assert caught.value.message == message


@pytest.mark.parametrize(
    "basic",
    [
        MqttBasic("client", "user", "pass"),
        MqttBasic(None, "user", "pass"),
        MqttBasic(None, "user", None),
        MqttBasic("client", None, None),
        MqttBasic("client", "user", None),
    ],
)
def test_valid_mqtt_basic(basic):
    assert creds.validate(Credentials(BASIC, basic)) == Credentials(BASIC, basic)


@pytest.mark.parametrize(
    ("basic", "message"),
    [
        (MqttBasic(None, None, "pass"), "Both mqtt client id and user name are empty!"),
        (MqttBasic(None, None, None), "Both mqtt client id and user name are empty!"),
        (MqttBasic("", "", "pass"), "Both mqtt client id and user name are empty!"),
        (MqttBasic("client", None, "pass"), "Password cannot be specified along with client id"),
        (MqttBasic("cli\x00ent", "user", None), "MQTT client id and user name cannot contain U+0000"),
        (MqttBasic(None, "us\x00er", "pass"), "MQTT client id and user name cannot contain U+0000"),
    ],
)
def test_invalid_mqtt_basic_has_thingsboards_messages(basic, message):
    with pytest.raises(CredentialsInvalid) as caught:
        creds.validate(Credentials(BASIC, basic))
    assert caught.value.message == message


def test_x509_is_normalised_to_the_trimmed_body(pem):
    assert creds.validate(Credentials(X509, pem)) == Credentials(X509, pem_body(pem))
    assert creds.validate(Credentials(X509, pem_body(pem))) == Credentials(X509, pem_body(pem))


@pytest.mark.parametrize(
    "certificate",
    ["", "not a certificate", base64.b64encode(b"not DER").decode(), "-----BEGIN CERTIFICATE-----\n!!\n"],
)
def test_invalid_x509(certificate):
    with pytest.raises(CredentialsInvalid, match="Invalid X509 certificate!"):
        creds.validate(Credentials(X509, certificate))


def test_a_truncated_certificate_is_invalid(pem):
    body = pem_body(pem)
    with pytest.raises(CredentialsInvalid, match="Invalid X509 certificate!"):
        creds.validate(Credentials(X509, body[: len(body) // 2 // 4 * 4]))


def test_lwm2m_cannot_be_validated():
    with pytest.raises(CredentialsInvalid, match="Unsupported credentials type"):
        creds.validate(Credentials(CredentialsType.LWM2M_CREDENTIALS, "x"))


# --- what storage gets ------------------------------------------------------------------------


def test_stored_access_token_keeps_no_clear_value_unless_pending():
    stored = creds.to_stored(Credentials(TOKEN, "tok"))
    assert stored == StoredCredentials(TOKEN, creds.token_lookup("tok"))
    pending = creds.to_stored(Credentials(TOKEN, "tok"), keep_pending=True)
    assert pending == StoredCredentials(TOKEN, creds.token_lookup("tok"), pending=Credentials(TOKEN, "tok"))


def test_stored_mqtt_basic_hashes_the_password():
    stored = creds.to_stored(Credentials(BASIC, MqttBasic("client", "user", "pass")))
    assert (stored.type, stored.lookup, stored.client_id, stored.user_name, stored.pending) == (
        BASIC, "b:" + creds.sha3_hex("client|user"), "client", "user", None,
    )
    assert stored.password_hash and "pass" not in stored.password_hash
    assert creds.verify_password("pass", stored.password_hash)


def test_stored_mqtt_basic_without_password():
    stored = creds.to_stored(Credentials(BASIC, MqttBasic("client", None, None)))
    assert stored == StoredCredentials(BASIC, "b:" + creds.sha3_hex("client"), client_id="client")


def test_stored_x509_keeps_the_public_certificate(pem):
    body = pem_body(pem)
    stored = creds.to_stored(Credentials(X509, body))
    assert stored == StoredCredentials(X509, creds.certificate_lookup(body), certificate=body)
