"""In-memory fakes of the core's storage and bus ports (fleetgate.core.ports), one per port, for unit
tests with no database. Each keeps the database's rules a caller can observe (uniqueness,
one transaction storing all or nothing) and exposes its state for the tests to read."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any

from fleetgate.core import credentials
from fleetgate.core.certificate_model import BoundCertificate, DeviceCa, Registration, Template
from fleetgate.core.errors import Conflict, CredentialsTaken, NameTaken, QuotaExceeded
from fleetgate.core.model import (
    AuditRecord,
    CredentialsType,
    Device,
    DeviceDetails,
    DeviceIdentity,
    Page,
    Product,
    StoredCredentials,
)
from fleetgate.core.presence_model import Connectivity, DeviceStatus, PresenceBatch
from fleetgate.core.provisioning_model import ClaimingData, ClaimTarget
from fleetgate.core.rpc_calls import PersistentCall, RpcStatus
from fleetgate.core.telemetry_model import (
    AttributeMessage,
    AttributeScope,
    AttributeValue,
    KeyValue,
    TelemetryMessage,
)


class FakeAuditLog:
    """AuditLog."""

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []
        self.separate_calls = 0

    async def record(self, record: AuditRecord) -> None:
        self.separate_calls += 1
        self.records.append(record)


class FakeProvisioningStore:
    """ProvisioningStore, with the database's uniqueness rules; the records it writes with a
    device land in the same audit log as the others."""

    def __init__(self, audit: FakeAuditLog) -> None:
        self.audit = audit
        self.products: dict[str, Product] = {}
        self.devices: dict[str, Device] = {}
        self.credentials: dict[str, StoredCredentials] = {}
        self.provisioned: dict[str, int] = {}
        self.product_lookups = 0

    def add_product(self, product: Product) -> Product:
        self.products[product.id] = product
        return product

    async def product_by_provision_key(self, key: str) -> Product | None:
        self.product_lookups += 1
        return next((p for p in self.products.values() if p.provision_key == key), None)

    async def create_device(
        self, device: Device, credentials: StoredCredentials, provisioned: AuditRecord | None = None
    ) -> None:
        if any(d.project_id == device.project_id and d.name == device.name for d in self.devices.values()):
            raise NameTaken()
        if any(c.lookup == credentials.lookup for c in self.credentials.values()):
            raise CredentialsTaken()
        self.devices[device.id] = device
        self.credentials[device.id] = credentials
        if provisioned is not None:
            self.credentials[device.id] = dataclasses.replace(credentials, pending=None)
            self.provisioned[device.id] = device.created_at
            self.audit.records.append(provisioned)

    async def device_with_credentials(
        self, project_id: str, name: str
    ) -> tuple[Device, StoredCredentials | None] | None:
        device = next((d for d in self.devices.values() if d.project_id == project_id and d.name == name), None)
        return None if device is None else (device, self.credentials.get(device.id))

    async def mark_provisioned(self, device_id: str, ts: int, record: AuditRecord) -> bool:
        if device_id in self.provisioned:
            return False
        self.provisioned[device_id] = ts
        self.credentials[device_id] = dataclasses.replace(self.credentials[device_id], pending=None)
        self.audit.records.append(record)
        return True

    def device_named(self, name: str) -> Device:
        (device,) = [d for d in self.devices.values() if d.name == name]
        return device


class FakeProductStore:
    """ProductStore, over the provisioning fake's products (one table in the database too)."""

    def __init__(self, store: FakeProvisioningStore) -> None:
        self._products = store.products

    async def create_product(self, product: Product) -> None:
        self._products[product.id] = product

    async def product(self, project_id: str, product_id: str) -> Product | None:
        return self._products.get(product_id)

    async def update_product(self, product: Product) -> None:
        self._products[product.id] = product

    async def delete_product(self, project_id: str, product_id: str) -> bool:
        return self._products.pop(product_id, None) is not None


@dataclasses.dataclass
class _Binding:
    fingerprint: str
    device_id: str
    ca_id: str | None
    template_id: str | None
    enabled: bool = True


class FakeRegistrationStore:
    """RegistrationStore: device CAs, templates, products, devices with their registrations and
    certificate bindings, and the audit trail. ``register`` stores all or nothing and raises
    Conflict where the database's unique constraints would."""

    def __init__(self) -> None:
        self.cas: dict[str, DeviceCa] = {}
        self.templates: dict[str, Template] = {}
        self.products: set[tuple[str, str]] = set()  # (project id, product id)
        self.devices: dict[str, Device] = {}
        self.registrations: dict[str, Registration] = {}  # by device id
        self.bindings: dict[str, _Binding] = {}  # by certificate fingerprint
        self.audit_records: list[AuditRecord] = []
        self.registered: list[Registration] = []  # every successful register(), in order
        self.register_calls = 0

    def add_ca(self, ca: DeviceCa) -> DeviceCa:
        self.cas[ca.id] = ca
        return ca

    def add_template(self, template: Template) -> Template:
        self.templates[template.id] = template
        return template

    def add_product(self, project_id: str, product_id: str) -> None:
        self.products.add((project_id, product_id))

    def add_device(self, device: Device) -> Device:
        """A device created otherwise than by auto-registration (the management API)."""
        self.devices[device.id] = device
        return device

    def disable_certificates(self, device_id: str) -> None:
        for binding in self.bindings.values():
            if binding.device_id == device_id:
                binding.enabled = False

    async def certificate(self, fingerprint: str) -> BoundCertificate | None:
        await asyncio.sleep(0)  # a query takes a turn of the loop: first connections interleave here
        binding = self.bindings.get(fingerprint)
        if binding is None:
            return None
        d = self.devices[binding.device_id]
        ca = self.cas.get(binding.ca_id) if binding.ca_id else None
        return BoundCertificate(fingerprint, DeviceIdentity(d.id, d.project_id, d.product_id, d.name),
                                binding.enabled, binding.template_id, binding.ca_id, ca.crl_pem if ca else None)

    async def cas_with_subject(self, subject: bytes) -> list[DeviceCa]:
        return [ca for ca in self.cas.values() if ca.subject == subject]

    async def template_by_id(self, template_id: str) -> Template | None:
        return self.templates.get(template_id)

    async def existing_device(self, project_id: str, device_id: str, product_id: str, node_id: str,
                              name: str) -> tuple[str, str | None, str] | None:
        def found(d: Device) -> tuple[str, str | None, str]:
            registration = self.registrations.get(d.id)
            return d.id, registration.template_id if registration else None, d.product_id

        if device_id in self.devices:
            return found(self.devices[device_id])
        for d in self.devices.values():
            if d.project_id == project_id and d.name == name:
                return found(d)
        for r in self.registrations.values():
            d = r.device
            if d.project_id == project_id and d.product_id == product_id and r.node_id == node_id:
                return found(self.devices[d.id])
        return None

    async def product_exists(self, project_id: str, product_id: str) -> bool:
        return (project_id, product_id) in self.products

    async def audit(self, record: AuditRecord) -> None:
        self.audit_records.append(record)

    async def register(self, registration: Registration, record: AuditRecord) -> None:
        self.register_calls += 1
        await asyncio.sleep(0)  # as the transaction's round trip
        d = registration.device
        if registration.fingerprint in self.bindings:
            raise Conflict("the certificate is bound already")
        if registration.rotate:
            if d.id not in self.devices:
                raise Conflict("no device to rotate")
            self.disable_certificates(d.id)
        else:
            if d.id in self.devices or any(
                o.project_id == d.project_id and o.name == d.name for o in self.devices.values()
            ) or any(
                r.device.project_id == d.project_id and r.device.product_id == d.product_id
                and r.node_id == registration.node_id for r in self.registrations.values()
            ):
                raise Conflict("the device exists")
            self.devices[d.id] = d
        # As the database's ON CONFLICT: a rotated device keeps its registration, its CA follows the certificate.
        kept = self.registrations.get(d.id)
        self.registrations[d.id] = dataclasses.replace(kept, ca_id=registration.ca_id) if kept else registration
        self.bindings[registration.fingerprint] = _Binding(registration.fingerprint, d.id, registration.ca_id,
                                                           registration.template_id)
        self.audit_records.append(record)
        self.registered.append(registration)


class SetClock:
    """Clock: the time the test sets, in Unix milliseconds."""

    def __init__(self, now_ms: int) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now


class MemoryWriter:
    """IngestWriter: stores batches; can be held closed, or made to fail a number of times."""

    def __init__(self) -> None:
        self.batches: list[list[TelemetryMessage | AttributeMessage]] = []
        self.open = asyncio.Event()
        self.open.set()
        self.failures: list[Exception] = []
        self.calls = 0

    async def write(self, telemetry: Sequence[TelemetryMessage], attributes: Sequence[AttributeMessage]) -> None:
        self.calls += 1
        await self.open.wait()
        if self.failures:
            raise self.failures.pop(0)
        self.batches.append([*telemetry, *attributes])

    @property
    def rows(self) -> int:
        return sum(m.rows for batch in self.batches for m in batch)


class RecordingReceipt:
    """Receipt: a future the test awaits."""

    def __init__(self) -> None:
        self.done = asyncio.get_running_loop().create_future()

    def stored(self) -> None:
        self.done.set_result(None)

    def failed(self, error: BaseException) -> None:
        self.done.set_exception(error)


class OneCertificateDevice:
    """DeviceAuthStore holding one device with X509_CERTIFICATE credentials (this certificate)."""

    def __init__(self, der: bytes) -> None:
        self._lookup = credentials.certificate_lookup_from_der(der)
        self.device = DeviceIdentity("d1", "p1", "prod1", "meter")

    async def authenticate(self, lookup: str) -> tuple[DeviceIdentity, StoredCredentials] | None:
        if lookup != self._lookup:
            return None
        return self.device, StoredCredentials(CredentialsType.X509_CERTIFICATE, lookup)


class TokenDevices:
    """DeviceAuthStore holding ACCESS_TOKEN devices by their tokens."""

    def __init__(self, devices: dict[str, DeviceIdentity]) -> None:
        self._by_lookup = {credentials.token_lookup(token): device for token, device in devices.items()}
        self.lookups = 0

    async def authenticate(self, lookup: str) -> tuple[DeviceIdentity, StoredCredentials] | None:
        self.lookups += 1
        device = self._by_lookup.get(lookup)
        return None if device is None else (device, StoredCredentials(CredentialsType.ACCESS_TOKEN, lookup))


class StoredAttributes:
    """AttributeReader over attributes the test sets, by scope."""

    def __init__(self, values: dict[AttributeScope, list[KeyValue]] | None = None) -> None:
        self.values = values or {}

    async def read_attributes(
        self, device_id: str, scope: AttributeScope, keys: Sequence[str] | None
    ) -> list[AttributeValue]:
        return [AttributeValue(kv.key, kv.value, 0) for kv in self.values.get(scope, [])
                if keys is None or kv.key in keys]


class FakeSubDeviceStore:
    """SubDeviceStore: devices by (project, name), each with the gateway that last connected it."""

    def __init__(self) -> None:
        self.devices: dict[tuple[str, str], DeviceIdentity] = {}
        self.gateway_of: dict[str, str] = {}
        self.products: set[tuple[str, str]] = set()
        self.calls = 0
        self.open = asyncio.Event()
        self.open.set()

    async def subdevice(
        self, gateway: DeviceIdentity, name: str, product_name: str, max_per_gateway: int, now_ms: int
    ) -> DeviceIdentity:
        self.calls += 1
        await self.open.wait()
        key = (gateway.project_id, name)
        device = self.devices.get(key)
        if device is None:
            if sum(1 for g in self.gateway_of.values() if g == gateway.device_id) >= max_per_gateway:
                raise QuotaExceeded(f"The gateway already has {max_per_gateway} sub-devices")
            self.products.add((gateway.project_id, product_name))
            device = self.devices[key] = DeviceIdentity(f"sub-{len(self.devices) + 1}", gateway.project_id,
                                                        f"product-{product_name}", name)
        self.gateway_of[device.device_id] = gateway.device_id
        return device


class MemoryPresence:
    """PresenceStore with the rules of storage/presence.py, and the registry's reading of
    them (:meth:`connectivity`). Writes can be made to fail a number of times."""

    def __init__(self) -> None:
        self.batches: list[PresenceBatch] = []
        self.failures: list[Exception] = []
        self.leases: dict[str, int] = {}  # process -> lease until
        self.connections: dict[tuple[str, str], int] = {}  # (device, process) -> since
        self.rows: dict[str, dict[str, int | None]] = {}  # device -> presence column -> value

    def _row(self, device_id: str) -> dict[str, int | None]:
        return self.rows.setdefault(device_id, dict.fromkeys(
            ("online_until", "last_online_time", "last_offline_time", "last_activity_time")))

    def _leased(self, device_id: str, at: int) -> bool:
        until = self._row(device_id)["online_until"]
        return until is not None and until > at

    def _live(self, device_id: str, at: int, other_than: str = "") -> bool:
        return any(d == device_id and p != other_than and self.leases.get(p, 0) > at for d, p in self.connections)

    def _went_offline(self, device_id: str, at: int | None) -> None:
        row = self._row(device_id)
        row["last_offline_time"] = max((t for t in (row["last_offline_time"], at) if t is not None), default=None)

    async def write_presence(self, batch: PresenceBatch) -> bool:
        if self.failures:
            raise self.failures.pop(0)
        b, me = batch, batch.process_id
        self.batches.append(b)
        renewed = me in self.leases
        self.leases[me] = b.lease_until
        for process, until in [(p, u) for p, u in self.leases.items() if u <= b.now]:
            del self.leases[process]
            for device_id, _ in [key for key in self.connections if key[1] == process]:
                del self.connections[(device_id, process)]
                if not self._leased(device_id, until) and not self._live(device_id, b.now):
                    self._went_offline(device_id, until)
        for device_id, since in b.opened:
            if (device_id, me) not in self.connections:
                if not self._leased(device_id, since) and not self._live(device_id, since):
                    self._lapsed(device_id, since)
                    self._row(device_id)["last_online_time"] = since
                self.connections[(device_id, me)] = since
        for device_id in (*b.seen, *b.requests):
            row = self._row(device_id)
            row["last_activity_time"] = max(row["last_activity_time"] or 0, b.now)
        for device_id in b.requests:
            row = self._row(device_id)
            if not self._leased(device_id, b.now) and not self._live(device_id, b.now):
                row["last_online_time"] = b.now
            self._lapsed(device_id, b.now)
            row["online_until"] = max(row["online_until"] or 0, b.online_until)
        for device_id in b.released:
            self.connections.pop((device_id, me), None)
        for device_id, at in b.closed:
            if self.connections.pop((device_id, me), None) is not None and not self._live(device_id, at, me):
                row = self._row(device_id)
                row["last_offline_time"] = at
                if self._leased(device_id, at):
                    row["online_until"] = at
        return renewed

    def _lapsed(self, device_id: str, at: int) -> None:
        until = self._row(device_id)["online_until"]
        if until is not None and until <= at:
            self._went_offline(device_id, until)

    async def end_process(self, process_id: str, now: int) -> None:
        self.leases.pop(process_id, None)
        for device_id, _ in [key for key in self.connections if key[1] == process_id]:
            del self.connections[(device_id, process_id)]
            if not self._leased(device_id, now) and not self._live(device_id, now, process_id):
                self._row(device_id)["last_offline_time"] = now

    def connectivity(self, device_id: str, now: int) -> Connectivity:
        row = self._row(device_id)
        held = [self.leases[p] for d, p in self.connections if d == device_id and p in self.leases]
        online = self._leased(device_id, now) or any(until > now for until in held)
        until = row["online_until"]
        offline = [t for t in (row["last_offline_time"], until if until is not None and until <= now else None,
                               *(u for u in held if u <= now)) if t is not None]
        return Connectivity(DeviceStatus.ONLINE if online else DeviceStatus.OFFLINE, row["last_online_time"],
                            max(offline, default=None), row["last_activity_time"])


@dataclasses.dataclass
class _Claimable:
    device: DeviceIdentity
    allow_claiming: bool = True
    customer: str | None = None
    claim: ClaimingData | None = None
    claim_ts: int | None = None


class FakeClaimStore:
    """ClaimStore: devices with their product's switch, customer and claimingData."""

    def __init__(self) -> None:
        self.devices: dict[str, _Claimable] = {}

    def add(self, device: DeviceIdentity, *, allow_claiming: bool = True) -> _Claimable:
        entry = self.devices[device.device_id] = _Claimable(device, allow_claiming)
        return entry

    async def claim_target(self, project_id: str, *, device_id: str | None = None,
                           name: str | None = None) -> ClaimTarget | None:
        for e in self.devices.values():
            if e.device.project_id == project_id and (e.device.device_id == device_id or e.device.name == name):
                return ClaimTarget(e.device.device_id, project_id, e.device.name, e.customer, e.allow_claiming,
                                   e.claim)
        return None

    async def save_claim(self, device_id: str, claim: ClaimingData, ts: int) -> bool:
        entry = self.devices.get(device_id)
        if entry is None or entry.customer is not None:
            return False
        entry.claim, entry.claim_ts = claim, ts
        return True

    async def assign_customer(self, device_id: str, customer: str) -> bool:
        entry = self.devices[device_id]
        if entry.customer is not None:
            return False
        entry.customer, entry.claim = customer, None
        return True

    async def release(self, project_id: str, device_id: str) -> bool:
        entry = self.devices.get(device_id)
        if entry is None or entry.device.project_id != project_id:
            return False
        entry.customer, entry.claim = None, None
        return True


class MemoryRpcCalls:
    """PersistentRpcStore (persistent RPC calls) and the DeviceLookup it is asked through."""

    def __init__(self) -> None:
        self.calls: dict[str, PersistentCall] = {}
        self.devices: dict[str, str] = {}  # device id -> project id

    def add_device(self, project_id: str, device_id: str) -> None:
        self.devices[device_id] = project_id

    async def device(self, project_id: str, device_id: str) -> DeviceDetails | None:
        if self.devices.get(device_id) != project_id:
            return None
        return DeviceDetails(Device(device_id, project_id, "product", device_id), None)

    def _expire(self, device_id: str, now: int) -> None:
        for call in list(self.calls.values()):
            if call.device_id == device_id and call.status.pending and call.expiration_time <= now:
                self.calls[call.id] = dataclasses.replace(call, status=RpcStatus.EXPIRED)

    async def add_call(self, call: PersistentCall) -> None:
        self.calls[call.id] = call

    async def call(self, device_id: str, call_id: str, now: int) -> PersistentCall | None:
        self._expire(device_id, now)
        call = self.calls.get(call_id)
        return call if call is not None and call.device_id == device_id else None

    async def list_calls(self, device_id: str, limit: int, marker: str, offset: int, now: int) -> Page:
        self._expire(device_id, now)
        mine = sorted((c for c in self.calls.values() if c.device_id == device_id and c.id < marker),
                      key=lambda c: c.id, reverse=True)
        items = tuple(mine[offset:offset + limit])
        return Page(items, len(mine), items[-1].id if items else None)

    async def delete_call(self, device_id: str, call_id: str) -> bool:
        call = self.calls.get(call_id)
        if call is None or call.device_id != device_id:
            return False
        del self.calls[call_id]
        return True

    async def take_next(self, device_id: str, now: int) -> PersistentCall | None:
        queued = sorted((c for c in self.calls.values() if c.device_id == device_id
                         and c.status is RpcStatus.QUEUED and c.expiration_time > now), key=lambda c: c.id)
        if not queued:
            return None
        taken = self.calls[queued[0].id] = dataclasses.replace(queued[0], status=RpcStatus.SENT)
        return taken

    async def settle(
        self, call_id: str, status: RpcStatus, expected: frozenset[RpcStatus], now: int, *,
        response: object = None, delivered: bool = False,
    ) -> bool:
        call = self.calls.get(call_id)
        if call is None or call.status not in expected:
            return False
        self.calls[call_id] = dataclasses.replace(
            call, status=status, response=response, attempts=call.attempts + (1 if delivered else 0))
        return True


class QueueChannel:
    """A device's downlink channel that queues the RPC requests pushed to it (attributes ignored)."""

    def __init__(self) -> None:
        self.rpcs: asyncio.Queue[tuple[int, str, Any]] = asyncio.Queue()

    def push_attributes(self, update: dict[str, Any]) -> None:
        pass

    def push_rpc(self, request_id: int, method: str, params: Any) -> None:
        self.rpcs.put_nowait((request_id, method, params))


class LoopbackBus:
    """Every event to this process's hub at once, as PostgreSQL would bring it back."""

    def __init__(self) -> None:
        self.receiver: Any = None
        self.sent: list[dict[str, Any]] = []

    def send(self, event: dict[str, Any]) -> None:
        self.sent.append(event)
        if self.receiver is not None:
            self.receiver(event)

    async def flush(self) -> None:
        pass
