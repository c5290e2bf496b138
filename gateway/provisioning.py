"""Claim provisioning with ThingsBoard's semantics (spec sections 1.1-1.7, 2.1-2.2)."""

from __future__ import annotations

import logging
import time

from gateway import credentials as creds
from gateway.errors import CredentialsInvalid, CredentialsTaken, NameTaken
from gateway.ids import new_id, random_alphanumeric
from gateway.model import (
    AuditRecord,
    Credentials,
    CredentialsType,
    Device,
    MqttBasic,
    Product,
    ProvisionRequest,
    ProvisionResult,
    ProvisionStatus,
    ProvisionStrategy,
)
from gateway.ports import AuditLog, ProvisioningStore

log = logging.getLogger(__name__)

NOT_FOUND_MSG = "Provision data was not found!"
FAILURE_MSG = "Failed to provision device!"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class ProvisioningService:
    def __init__(self, store: ProvisioningStore, audit: AuditLog) -> None:
        self._store = store
        self._audit = audit

    async def provision(self, request: ProvisionRequest) -> ProvisionResult:
        product = await self._matching_product(request)
        if request.device_name and not _java_trim(request.device_name):
            # ThingsBoard refuses a blank name before it even looks at the key and secret.
            result = _failure("Provision request contains empty device name!")
        elif product is None:
            result = ProvisionResult(ProvisionStatus.NOT_FOUND, reason="no product matches this key and secret")
        elif "\x00" in _java_trim(request.device_name or ""):
            # PostgreSQL text cannot hold NUL; ThingsBoard's validator refuses it too.
            result = _failure("Device name should not contain 0x00 symbol")
        elif product.provision_strategy is ProvisionStrategy.ALLOW_CREATE_NEW_DEVICES:
            result = await self._create_new(product, request)
        else:
            result = await self._claim_pre_provisioned(product, request)
        await self._audit.record(
            AuditRecord(
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
        )
        return result

    async def _matching_product(self, request: ProvisionRequest) -> Product | None:
        if not request.provision_key.strip() or not request.provision_secret.strip():
            return None
        if "\x00" in request.provision_key:
            return None  # no stored key can hold it, and PostgreSQL refuses it as a parameter
        product = await self._store.product_by_provision_key(request.provision_key)
        if (
            product is None
            or product.provision_strategy is ProvisionStrategy.DISABLED
            or not product.provision_secret
            or not creds.secrets_equal(request.provision_secret, product.provision_secret)
        ):
            return None
        return product

    async def _create_new(self, product: Product, request: ProvisionRequest) -> ProvisionResult:
        name = _java_trim(request.device_name or "") or random_alphanumeric(20)
        try:
            credentials = creds.validate(_requested_credentials(request))
        except CredentialsInvalid as exc:
            return _failure(exc.message)
        device = Device(
            id=new_id(),
            project_id=product.project_id,
            product_id=product.id,
            name=name,
            gateway=request.gateway,
            created_at=_now_ms(),
        )
        try:
            device = await self._store.create_device(device, creds.to_stored(credentials))
        except NameTaken:
            return _failure("The device is present and could not be provisioned once more!")
        except CredentialsTaken as exc:
            return _failure(exc.message)
        await self._store.mark_provisioned(device.id, _now_ms())
        return ProvisionResult(ProvisionStatus.SUCCESS, credentials, device)

    async def _claim_pre_provisioned(self, product: Product, request: ProvisionRequest) -> ProvisionResult:
        name = _java_trim(request.device_name or "")
        device = await self._store.device_by_name(product.project_id, name) if name else None
        if device is None or device.product_id != product.id:
            return _failure("Failed to find pre provisioned device!")
        stored = await self._store.credentials_of(device.id)
        if stored is None or stored.pending is None:
            return _failure("The device has already been provisioned!")
        if not await self._store.mark_provisioned(device.id, _now_ms()):
            return _failure("The device has already been provisioned!")
        return ProvisionResult(ProvisionStatus.SUCCESS, stored.pending, device)


def _java_trim(name: str) -> str:
    """Java's String.trim(), as ThingsBoard trims the device name: every character up to
    U+0020 (control characters included), but not other Unicode spaces."""
    return name.strip(_JAVA_TRIMMED)


_JAVA_TRIMMED = "".join(map(chr, range(0x21)))


def _failure(reason: str) -> ProvisionResult:
    return ProvisionResult(ProvisionStatus.FAILURE, reason=reason)


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
