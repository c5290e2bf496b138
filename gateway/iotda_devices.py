"""IoTDA's AddDevice and ResetDeviceSecret: devices that authenticate with a secret (an HMAC of it
as MQTT password) or with a certificate bound by its SHA-256 fingerprint.

IoTDA names a device ``{product_id}_{node_id}`` unless the operator chooses its id; its name
defaults to the node id. A secret the operator does not choose is generated.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from fleetgate.core.clock import SYSTEM_CLOCK, Clock
from fleetgate.core.devices import DeviceManagement, validated
from fleetgate.core.downlink import Downlink
from fleetgate.core.errors import InvalidInput
from fleetgate.core.ids import new_id
from fleetgate.core.iotda_auth import validate_secret
from fleetgate.core.iotda_ports import IotdaStore
from fleetgate.core.model import (
    Credentials, CredentialsInfo, CredentialsType, Device, DeviceChange, DeviceDetails, IotdaSecret,
)
from fleetgate.core.ports import CredentialsCache
from fleetgate.core.products import ProductService

SECRET, CERTIFICATES = "SECRET", "CERTIFICATES"
_DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_NODE_ID = re.compile(r"[A-Za-z0-9_:.@#-]{1,256}")
_FINGERPRINT = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True, slots=True)
class NewDevice:
    """AddDevice's fields, as the request gave them."""

    product_id: str
    auth_type: str
    node_id: str | None = None
    device_id: str | None = None
    device_name: str | None = None
    description: str = ""
    gateway: bool = False
    secret: str | None = None
    fingerprint: str | None = None
    # A secret device over TLS only: IoTDA's default, since plain MQTT exposes it to impersonation.
    secure_access: bool = True


@dataclass(frozen=True, slots=True)
class AddedDevice:
    change: DeviceChange
    secret: str | None  # the clear secret, shown once: in the answer to AddDevice


class IotdaDevices:
    def __init__(
        self, devices: DeviceManagement, products: ProductService, store: IotdaStore, cache: CredentialsCache, *,
        downlink: Downlink | None = None, clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._devices = devices
        self._downlink = downlink
        self._products = products
        self._store = store
        self._cache = cache
        self._clock = clock

    async def add(self, project_id: str, new: NewDevice) -> AddedDevice:
        device_id = _device_id(new)
        name = new.device_name or new.node_id or device_id
        if new.auth_type == SECRET:
            secret = validate_secret(new.secret) if new.secret is not None else secrets.token_hex(16)
            change = await self._devices.create(
                project_id, name, new.product_id, description=new.description, gateway=new.gateway,
                credentials=Credentials(CredentialsType.SECRET, IotdaSecret(device_id, secret, new.secure_access)),
                device_id=device_id, node_id=new.node_id)
            return AddedDevice(change, secret)
        if new.auth_type != CERTIFICATES:
            raise InvalidInput("auth_type must be SECRET or CERTIFICATES")
        if new.fingerprint is None or not _FINGERPRINT.fullmatch(new.fingerprint):
            raise InvalidInput("fingerprint must be the certificate's SHA-256, 64 hexadecimal digits")
        await self._products.get(project_id, new.product_id)  # NotFound for another project's product
        fingerprint = new.fingerprint.lower()
        device = validated(Device(device_id, project_id, new.product_id, name, label=new.description,
                                  gateway=new.gateway, created_at=self._clock.now_ms(), node_id=new.node_id))
        await self._store.create_certificate_device(device, fingerprint)
        info = CredentialsInfo(CredentialsType.X509_CERTIFICATE, fingerprint=fingerprint)
        return AddedDevice(DeviceChange(DeviceDetails(device, info), None), None)

    async def reset_secret(
        self, project_id: str, device_id: str, secret: str | None, *, force_disconnect: bool = False,
    ) -> str:
        """The device's new secret (generated when not given); its old one stops working at once.
        ``force_disconnect``: its open connections are closed too, in whichever process holds them
        (IoTDA's default is to leave them open)."""
        current = await self._devices.get(project_id, device_id)
        if current.credentials is None or current.credentials.type is not CredentialsType.SECRET:
            raise InvalidInput(f"Device {device_id} does not authenticate with a secret")
        new = validate_secret(secret) if secret is not None else secrets.token_hex(16)
        secure = bool(current.credentials.secure_access)
        await self._devices.update(project_id, device_id, credentials=Credentials(
            CredentialsType.SECRET, IotdaSecret(device_id, new, secure)))
        self._cache.forget(device_id)
        if force_disconnect and self._downlink is not None:
            await self._downlink.disconnect(device_id)
        return new


def _device_id(new: NewDevice) -> str:
    if new.node_id is not None and not _NODE_ID.fullmatch(new.node_id):
        raise InvalidInput("node_id must be 1 to 256 letters, digits or _-:.@#")
    if new.device_id is not None:
        chosen = new.device_id
    elif new.node_id is not None:
        chosen = f"{new.product_id}_{new.node_id}"
    else:
        return new_id()
    if not _DEVICE_ID.fullmatch(chosen):
        raise InvalidInput("device_id must be 1 to 128 letters, digits, _ or -")
    return chosen
