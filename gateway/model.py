"""Frozen dataclasses passed between the layers."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, NamedTuple


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


class ProvisionStatus(enum.StrEnum):
    SUCCESS = "SUCCESS"
    NOT_FOUND = "NOT_FOUND"
    FAILURE = "FAILURE"


class AttributeScope(enum.StrEnum):
    CLIENT = "CLIENT_SCOPE"
    SHARED = "SHARED_SCOPE"
    SERVER = "SERVER_SCOPE"


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
class ProvisionRequest:
    provision_key: str
    provision_secret: str
    device_name: str | None = None
    credentials_type: CredentialsType = CredentialsType.ACCESS_TOKEN
    token: str | None = None
    client_id: str | None = None
    username: str | None = None
    password: str | None = None
    certificate: str | None = None
    gateway: bool = False
    source: str = ""


@dataclass(frozen=True, slots=True)
class ProvisionResult:
    status: ProvisionStatus
    credentials: Credentials | None = None
    device: Device | None = None
    reason: str = ""
    # A short, fixed word for the outcome: metrics label it by this, never by ``reason``
    # (free text). Derived from the outcome, so equality ignores it.
    code: str = field(default="", compare=False)


class ValueType(enum.IntEnum):
    BOOLEAN = 1
    LONG = 2
    DOUBLE = 3
    STRING = 4
    JSON = 5


class KeyValue(NamedTuple):
    """One typed data point. A named tuple, unlike the other types here: one is made for
    every data point the gateway takes in, and a tuple is made in half the time of a
    frozen dataclass (whose __init__ sets each field through object.__setattr__)."""

    key: str
    type: ValueType
    value: Any


@dataclass(frozen=True, slots=True)
class Reading:
    """One timestamped set of key-values: ThingsBoard's ``{"ts":…, "values":{…}}``."""

    ts: int
    values: tuple[KeyValue, ...]


@dataclass(frozen=True, slots=True)
class TelemetryMessage:
    device_id: str
    readings: tuple[Reading, ...]
    rows: int = field(init=False)

    def __post_init__(self) -> None:
        # Counted once: the queue, the batcher and the metrics all ask.
        rows = 0
        for reading in self.readings:
            rows += len(reading.values)
        object.__setattr__(self, "rows", rows)


@dataclass(frozen=True, slots=True)
class AttributeMessage:
    device_id: str
    scope: AttributeScope
    ts: int
    values: tuple[KeyValue, ...]

    @property
    def rows(self) -> int:
        return len(self.values)


@dataclass(frozen=True, slots=True)
class AttributeValue:
    key: str
    value: Any
    last_update_ts: int


@dataclass(frozen=True, slots=True)
class TimeseriesPoint:
    ts: int
    value: Any


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


class SortOrder(enum.StrEnum):
    ASC = "ASC"
    DESC = "DESC"


@dataclass(frozen=True, slots=True)
class CredentialsInfo:
    """What an operator may read back of a device's credentials: never a secret or a hash."""

    type: CredentialsType
    client_id: str | None = None
    user_name: str | None = None
    fingerprint: str | None = None  # the SHA-256 of the device certificate bound to it (IoTDA)
    secure_access: bool | None = None  # SECRET: over TLS only


class DeviceStatus(enum.StrEnum):
    ONLINE = "ONLINE"
    OFFLINE = "OFFLINE"


@dataclass(frozen=True, slots=True)
class Connectivity:
    """A device's status as read (fleetgate.core.presence), with its last times in Unix
    milliseconds; None: never."""

    status: DeviceStatus = DeviceStatus.OFFLINE
    last_online_time: int | None = None
    last_offline_time: int | None = None
    last_activity_time: int | None = None


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


@dataclass(frozen=True, slots=True)
class LatestTelemetry:
    key: str
    ts: int
    value: Any


@dataclass(frozen=True, slots=True)
class TimeseriesQuery:
    """A key's values with ``start_ts <= ts <= end_ts``, at most ``limit``, in ``order`` of ts."""

    key: str
    start_ts: int
    end_ts: int
    limit: int
    order: SortOrder = SortOrder.DESC


@dataclass(frozen=True, slots=True)
class Template:
    """A provisioning template (IoTDA). ``body`` is the template body as the operator wrote it;
    ``allow_rotation`` (this gateway's extension) lets a device this template created bind a
    new certificate instead of being refused as existing."""

    id: str
    project_id: str
    name: str
    description: str
    body: dict[str, Any]
    created_at: int
    updated_at: int
    allow_rotation: bool = False


@dataclass(frozen=True, slots=True)
class DeviceCa:
    """A device CA certificate (IoTDA's certificates resource). ``verified`` once its key's
    possession was proven with ``verify_code``; a device chaining to it is registered only
    when it is verified, ``provision_enable`` and bound to a template."""

    id: str
    project_id: str
    pem: str
    fingerprint: str
    subject: bytes
    cn_name: str
    owner: str
    verified: bool
    verify_code: str
    provision_enable: bool
    template_id: str | None
    not_before: int
    not_after: int
    created_at: int
    crl_pem: str | None = None
    product_id: str | None = None
    cn_pattern: str | None = None
    allow_create: bool = True


@dataclass(frozen=True, slots=True)
class BoundCertificate:
    """A device certificate bound to a device by its SHA-256 fingerprint."""

    fingerprint: str
    device: DeviceIdentity
    enabled: bool
    template_id: str | None
    ca_id: str | None
    crl_pem: str | None = None


@dataclass(frozen=True, slots=True)
class Registration:
    """A device certificate's first connection, decided: the device to create (or, with
    ``rotate``, the existing device ``device.id`` to rebind) and what binds it."""

    device: Device
    node_id: str
    template_id: str | None
    ca_id: str
    tags: tuple[tuple[str, str], ...]
    policy_ids: tuple[str, ...]
    fingerprint: str
    common_name: str
    not_after: int
    rotate: bool = False


@dataclass(frozen=True, slots=True)
class PresenceBatch:
    """What one process learnt of its devices' connectivity since its last write
    (fleetgate.core.presence); activity is as of ``now``, to within one write interval."""

    process_id: str
    now: int
    lease_until: int  # the process's own lease: its connections count until then
    opened: tuple[tuple[str, int], ...] = ()  # connections opened here: (device, since)
    seen: tuple[str, ...] = ()  # devices active on a connection held here
    requests: tuple[str, ...] = ()  # devices active by request: online until now + inactivity timeout
    online_until: int = 0  # the requests' lease
    released: tuple[str, ...] = ()  # connections closed with the device still online by its last request
    closed: tuple[tuple[str, int], ...] = ()  # connections closed, the device offline: (device, when)


@dataclass(frozen=True, slots=True)
class ClaimingData:
    """ThingsBoard's ``claimingData`` server attribute: a device's claim in progress, its secret
    kept only as a hash (fleetgate.core.credentials.hash_password), until ``expiration_time``."""

    secret_hash: str
    expiration_time: int


@dataclass(frozen=True, slots=True)
class ClaimTarget:
    """What deciding a claim needs of a device: who holds it, whether its product allows
    claiming, and its claim in progress, if any."""

    device_id: str
    project_id: str
    name: str
    customer: str | None
    allow_claiming: bool
    claim: ClaimingData | None
