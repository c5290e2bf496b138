"""How credentials are normalised, identified and hashed.

The lookup keys follow ThingsBoard so that every protocol agrees on them: an
access token is found by its own value, MQTT_BASIC by user name, sha3(client id)
or sha3(client id|user name), an X.509 certificate by the SHA3-256 of its
trimmed Base64 body. Storage only ever sees ``lookup`` values that are hashes
of secrets: an access token is stored as SHA-256 of its value (tokens are the
lookup key, so the hash must be deterministic), a password as salted scrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

from fleetgate.core.errors import CredentialsInvalid
from fleetgate.core import iotda_auth
from fleetgate.core.model import Credentials, CredentialsType, IotdaSecret, MqttBasic, StoredCredentials

CERTIFICATE_TOKEN = "me"
_PEM_MARKERS = ("-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----")
# scrypt's cost is modest on purpose: MQTT_BASIC devices reconnect in storms,
# and a device password is checked at every CONNECT.
_SCRYPT = {"n": 2**12, "r": 8, "p": 1, "dklen": 32}


def sha3_hex(text: str) -> str:
    """ThingsBoard's EncryptionUtil.getSha3Hash: SHA3-256, lowercase hex."""
    return hashlib.sha3_256(text.encode()).hexdigest()


def token_lookup(token: str) -> str:
    return "t:" + hashlib.sha256(token.encode()).hexdigest()


def mqtt_basic_lookup(client_id: str | None, user_name: str | None) -> str:
    """ThingsBoard's formatSimpleMqttCredentials, prefixed so it can never equal a token lookup."""
    if client_id and user_name:
        return "b:" + sha3_hex(f"{client_id}|{user_name}")
    if client_id:
        return "b:" + sha3_hex(client_id)
    if user_name:
        # ThingsBoard keys a user-name-only credential by the user name itself,
        # in the same space as access tokens: the two collide, and CONNECT with
        # that user name finds either.
        return token_lookup(user_name)
    raise CredentialsInvalid("Both mqtt client id and user name are empty!")


def trim_certificate(pem_or_body: str) -> str:
    """ThingsBoard's certTrimNewLines: drop the PEM markers and every line break."""
    text = pem_or_body
    for marker in _PEM_MARKERS:
        text = text.replace(marker, "")
    return text.replace("\r", "").replace("\n", "").strip()


def certificate_lookup(trimmed: str) -> str:
    return "x:" + sha3_hex(trimmed)


def certificate_lookup_from_der(der: bytes) -> str:
    return certificate_lookup(base64.b64encode(der).decode())


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        _, salt, digest = stored.split("$")
        candidate = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), **_SCRYPT)
    except ValueError:
        return False
    return hmac.compare_digest(candidate.hex(), digest)


def secrets_equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def validate(credentials: Credentials) -> Credentials:
    """Normalise and check credentials as ThingsBoard's validator does; raise CredentialsInvalid."""
    match credentials.type:
        case CredentialsType.ACCESS_TOKEN:
            token = credentials.value
            if not isinstance(token, str) or not token.strip():
                raise CredentialsInvalid("Device credentials id should be specified!")
            if len(token) > 256:
                raise CredentialsInvalid("Access token is longer than 256 characters!")
            if token == CERTIFICATE_TOKEN:
                # /api/v1/me/... is the device API for a device authenticated by its certificate.
                raise CredentialsInvalid(f"An access token cannot be {CERTIFICATE_TOKEN!r}!")
            return credentials
        case CredentialsType.MQTT_BASIC:
            basic = credentials.value
            assert isinstance(basic, MqttBasic)
            if not basic.client_id and not basic.user_name:
                raise CredentialsInvalid("Both mqtt client id and user name are empty!")
            if basic.client_id and basic.password and not basic.user_name:
                raise CredentialsInvalid("Password cannot be specified along with client id")
            if "\x00" in (basic.client_id or "") + (basic.user_name or ""):
                raise CredentialsInvalid("MQTT client id and user name cannot contain U+0000")
            return credentials
        case CredentialsType.X509_CERTIFICATE:
            assert isinstance(credentials.value, str)
            trimmed = trim_certificate(credentials.value)
            _check_certificate(trimmed)
            return Credentials(CredentialsType.X509_CERTIFICATE, trimmed)
        case CredentialsType.SECRET:
            assert isinstance(credentials.value, IotdaSecret)
            iotda_auth.validate_secret(credentials.value.secret)
            return credentials
    raise CredentialsInvalid(f"Unsupported credentials type {credentials.type}!")


def _check_certificate(trimmed: str) -> None:
    from cryptography import x509

    try:
        x509.load_der_x509_certificate(base64.b64decode(trimmed, validate=True))
    except (ValueError, binascii.Error) as exc:
        raise CredentialsInvalid("Invalid X509 certificate!") from exc


def to_stored(credentials: Credentials, *, keep_pending: bool = False) -> StoredCredentials:
    """Hash validated credentials for storage; keep the clear value only when asked."""
    pending = credentials if keep_pending else None
    match credentials.type:
        case CredentialsType.ACCESS_TOKEN:
            assert isinstance(credentials.value, str)
            return StoredCredentials(credentials.type, token_lookup(credentials.value), pending=pending)
        case CredentialsType.MQTT_BASIC:
            basic = credentials.value
            assert isinstance(basic, MqttBasic)
            return StoredCredentials(
                credentials.type,
                mqtt_basic_lookup(basic.client_id, basic.user_name),
                password_hash=hash_password(basic.password) if basic.password else None,
                client_id=basic.client_id,
                user_name=basic.user_name,
                pending=pending,
            )
        case CredentialsType.X509_CERTIFICATE:
            assert isinstance(credentials.value, str)
            return StoredCredentials(
                credentials.type,
                certificate_lookup(credentials.value),
                certificate=credentials.value,
                pending=pending,
            )
        case CredentialsType.SECRET:
            # Never kept pending: IoTDA devices do not claim credentials by provisioning.
            secret = credentials.value
            assert isinstance(secret, IotdaSecret)
            return StoredCredentials(credentials.type, iotda_auth.lookup(secret.device_id), secret=secret.secret,
                                     secure_access=secret.secure_access)
    raise CredentialsInvalid(f"Unsupported credentials type {credentials.type}!")
