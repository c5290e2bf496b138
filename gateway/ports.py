"""What the core needs from storage, as structural types.

The composition root hands implementations from ``storage`` to the core; tests
may hand in-memory fakes. Methods raise only errors from :mod:`fleetgate.core.errors`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from fleetgate.core.certificate_model import BoundCertificate, DeviceCa, Registration, Template
from fleetgate.core.fleet import FleetPage, FleetQuery
from fleetgate.core.model import (
    AuditRecord,
    Device,
    DeviceDetails,
    DeviceIdentity,
    Page,
    Product,
    Project,
    StoredCredentials,
)
from fleetgate.core.ota_model import Assignment, DeviceOtaState, OtaPackage, OtaType, Report
from fleetgate.core.presence_model import DeviceStatus, PresenceBatch
from fleetgate.core.provisioning_model import ClaimingData, ClaimTarget
from fleetgate.core.rpc_calls import PersistentCall, RpcStatus
from fleetgate.core.telemetry_model import (
    AttributeMessage,
    AttributeScope,
    AttributeValue,
    KeyValue,
    LatestTelemetry,
    TelemetryMessage,
    TimeseriesPoint,
    TimeseriesQuery,
)
from fleetgate.core.timeseries import BucketValue, SeriesQuery


class DeviceCreator(Protocol):
    async def create_device(
        self, device: Device, credentials: StoredCredentials, provisioned: AuditRecord | None = None
    ) -> None:
        """Insert the device with its credentials, in one transaction; NameTaken or
        CredentialsTaken on a clash, storing nothing. With ``provisioned``, the audit record
        of its provisioning, the device is created provisioned: in the same transaction its
        ``provisionState`` server attribute is set and the record appended, both at the
        device's ``created_at`` (its credentials then hold nothing pending)."""


class ProvisioningStore(DeviceCreator, Protocol):
    """A successful provisioning is one call and one transaction, its audit record
    included: when a fleet provisions at once, this is the hot path."""

    async def product_by_provision_key(self, key: str) -> Product | None: ...

    async def device_with_credentials(
        self, project_id: str, name: str
    ) -> tuple[Device, StoredCredentials | None] | None: ...

    async def mark_provisioned(self, device_id: str, ts: int, record: AuditRecord) -> bool:
        """Atomically set the ``provisionState`` server attribute, forget the pending clear
        credentials and append the audit record; False, storing nothing, when the device
        was already provisioned."""


class DeviceAuthStore(Protocol):
    async def authenticate(self, lookup: str) -> tuple[DeviceIdentity, StoredCredentials] | None: ...


class AttributeReader(Protocol):
    async def read_attributes(
        self, device_id: str, scope: AttributeScope, keys: Sequence[str] | None
    ) -> list[AttributeValue]: ...


class IngestWriter(Protocol):
    async def write(
        self, telemetry: Sequence[TelemetryMessage], attributes: Sequence[AttributeMessage]
    ) -> None:
        """Store one batch in one transaction, idempotently: writing the same batch twice
        leaves the same rows. Raise Unavailable when the database cannot be reached."""


class AuditLog(Protocol):
    async def record(self, record: AuditRecord) -> None: ...


class ProjectStore(Protocol):
    async def create_project(self, project: Project) -> None:
        """Conflict when the name is taken."""

    async def project(self, project_id: str) -> Project | None: ...

    async def add_token(self, project_id: str, token_hash: str, description: str, created_at: int) -> None: ...

    async def project_of_token(self, token_hash: str) -> str | None: ...

    async def add_access_key(self, access_key: str, project_id: str, secret_key: str, created_at: int) -> None: ...

    async def access_key(self, access_key: str) -> tuple[str, str] | None:
        """(project id, secret key) of an access key."""


class ProductStore(Protocol):
    async def create_product(self, product: Product) -> None:
        """Conflict when the name is taken in the project or the provision key anywhere."""

    async def product(self, project_id: str, product_id: str) -> Product | None: ...

    async def list_products(self, project_id: str, limit: int, marker: str, offset: int) -> Page: ...

    async def update_product(self, product: Product) -> None: ...

    async def delete_product(self, project_id: str, product_id: str) -> bool:
        """False when there is no such product; Conflict while it still has devices."""


class DeviceLookup(Protocol):
    async def device(self, project_id: str, device_id: str) -> DeviceDetails | None:
        """The device when it exists in this project; None for another project's device."""


class DeviceRegistry(DeviceLookup, DeviceCreator, Protocol):
    async def list_devices(
        self, project_id: str, limit: int, marker: str, offset: int, *, product_id: str | None, name: str | None,
        status: DeviceStatus | None = None, gateway_id: str | None = None, customer: str | None = None,
    ) -> Page:
        """Devices (DeviceDetails) newest first, with their connectivity as of now."""

    async def update_device(self, device: Device, credentials: StoredCredentials | None) -> bool:
        """Save name, label and gateway flag, and replace the credentials unless None, in one
        transaction; False when the device does not exist. A device already provisioned never
        keeps pending clear credentials."""

    async def delete_device(self, project_id: str, device_id: str) -> bool:
        """Delete the device with its credentials, attributes and telemetry; False when absent."""


class CredentialsCache(Protocol):
    def forget(self, device_id: str) -> None:
        """Drop whatever is cached for the device, so changed credentials apply at once."""


class AttributeStore(AttributeReader, Protocol):
    async def write_attributes(
        self, device_id: str, scope: AttributeScope, ts: int, values: Sequence[KeyValue]
    ) -> None: ...

    async def delete_attributes(self, device_id: str, scope: AttributeScope, keys: Sequence[str]) -> list[str]:
        """The keys that existed and were deleted."""


class TelemetryQueryStore(Protocol):
    async def latest(self, device_id: str, keys: Sequence[str] | None) -> list[LatestTelemetry]: ...

    async def history(self, device_id: str, query: TimeseriesQuery) -> list[TimeseriesPoint]: ...


class SeriesStore(Protocol):
    """Several keys of a device over time (fleetgate.core.timeseries), aggregated in the database."""

    async def raw_series(
        self, project_id: str, device_id: str, query: SeriesQuery
    ) -> dict[str, list[TimeseriesPoint]] | None:
        """Each key's values (at most ``query.limit``, in ``query.order``); keys without any absent.
        None when the project has no such device."""

    async def aggregated_series(self, project_id: str, device_id: str, query: SeriesQuery) -> list[BucketValue] | None:
        """Each key's non-empty buckets, by key then bucket index. None when the project has no such device."""


class LiveBus(Protocol):
    """Carries live-feed events (fleetgate.core.live) to every gateway process, this one included,
    in the order they were sent. Each event is a JSON object."""

    receiver: Callable[[dict[str, Any]], None] | None

    def send(self, event: dict[str, Any]) -> None:
        """Queue ``event`` without waiting: a bus that cannot keep up drops the oldest queued."""

    async def flush(self) -> None:
        """Until every event queued so far has been sent (or dropped)."""


class FleetStore(Protocol):
    async def fleet_latest(self, query: FleetQuery) -> FleetPage:
        """A page of the project's devices matching the query, with their latest values of its keys."""


class TemplateStore(Protocol):
    async def create_template(self, template: Template, max_per_project: int) -> None:
        """TemplateQuotaExceeded when the project already has ``max_per_project``; TemplateNameTaken."""

    async def template(self, project_id: str, template_id: str) -> Template | None: ...

    async def list_templates(
        self, project_id: str, limit: int, marker: str, offset: int, name: str | None
    ) -> Page: ...

    async def update_template(self, template: Template) -> bool: ...

    async def delete_template(self, project_id: str, template_id: str) -> bool:
        """False when absent; TemplateInUse while a device CA is bound to it."""


class DeviceCaStore(Protocol):
    async def create_ca(self, ca: DeviceCa, max_per_project: int) -> None:
        """CaQuotaExceeded, or CaTaken when this CA is registered already (in any project)."""

    async def ca(self, project_id: str, ca_id: str) -> DeviceCa | None: ...

    async def list_cas(self, project_id: str, limit: int, marker: str, offset: int) -> Page: ...

    async def update_ca(self, ca: DeviceCa) -> None:
        """NotFound when ``template_id`` names no template of the CA's project."""

    async def delete_ca(self, project_id: str, ca_id: str) -> bool: ...

    async def set_product_ca(self, ca: DeviceCa) -> None:
        """Replace the product's chain CA (``ca.product_id``); NotFound for no such product,
        CaTaken when the certificate is registered already."""

    async def delete_product_ca(self, project_id: str, product_id: str) -> bool: ...


class RegistrationStore(Protocol):
    """The certificate auto-registration path."""

    async def certificate(self, fingerprint: str) -> BoundCertificate | None: ...

    async def cas_with_subject(self, subject: bytes) -> list[DeviceCa]:
        """Every registered CA whose subject is exactly this (DER), verified or not."""

    async def template_by_id(self, template_id: str) -> Template | None: ...

    async def existing_device(self, project_id: str, device_id: str, product_id: str, node_id: str,
                              name: str) -> tuple[str, str | None, str] | None:
        """A device clashing with one to be created (same id, name, or product and node id):
        its id, the template that registered it (None if none did) and its product."""

    async def product_exists(self, project_id: str, product_id: str) -> bool: ...

    async def audit(self, record: AuditRecord) -> None: ...

    async def register(self, registration: Registration, record: AuditRecord) -> None:
        """In one transaction: create the device (or, when ``registration.rotate_device_id``
        is set, rebind that device), its registration row, the certificate binding, and the
        audit record. Conflict on any clash, storing nothing."""


class DownlinkBus(Protocol):
    """Carries downlink events to the gateway processes (this one included), so that a device
    is reached whichever process holds its connection. Each event is a JSON object naming its
    device (``"d"``). A broadcasting bus (PostgreSQL NOTIFY) brings every event to every process;
    a routing bus (NATS) brings an event only to the processes that subscribed to its device,
    stamps it with a reply address (``"o"``), and sends an event that carries an address
    (``"a"``, the ``"o"`` of the event it answers) to that process alone. An event naming many
    devices (``"ds"``, a bounded list, in place of ``"d"``) goes to every process."""

    async def publish(self, event: dict[str, object]) -> None:
        """Unavailable when the bus cannot take it now (it never waits long for that)."""

    def subscribe(self, device_id: str) -> None:
        """This process holds the device from now on: its events are to come here."""

    def unsubscribe(self, device_id: str) -> None:
        """This process no longer holds the device."""


class PresenceStore(Protocol):
    """Devices' connectivity, shared by every process on the database (fleetgate.core.presence)."""

    async def write_presence(self, batch: PresenceBatch) -> bool:
        """Write one batch and renew the process's lease, in one transaction; end the
        connections of processes whose lease has run out. False when the process's lease had
        lapsed and its connections were ended: the caller then writes them again."""

    async def end_process(self, process_id: str, now: int) -> None:
        """The process stops: its connections end now, and its lease with them."""


class SubDeviceStore(Protocol):
    async def subdevice(
        self, gateway: DeviceIdentity, name: str, product_name: str, max_per_gateway: int, now_ms: int
    ) -> DeviceIdentity:
        """The device named ``name`` in the gateway's project, its gateway now this one; created
        (with the product named ``product_name``, made if missing, provisioning disabled) when
        there is none. QuotaExceeded past ``max_per_gateway`` sub-devices."""
        ...


class ClaimStore(Protocol):
    """ThingsBoard's claiming (fleetgate.core.claiming): the ``claimingData`` server attribute and
    the device's ``customer``."""

    async def claim_target(self, project_id: str, *, device_id: str | None = None,
                           name: str | None = None) -> ClaimTarget | None:
        """The device of this project with this id (or name), None when there is none."""

    async def save_claim(self, device_id: str, claim: ClaimingData, ts: int) -> bool:
        """Write the ``claimingData`` server attribute at ``ts`` (replacing any); False, writing
        nothing, when the device is claimed already or no longer exists."""

    async def assign_customer(self, device_id: str, customer: str) -> bool:
        """In one transaction, give the unclaimed device its customer and delete its
        ``claimingData``; False, changing nothing, when it is claimed already."""

    async def release(self, project_id: str, device_id: str) -> bool:
        """Free the device of its customer (and any claim in progress); False when there is no such device."""


class PersistentRpcStore(Protocol):
    """ThingsBoard's persistent RPC (fleetgate.core.persistent_rpc). ``call`` and ``list_calls``
    first make every pending call of the device (QUEUED, SENT, DELIVERED) whose expiration time
    is at or before ``now`` EXPIRED."""

    async def add_call(self, call: PersistentCall) -> None: ...

    async def call(self, device_id: str, call_id: str, now: int) -> PersistentCall | None: ...

    async def list_calls(self, device_id: str, limit: int, marker: str, offset: int, now: int) -> Page:
        """The device's calls (PersistentCall), newest first."""

    async def delete_call(self, device_id: str, call_id: str) -> bool: ...

    async def take_next(self, device_id: str, now: int) -> PersistentCall | None:
        """The device's oldest QUEUED call not expired at ``now``, now SENT; None when there is none.
        Atomic: of processes asking at once, one gets it."""

    async def settle(
        self, call_id: str, status: RpcStatus, expected: frozenset[RpcStatus], now: int, *,
        response: object = None, delivered: bool = False,
    ) -> bool:
        """Set the call's status (and response) if it is one of ``expected``; ``delivered`` counts
        an attempt. False, changing nothing, when it is not (or was deleted)."""


class OtaPackageWriter(Protocol):
    async def append(self, seq: int, data: bytes) -> None:
        """Store block ``seq`` (BLOCK_BYTES long, the last one shorter)."""

    async def finish(self, package: OtaPackage) -> None:
        """Record the package's final size and checksum; the upload commits when the block ends."""


class OtaStore(Protocol):
    """PostgreSQL's side of OTA packages (storage.ota; the data in fleetgate.core.ota_model). An
    upload is one transaction: nothing of it is stored unless its block ends without an error."""

    def writing(self, package: OtaPackage) -> AbstractAsyncContextManager[OtaPackageWriter]:
        """Start storing ``package`` (PackageTaken at once if its type, title and version exist)."""

    async def package(self, project_id: str, package_id: str) -> OtaPackage | None: ...

    async def list_packages(
        self, project_id: str, kind: OtaType | None, limit: int, marker: str, offset: int
    ) -> Page: ...

    async def delete_package(self, project_id: str, package_id: str) -> bool:
        """False when there is none; PackageInUse while it is assigned."""

    async def read_blocks(self, package_id: str, first: int, last: int) -> list[bytes]:
        """Blocks ``first`` to ``last`` inclusive (those that exist)."""

    async def assign(
        self, project_id: str, target: str, target_id: str, package: OtaPackage, ts: int
    ) -> list[str]:
        """Assign ``package`` to a product or device (``target``: "product" or "device") and set its
        shared attributes on the devices that now get it (a product's devices without their own
        assignment), in one transaction; those devices' ids. NotFound for an unknown target."""

    async def unassign(
        self, project_id: str, target: str, target_id: str, kind: OtaType, ts: int
    ) -> tuple[list[str], OtaPackage | None]:
        """Remove the assignment. The devices whose package changed get the shared attributes of
        the package they now get (a device's product's), or lose them; their ids, and that package.
        NotFound when nothing of this type was assigned to the target."""

    async def assigned(self, device_id: str, kind: OtaType) -> Assignment | None: ...

    async def device_states(self, device_id: str) -> Sequence[DeviceOtaState]: ...

    async def save_report(self, device_id: str, kind: OtaType, report: Report) -> None:
        """Merge a device's report into its state, with the package assigned to it now."""

    async def state_counts(self, package_id: str) -> dict[str, int]:
        """Devices by reported state among those that reported on this package."""

    async def state_totals(self) -> dict[tuple[OtaType, str], int]:
        """Devices by type and reported state, whatever their package: what /metrics shows."""
