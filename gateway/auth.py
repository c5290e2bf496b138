"""Device authentication, with a short-lived cache in front of the credentials store.

High message rates over HTTP and CoAP present the token with every request, so
an identity is cached for ``cache_seconds`` after a lookup; changes made
through the management API evict it at once.

With a :class:`~gateway.backoff.FailureBackoff`, each failed lookup counts
against the source address the front-end names, and a blocked address is
refused (SourceBlocked) before any lookup, cached or not.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from fleetgate.core import credentials as creds
from fleetgate.core import iotda_auth, metrics, pki
from fleetgate.core.backoff import FailureBackoff
from fleetgate.core.clock import SYSTEM_CLOCK, Clock
from fleetgate.core.errors import CertificateRefused, SourceBlocked, Unauthorized
from fleetgate.core.model import CredentialsType, DeviceIdentity, StoredCredentials
from fleetgate.core.ports import DeviceAuthStore

_MAX_ENTRIES = 200_000


class CertificateRegistrar(Protocol):
    """Authenticates a certificate no X509_CERTIFICATE credential names (gateway.autoregistration)."""

    async def authenticate(self, der: bytes, source: str = "") -> DeviceIdentity: ...


class DeviceAuthenticator:
    def __init__(
        self, store: DeviceAuthStore, cache_seconds: float, certificates: CertificateRegistrar | None = None,
        backoff: FailureBackoff | None = None, clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._store = store
        self._clock = clock
        self._backoff = backoff
        self._certificates = certificates
        self._ttl = cache_seconds
        self._cache: dict[str, tuple[float, DeviceIdentity, StoredCredentials]] = {}
        self._tokens: dict[str, tuple[float, DeviceIdentity]] = {}

    def check_source(self, address: str) -> None:
        """Raise SourceBlocked while ``address`` is blocked for its authentication failures."""
        if self._backoff is not None and address:
            left = self._backoff.blocked_for(address)
            if left:
                raise SourceBlocked(retry_after=left)

    def certificate_refused(self, address: str) -> None:
        """A certificate refused in the TLS handshake (unknown CA, expired, revoked, missing):
        an authentication failure of ``address``, counted like a wrong token."""
        self._failed(address)

    def _failed(self, address: str, error: Unauthorized | None = None) -> Unauthorized:
        if self._backoff is not None and address:
            self._backoff.failed(address)
        return error or Unauthorized()

    def cached_token(self, token: str) -> DeviceIdentity | None:
        """The device for a token seen recently, without a lookup; None means "ask by_token"."""
        hit = self._tokens.get(token)
        if hit is None or hit[0] <= time.monotonic():
            return None
        return hit[1]

    async def by_token(self, token: str, address: str = "") -> DeviceIdentity:
        """An ACCESS_TOKEN device, as HTTP and CoAP authenticate it; Unauthorized otherwise
        (SourceBlocked while ``address`` is blocked)."""
        self.check_source(address)
        if not token:
            raise self._failed(address)
        cached = self.cached_token(token)
        if cached is not None:
            return cached
        found = await self._lookup(creds.token_lookup(token))
        if found is None or found[1].type is not CredentialsType.ACCESS_TOKEN:
            raise self._failed(address)
        if self._ttl > 0:
            # Keyed by the token itself, so the per-request path hashes nothing.
            _bounded(self._tokens)[token] = (time.monotonic() + self._ttl, found[0])
        return found[0]

    async def by_mqtt(
        self, client_id: str, username: str | None, password: bytes | None, address: str = "", *,
        tls: bool = False,
    ) -> DeviceIdentity:
        """``tls``: the connection is encrypted (a secret device with secure_access needs it)."""
        self.check_source(address)
        try:
            return await self._by_mqtt(client_id, username, password, tls)
        except Unauthorized:
            raise self._failed(address) from None

    async def _by_mqtt(
        self, client_id: str, username: str | None, password: bytes | None, tls: bool = False
    ) -> DeviceIdentity:
        """ThingsBoard's MQTT CONNECT lookup (spec 3.1): the user name as an access token, or
        MQTT_BASIC by sha3(client id), sha3(client id|user name) or the user name alone.

        Unauthorized when nothing matches or a stored field disagrees; which CONNACK code
        that becomes depends on the fields the client sent, and is the front-end's choice.
        """
        iotda = iotda_auth.parse(client_id, username)
        if iotda is not None and password is not None:
            found = await self._lookup(iotda_auth.lookup(iotda.device_id))
            if found is not None and found[1].type is CredentialsType.SECRET:
                return self._secret_match(found, iotda, password, tls)
        given = password.decode("utf-8", "replace") if password is not None else None
        if not username:
            found = await self._lookup(creds.mqtt_basic_lookup(client_id, None)) if client_id else None
            return self._basic_match(found, client_id, username, given)
        if client_id:
            found = await self._lookup(creds.mqtt_basic_lookup(client_id, username))
            if found is not None and found[1].type is CredentialsType.MQTT_BASIC:
                # A wrong password for these exact credentials is final: no fallback.
                return self._basic_match(found, client_id, username, given)
        found = await self._lookup(creds.token_lookup(username))
        if found is not None and found[1].type is CredentialsType.ACCESS_TOKEN:
            return found[0]
        return self._basic_match(found, client_id, username, given)

    async def by_certificate(
        self, der: bytes, source: str = "", address: str = "", *, resumed: bool = False,
        iotda: iotda_auth.IotdaConnect | None = None,
    ) -> DeviceIdentity:
        """An X509_CERTIFICATE device, by its credentials hash (SHA3-256 of the Base64 DER); else
        a device bound to the certificate's fingerprint, registered at its first connection
        when a device CA's template allows it.

        ``resumed``: the TLS session was resumed from a ticket, so no handshake checked the
        certificate this time; its dates are checked here (the ticket may have been issued
        while it was valid). Revocation and disabling are looked up on every connection anyway.

        ``iotda``: the IoTDA form of CONNECT, whose user name must be the certificate's own
        device: a user name never selects another device than the certificate's.
        """
        self.check_source(address)
        try:
            if resumed and not pki.valid_at(pki.load_der(der), self._clock.now_ms()):
                raise Unauthorized()
            if iotda is not None and not iotda_auth.fresh(iotda, self._clock.now_ms()):
                raise Unauthorized()
            device = await self._by_certificate(der, source)
            if iotda is not None and device.device_id != iotda.device_id:
                raise Unauthorized()
            return device
        except Unauthorized:
            raise self._failed(address, CertificateRefused("Not authorized")) from None

    async def _by_certificate(self, der: bytes, source: str) -> DeviceIdentity:
        found = await self._lookup(creds.certificate_lookup_from_der(der))
        if found is not None and found[1].type is CredentialsType.X509_CERTIFICATE:
            return found[0]
        if found is None and self._certificates is not None:
            return await self._certificates.authenticate(der, source)
        raise Unauthorized()

    def _secret_match(
        self, found: tuple[DeviceIdentity, StoredCredentials], iotda: iotda_auth.IotdaConnect, password: bytes,
        tls: bool,
    ) -> DeviceIdentity:
        """IoTDA's secret check: TLS for a device with secure_access, the hour when the client id
        asks for it, then the HMAC."""
        if found[1].secure_access and not tls:
            # Plain MQTT for a device that must use TLS: refused, counted apart from wrong secrets.
            metrics.BAD_REQUESTS.labels("mqtt", "insecure_access").inc()
            raise Unauthorized()
        secret = found[1].secret
        if secret is None or not iotda_auth.fresh(iotda, self._clock.now_ms()):
            raise Unauthorized()
        if not iotda_auth.password_matches(secret, iotda.hour, password):
            raise Unauthorized()
        return found[0]

    @staticmethod
    def _basic_match(
        found: tuple[DeviceIdentity, StoredCredentials] | None,
        client_id: str, username: str | None, password: str | None,
    ) -> DeviceIdentity:
        """ThingsBoard's MQTT_BASIC validation: each stored field, when set, must match."""
        if found is None or found[1].type is not CredentialsType.MQTT_BASIC:
            raise Unauthorized()
        identity, stored = found
        if stored.client_id and stored.client_id != client_id:
            raise Unauthorized()
        if stored.user_name and stored.user_name != username:
            raise Unauthorized()
        if stored.password_hash and not (password and creds.verify_password(password, stored.password_hash)):
            raise Unauthorized()
        return identity

    def forget(self, device_id: str) -> None:
        for cache in (self._cache, self._tokens):
            for key in [k for k, v in cache.items() if v[1].device_id == device_id]:
                del cache[key]

    async def _lookup(self, lookup: str) -> tuple[DeviceIdentity, StoredCredentials] | None:
        now = time.monotonic()
        hit = self._cache.get(lookup)
        if hit is not None and hit[0] > now:
            return hit[1], hit[2]
        found = await self._store.authenticate(lookup)
        if found is not None and self._ttl > 0:
            _bounded(self._cache)[lookup] = (now + self._ttl, *found)
        return found


def _bounded(cache: dict[str, Any]) -> dict[str, Any]:
    """The cache, with its oldest tenth dropped when full (dicts keep insertion order)."""
    if len(cache) >= _MAX_ENTRIES:
        for stale in list(cache)[: _MAX_ENTRIES // 10]:
            del cache[stale]
    return cache
