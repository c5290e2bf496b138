"""Devices as operators manage them: registered with their credentials, listed, changed, deleted."""

from __future__ import annotations

import dataclasses
import re

from fleetgate.core import credentials as creds
from fleetgate.core.clock import SYSTEM_CLOCK, Clock
from fleetgate.core.errors import InvalidInput, NotFound
from fleetgate.core.ids import new_id, random_alphanumeric
from fleetgate.core.model import (
    Credentials,
    CredentialsInfo,
    CredentialsType,
    Device,
    DeviceChange,
    DeviceDetails,
    Page,
    Product,
    ProvisionStrategy,
    StoredCredentials,
)
from fleetgate.core.ports import CredentialsCache, DeviceLookup, DeviceRegistry
from fleetgate.core.presence_model import DeviceStatus
from fleetgate.core.products import ProductService

_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,256}")
_MAX_DESCRIPTION = 2048


def generated_token() -> Credentials:
    """An access token chosen by the gateway, shaped like ThingsBoard's: 20 letters and digits."""
    return Credentials(CredentialsType.ACCESS_TOKEN, random_alphanumeric(20))


async def require_device(devices: DeviceLookup, project_id: str, device_id: str) -> DeviceDetails:
    """The project's device, or NotFound: another project's device id reveals nothing."""
    details = await devices.device(project_id, device_id)
    if details is None:
        raise NotFound(f"Device {device_id} does not exist")
    return details


class DeviceManagement:
    def __init__(
        self, registry: DeviceRegistry, products: ProductService, cache: CredentialsCache, *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._registry = registry
        self._clock = clock
        self._products = products
        self._cache = cache

    async def create(
        self,
        project_id: str,
        name: str,
        product_id: str,
        *,
        description: str = "",
        gateway: bool = False,
        credentials: Credentials | None = None,
        device_id: str | None = None,
        node_id: str | None = None,
    ) -> DeviceChange:
        """Register a device; without credentials it gets a generated access token. ``device_id``
        and ``node_id``: IoTDA's AddDevice, already checked; otherwise a new id and no node id."""
        device = _validated(
            Device(
                id=device_id or new_id(),
                project_id=project_id,
                product_id=product_id,
                name=name,
                label=description,
                gateway=gateway,
                created_at=self._clock.now_ms(),
                node_id=node_id,
            )
        )
        clear = creds.validate(credentials or generated_token())
        product = await self._products.get(project_id, product_id)
        stored = creds.to_stored(clear, keep_pending=_pre_provisioned(product))
        await self._registry.create_device(device, stored)
        return DeviceChange(DeviceDetails(device, _info(stored)), clear)

    async def get(self, project_id: str, device_id: str) -> DeviceDetails:
        return await require_device(self._registry, project_id, device_id)

    async def list(
        self,
        project_id: str,
        limit: int,
        marker: str,
        offset: int,
        *,
        product_id: str | None = None,
        name: str | None = None,
        status: DeviceStatus | None = None,
        gateway_id: str | None = None,
        customer: str | None = None,
    ) -> Page:
        """Devices (DeviceDetails), newest first; ``status`` as of now (fleetgate.core.presence);
        ``gateway_id``: the sub-devices of that gateway; ``customer``: the devices it claimed."""
        return await self._registry.list_devices(
            project_id, limit, marker, offset, product_id=product_id, name=name, status=status, gateway_id=gateway_id,
            customer=customer,
        )

    async def update(
        self,
        project_id: str,
        device_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        gateway: bool | None = None,
        credentials: Credentials | None = None,
    ) -> DeviceChange:
        """Change what is given (None leaves a field as it is); new credentials replace the old."""
        current = await self.get(project_id, device_id)
        old = current.device
        device = _validated(dataclasses.replace(
            old,
            name=old.name if name is None else name,
            label=old.label if description is None else description,
            gateway=old.gateway if gateway is None else gateway,
        ))
        clear = creds.validate(credentials) if credentials is not None else None
        stored = await self._stored(device, current, clear) if clear is not None else None
        if not await self._registry.update_device(device, stored):
            raise NotFound(f"Device {device_id} does not exist")
        # A cached identity carries the device's name, and old credentials must stop working at once.
        if stored is not None or device.name != old.name:
            self._cache.forget(device_id)
        info = _info(stored) if stored is not None else current.credentials
        return DeviceChange(DeviceDetails(device, info, current.provisioned, current.connectivity), clear)

    async def delete(self, project_id: str, device_id: str) -> None:
        if not await self._registry.delete_device(project_id, device_id):
            raise NotFound(f"Device {device_id} does not exist")
        self._cache.forget(device_id)

    async def _stored(self, device: Device, current: DeviceDetails, clear: Credentials) -> StoredCredentials:
        # Only a device still awaiting its first provisioning keeps the clear value:
        # afterwards nothing would ever erase it.
        product = await self._products.get(device.project_id, device.product_id)
        return creds.to_stored(clear, keep_pending=_pre_provisioned(product) and not current.provisioned)


def _pre_provisioned(product: Product) -> bool:
    return product.provision_strategy is ProvisionStrategy.CHECK_PRE_PROVISIONED_DEVICES


def _info(stored: StoredCredentials) -> CredentialsInfo:
    secure = stored.secure_access if stored.type is CredentialsType.SECRET else None
    return CredentialsInfo(stored.type, stored.client_id, stored.user_name, secure_access=secure)


def validated(device: Device) -> Device:
    """The checks every new or changed device passes (InvalidInput otherwise)."""
    return _validated(device)


def _validated(device: Device) -> Device:
    name = device.name
    # Provisioning looks devices up by the stripped name, so surrounding spaces would make one unclaimable.
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name != name.strip():
        raise InvalidInput("device_name must be 1 to 256 characters, without control characters or surrounding spaces")
    # Devices created by provisioning have no label.
    if device.label is not None and (not isinstance(device.label, str) or len(device.label) > _MAX_DESCRIPTION):
        raise InvalidInput(f"description must be a string of at most {_MAX_DESCRIPTION} characters")
    if not isinstance(device.gateway, bool):
        raise InvalidInput("gateway must be true or false")
    return device
