"""Frozen dataclasses passed between the layers: tenants, products, devices and their credentials,
pages and audit records. Each other concept's own types are in a *_model module of its own."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from fleetgate.core.presence_model import Connectivity


class ProvisionStrategy(enum.StrEnum):
    ALLOW_CREATE_NEW_DEVICES = "ALLOW_CREATE_NEW_DEVICES"
    CHECK_PRE_PROVISIONED_DEVICES = "CHECK_PRE_PROVISIONED_DEVICES"
    DISABLED = "DISABLED"


class CredentialsType(enum.StrEnum):
    ACCESS_TOKEN = "ACCESS_TOKEN"
    MQTT_BASIC = "MQTT_BASIC"
    X509_CERTIFICATE = "X509_CERTIFICATE"
    LWM2M_CREDENTIALS = "LWM2M_CREDENTIALS"
    SECRET = "SECRET"  # IoTDA's secret: the MQTT password is an HMAC of it (fleetgate.core.iotda_auth)


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    name: str
    created_at: int


@dataclass(frozen=True, slots=True)
class Product:
    """A product (IoTDA) is a device profile (ThingsBoard): it owns the provisioning settings."""

    id: str
    project_id: str
    name: str
    description: str
    provision_strategy: ProvisionStrategy
    provision_key: str | None
    provision_secret: str | None
    send_ack_on_validation_error: bool
    created_at: int
    allow_claiming: bool = True  # whether its devices may be claimed (ThingsBoard's claiming)


@dataclass(frozen=True, slots=True)
class MqttBasic:
    client_id: str | None
    user_name: str | None
    password: str | None


@dataclass(frozen=True, slots=True)
class Credentials:
    """Credentials as supplied by a device or an operator, in clear, before hashing.

    ``value`` is the access token (ACCESS_TOKEN), an :class:`MqttBasic`
    (MQTT_BASIC) or the trimmed Base64 certificate body (X509_CERTIFICATE).
    """

    type: CredentialsType
    value: str | MqttBasic | IotdaSecret


@dataclass(frozen=True, slots=True)
class IotdaSecret:
    """An IoTDA device's secret: looked up by the device id the CONNECT's user name carries."""

    device_id: str
    secret: str
    secure_access: bool = False  # over TLS only (AddDevice's auth_info.secure_access)


@dataclass(frozen=True, slots=True)
class StoredCredentials:
    """What storage keeps: lookup key and hashes, never a clear secret except ``pending``.

    ``pending`` is the clear value an operator set for a pre-provisioned device,
    kept only until that device's first successful provisioning.
    """

    type: CredentialsType
    lookup: str
    password_hash: str | None = None
    client_id: str | None = None
    user_name: str | None = None
    certificate: str | None = None
    pending: Credentials | None = None
    secret: str | None = None  # SECRET: the clear secret, which the HMAC check needs (sealed at rest)
    secure_access: bool = False  # SECRET: the device may connect over TLS only


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    project_id: str
    product_id: str
    name: str
    label: str | None = None
    gateway: bool = False
    created_at: int = 0
    gateway_id: str | None = None  # a sub-device's gateway: the last one to connect it
    customer: str | None = None  # who claimed the device (ThingsBoard's claiming); None: unclaimed
    node_id: str | None = None  # IoTDA's physical identifier (AddDevice), unique within the product


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """An authenticated device, as the front-ends carry it through a request or session."""

    device_id: str
    project_id: str
    product_id: str
    name: str
    # The product's switch: acknowledge a malformed payload on MQTT 3.1.1 instead of closing.
    send_ack_on_validation_error: bool = False
    # A gateway speaks for sub-devices (ThingsBoard's gateway API).
    gateway: bool = False


@dataclass(frozen=True, slots=True)
class Page:
    items: tuple[Any, ...]
    count: int
    marker: str | None = None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    project_id: str | None
    action: str
    outcome: str
    reason: str = ""
    device_id: str | None = None
    source: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CredentialsInfo:
    """What an operator may read back of a device's credentials: never a secret or a hash."""

    type: CredentialsType
    client_id: str | None = None
    user_name: str | None = None
    fingerprint: str | None = None  # the SHA-256 of the device certificate bound to it (IoTDA)
    secure_access: bool | None = None  # SECRET: over TLS only


@dataclass(frozen=True, slots=True)
class DeviceDetails:
    """A device as the management API shows it.

    ``provisioned`` is true once the device claimed its credentials through
    provisioning (ThingsBoard's ``provisionState`` server attribute).
    """

    device: Device
    credentials: CredentialsInfo | None
    provisioned: bool = False
    connectivity: Connectivity = Connectivity()


@dataclass(frozen=True, slots=True)
class DeviceChange:
    """A created or updated device, with the clear credentials this change set, if any.

    The clear credentials are shown to the operator once, in the answer to the
    change; storage keeps only hashes (and, for a device awaiting its first
    provisioning, the pending value).
    """

    details: DeviceDetails
    credentials: Credentials | None = None
