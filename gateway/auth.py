"""Device authentication, with a short-lived cache in front of the credentials store.

High message rates over HTTP and CoAP present the token with every request, so
an identity is cached for ``cache_seconds`` after a lookup; changes made
through the management API evict it at once.
"""

from __future__ import annotations

import time
from typing import Any

from gateway import credentials as creds
from gateway.errors import Unauthorized
from gateway.model import CredentialsType, DeviceIdentity, StoredCredentials
from gateway.ports import DeviceAuthStore

_MAX_ENTRIES = 200_000


class DeviceAuthenticator:
    def __init__(self, store: DeviceAuthStore, cache_seconds: float) -> None:
        self._store = store
        self._ttl = cache_seconds
        self._cache: dict[str, tuple[float, DeviceIdentity, StoredCredentials]] = {}
        self._tokens: dict[str, tuple[float, DeviceIdentity]] = {}

    def cached_token(self, token: str) -> DeviceIdentity | None:
        """The device for a token seen recently, without a lookup; None means "ask by_token"."""
        hit = self._tokens.get(token)
        if hit is None or hit[0] <= time.monotonic():
            return None
        return hit[1]

    async def by_token(self, token: str) -> DeviceIdentity:
        """An ACCESS_TOKEN device, as HTTP and CoAP authenticate it; Unauthorized otherwise."""
        if not token:
            raise Unauthorized()
        cached = self.cached_token(token)
        if cached is not None:
            return cached
        found = await self._lookup(creds.token_lookup(token))
        if found is None or found[1].type is not CredentialsType.ACCESS_TOKEN:
            raise Unauthorized()
        if self._ttl > 0:
            # Keyed by the token itself, so the per-request path hashes nothing.
            _bounded(self._tokens)[token] = (time.monotonic() + self._ttl, found[0])
        return found[0]

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
