"""Claim provisioning with ThingsBoard's semantics (spec sections 1.1-1.7, 2.1-2.2)."""

from __future__ import annotations

import logging
import time

from fleetgate.core import credentials as creds
from fleetgate.core.buckets import TokenBuckets
from fleetgate.core.clock import SYSTEM_CLOCK, Clock
from fleetgate.core.errors import CredentialsInvalid, CredentialsTaken, NameTaken, ProvisionRateExceeded
from fleetgate.core.ids import new_id, random_alphanumeric
from fleetgate.core.model import (
    AuditRecord,
    Credentials,
    CredentialsType,
    Device,
    MqttBasic,
    Product,
    ProvisionStrategy,
)
from fleetgate.core.ports import AuditLog, ProvisioningStore
from fleetgate.core.provisioning_model import ProvisionRequest, ProvisionResult, ProvisionStatus

log = logging.getLogger(__name__)

NOT_FOUND_MSG = "Provision data was not found!"
FAILURE_MSG = "Failed to provision device!"
# How long a product found by its provision key is reused. Changes made in this
# process apply at once (forget_products); those of other workers within this time.
PRODUCT_CACHE_SECONDS = 5.0


class ProvisioningService:
    def __init__(
        self, store: ProvisioningStore, audit: AuditLog, *, product_cache_seconds: float = PRODUCT_CACHE_SECONDS,
        attempts: TokenBuckets | None = None, clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._store = store
        self._clock = clock
        self._attempts = attempts  # per provision key: a secret is not guessed at line rate
        self._audit = audit
        self._products = _ProductsByKey(store, product_cache_seconds)

    def forget_products(self) -> None:
        """Drop every cached product: call it when a product is created, changed or deleted."""
        self._products.clear()

    async def provision(self, request: ProvisionRequest) -> ProvisionResult:
        """Every outcome leaves one audit record and one log record (never the secret); a success
        writes its audit record with the device. Past the attempts allowed for the key,
        ProvisionRateExceeded, before any lookup and unaudited."""
        if self._attempts is not None:
            wait = self._attempts.take(request.provision_key)
            if wait:
                raise ProvisionRateExceeded(
                    "Too many provisioning attempts with this provision key; retry later", retry_after=wait
                )
        result = await self._provision(request)
        ids = {"device_id": result.device.id, "project_id": result.device.project_id} if result.device else {}
        log.info("provisioning %s (%s) from %s", result.status.value, result.code, request.source,
                 extra={"device": request.device_name or "", **ids})
        return result

    async def _provision(self, request: ProvisionRequest) -> ProvisionResult:
        """A success writes its audit record with the device."""
        product = await self._matching_product(request)
        if request.device_name and not _java_trim(request.device_name):
            # ThingsBoard refuses a blank name before it even looks at the key and secret.
            return await self._recorded(product, request, _failure(_EMPTY_NAME, "empty_name"))
        if product is None:
            not_found = ProvisionResult(
                ProvisionStatus.NOT_FOUND, reason="no product matches this key and secret", code="unknown_key_or_secret"
            )
            return await self._recorded(None, request, not_found)
        if "\x00" in _java_trim(request.device_name or ""):
            # PostgreSQL text cannot hold NUL; ThingsBoard's validator refuses it too.
            return await self._recorded(product, request, _failure(_NUL_IN_NAME, "invalid_name"))
        if product.provision_strategy is ProvisionStrategy.ALLOW_CREATE_NEW_DEVICES:
            return await self._create_new(product, request)
        return await self._claim_pre_provisioned(product, request)

    async def _matching_product(self, request: ProvisionRequest) -> Product | None:
        if not request.provision_key.strip() or not request.provision_secret.strip():
            return None
        if "\x00" in request.provision_key:
            return None  # no stored key can hold it, and PostgreSQL refuses it as a parameter
        product = await self._products.get(request.provision_key)
        if (
            product is None
            or product.provision_strategy is ProvisionStrategy.DISABLED
            or not product.provision_secret
            or not creds.secrets_equal(request.provision_secret, product.provision_secret)
        ):
            return None
        return product

    async def _create_new(self, product: Product, request: ProvisionRequest) -> ProvisionResult:
        try:
            credentials = creds.validate(_requested_credentials(request))
        except CredentialsInvalid as exc:
            return await self._recorded(product, request, _failure(exc.message, "invalid_credentials"))
        now = self._clock.now_ms()
        device = Device(
            id=new_id(),
            project_id=product.project_id,
            product_id=product.id,
            name=_java_trim(request.device_name or "") or random_alphanumeric(20),
            gateway=request.gateway,
            created_at=now,
        )
        success = ProvisionResult(ProvisionStatus.SUCCESS, credentials, device, code="created")
        try:
            await self._store.create_device(
                device, creds.to_stored(credentials), provisioned=_audit_record(product, request, success)
            )
        except NameTaken:
            failure = _failure("The device is present and could not be provisioned once more!", "name_taken")
            return await self._recorded(product, request, failure)
        except CredentialsTaken as exc:
            return await self._recorded(product, request, _failure(exc.message, "credentials_taken"))
        return success

    async def _claim_pre_provisioned(self, product: Product, request: ProvisionRequest) -> ProvisionResult:
        name = _java_trim(request.device_name or "")
        found = await self._store.device_with_credentials(product.project_id, name) if name else None
        if found is None or found[0].product_id != product.id:
            return await self._recorded(product, request, _failure(_NOT_PRE_PROVISIONED, "not_pre_provisioned"))
        device, stored = found
        if stored is None or stored.pending is None:
            return await self._recorded(product, request, _already_provisioned())
        success = ProvisionResult(ProvisionStatus.SUCCESS, stored.pending, device, code="claimed")
        record = _audit_record(product, request, success)
        if not await self._store.mark_provisioned(device.id, self._clock.now_ms(), record):
            # Another request claimed it since the lookup.
            return await self._recorded(product, request, _already_provisioned())
        return success

    async def _recorded(
        self, product: Product | None, request: ProvisionRequest, result: ProvisionResult
    ) -> ProvisionResult:
        await self._audit.record(_audit_record(product, request, result))
        return result


class _ProductsByKey:
    """Products by provision key, kept for a few seconds: a fleet provisions under one key.

    Misses are not kept, so a product provisions as soon as it is created, and entries
    exist only for keys that products hold, which bounds the dict.
    """

    def __init__(self, store: ProvisioningStore, ttl: float) -> None:
        self._store = store
        self._ttl = ttl
        self._entries: dict[str, tuple[float, Product]] = {}
        self._generation = 0

    async def get(self, key: str) -> Product | None:
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        generation = self._generation
        product = await self._store.product_by_provision_key(key)
        # A lookup that overlapped clear() may have read the product as it was before the change.
        if product is not None and self._ttl > 0 and generation == self._generation:
            self._entries[key] = (now + self._ttl, product)
        return product

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()


def _audit_record(product: Product | None, request: ProvisionRequest, result: ProvisionResult) -> AuditRecord:
    return AuditRecord(
        project_id=product.project_id if product else None,
        action="PROVISION",
        outcome=result.status.value,
        reason=result.reason,
        device_id=result.device.id if result.device else None,
        source=request.source,
        details={
            # jsonb cannot hold U+0000 either.
            "device_name": (request.device_name or "").replace("\x00", "\ufffd"),
            "credentials_type": request.credentials_type.value,
        },
    )


def _java_trim(name: str) -> str:
    """Java's String.trim(), as ThingsBoard trims the device name: every character up to
    U+0020 (control characters included), but not other Unicode spaces."""
    return name.strip(_JAVA_TRIMMED)


_JAVA_TRIMMED = "".join(map(chr, range(0x21)))


_EMPTY_NAME = "Provision request contains empty device name!"
_NUL_IN_NAME = "Device name should not contain 0x00 symbol"
_NOT_PRE_PROVISIONED = "Failed to find pre provisioned device!"


def _already_provisioned() -> ProvisionResult:
    return _failure("The device has already been provisioned!", "already_provisioned")


def _failure(reason: str, code: str) -> ProvisionResult:
    return ProvisionResult(ProvisionStatus.FAILURE, reason=reason, code=code)


def _requested_credentials(request: ProvisionRequest) -> Credentials:
    """ThingsBoard replaces the default generated token only when the request carries
    at least one credential field; then ``credentialsType`` decides which."""
    supplied = any((request.token, request.certificate, request.username, request.password, request.client_id))
    if not supplied:
        return Credentials(CredentialsType.ACCESS_TOKEN, random_alphanumeric(20))
    match request.credentials_type:
        case CredentialsType.ACCESS_TOKEN:
            return Credentials(CredentialsType.ACCESS_TOKEN, request.token or "")
        case CredentialsType.MQTT_BASIC:
            return Credentials(
                CredentialsType.MQTT_BASIC,
                MqttBasic(request.client_id or None, request.username or None, request.password or None),
            )
        case CredentialsType.X509_CERTIFICATE:
            return Credentials(CredentialsType.X509_CERTIFICATE, request.certificate or "")
    raise CredentialsInvalid(f"Credentials type {request.credentials_type} cannot be provisioned!")
