"""The gateway API's core: sub-devices found or created by name, one acknowledgement for a whole
gateway message, and the downlink reaching a sub-device through its gateway's connection.
In-memory fakes of the storage ports; no database, no sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fleetgate.core.auth import DeviceAuthenticator
from fleetgate.core.codec import PayloadLimits
from fleetgate.core.device_channel import SessionLimits
from fleetgate.core.device_service import DeviceService
from fleetgate.core.downlink import Downlink
from fleetgate.core.errors import InvalidInput, QuotaExceeded
from fleetgate.core.ingest import IngestPipeline, IngestSettings
from fleetgate.core.model import DeviceIdentity
from fleetgate.core.operations import NO_PARAMS, Operation
from fleetgate.core.provisioning import ProvisioningService
from fleetgate.core.subdevices import SubDeviceLimits, SubDevices
from fleetgate.core.telemetry_model import KeyValue, TelemetryMessage, ValueType
from tests.fakes import (
    FakeAuditLog, FakeProvisioningStore, FakeSubDeviceStore, MemoryWriter, RecordingReceipt, SetClock, TokenDevices,
)

GATEWAY = DeviceIdentity("gw1", "p1", "prod-gw", "gateway", gateway=True)
PLAIN = DeviceIdentity("d1", "p1", "prod1", "meter")


class GatewayConnection:
    """A front-end's gateway connection, as the core sees it (a GatewayChannel)."""

    def __init__(self) -> None:
        self.pushed: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

    def push_attributes(self, update: dict[str, Any]) -> None:
        self.pushed.put_nowait(("attributes", update))

    def push_rpc(self, request_id: int, method: str, params: Any) -> None:
        self.pushed.put_nowait(("rpc", request_id, method, params))

    def push_subdevice_attributes(self, device: str, update: dict[str, Any]) -> None:
        self.pushed.put_nowait(("sub attributes", device, update))

    def push_subdevice_rpc(self, device: str, request_id: int, method: str, params: Any) -> None:
        self.pushed.put_nowait(("sub rpc", device, request_id, method, params))


@pytest.fixture
async def writer() -> MemoryWriter:
    return MemoryWriter()


@pytest.fixture
async def pipeline(writer: MemoryWriter) -> AsyncIterator[IngestPipeline]:
    pipeline = IngestPipeline(writer, IngestSettings(batch_max_age=0.001))
    pipeline.start()
    yield pipeline
    await pipeline.stop(1.0)


@pytest.fixture
def store() -> FakeSubDeviceStore:
    return FakeSubDeviceStore()


@pytest.fixture
def downlink() -> Downlink:
    return Downlink(SessionLimits(1024, 10))


@pytest.fixture
async def service(pipeline: IngestPipeline, store: FakeSubDeviceStore, downlink: Downlink) -> AsyncIterator[DeviceService]:
    audit = FakeAuditLog()
    service = DeviceService(
        auth=DeviceAuthenticator(TokenDevices({}), cache_seconds=0),
        provisioning=ProvisioningService(FakeProvisioningStore(audit), audit), pipeline=pipeline,
        attributes=None, downlink=downlink, limits=PayloadLimits(64, 64, 10),  # type: ignore[arg-type]
        ack_stored=True, subdevices=SubDevices(store, SubDeviceLimits(max_per_gateway=3, max_per_message=4)),
        clock=SetClock(1_700_000_000_000),
    )
    yield service
    await service.close()


def rows_of(writer: MemoryWriter) -> dict[str, list[KeyValue]]:
    found: dict[str, list[KeyValue]] = {}
    for batch in writer.batches:
        for message in batch:
            assert isinstance(message, TelemetryMessage)
            found.setdefault(message.device_id, []).extend(kv for r in message.readings for kv in r.values)
    return found


async def test_one_acknowledgement_once_every_sub_devices_rows_are_stored(
    service: DeviceService, store: FakeSubDeviceStore, writer: MemoryWriter
) -> None:
    receipt = RecordingReceipt()
    body = b'{"A":[{"ts":1767225600000,"values":{"t":1}}],"B":{"h":2.5}}'
    assert service.gateway_telemetry(GATEWAY, body, NO_PARAMS, "test", receipt) is None
    await receipt.done
    assert rows_of(writer) == {"sub-1": [KeyValue("t", ValueType.LONG, 1)], "sub-2": [KeyValue("h", ValueType.DOUBLE, 2.5)]}
    assert store.products == {("p1", "default")} and store.gateway_of == {"sub-1": "gw1", "sub-2": "gw1"}
    # Known now: the next message costs no lookup.
    await service.gateway_telemetry(GATEWAY, b'{"A":{"t":2}}', NO_PARAMS, "test")
    assert store.calls == 2


async def test_a_malformed_message_is_refused_before_anything_is_done(
    service: DeviceService, store: FakeSubDeviceStore, writer: MemoryWriter
) -> None:
    for body in (b'{"A":{"t":1},"B":[1]}', b'{"A":{"t":1},"B":{"k":{"a":1}},"C":{}, "D":{}, "E":{}}', b"{"):
        with pytest.raises(InvalidInput):  # malformed, or too many devices
            service.gateway_telemetry(GATEWAY, body, NO_PARAMS, "test", RecordingReceipt())
    assert store.calls == 0 and not writer.batches


async def test_concurrent_messages_naming_a_new_device_share_one_lookup(
    service: DeviceService, store: FakeSubDeviceStore
) -> None:
    store.open.clear()
    receipts = [RecordingReceipt() for _ in range(3)]
    for receipt in receipts:
        service.gateway_telemetry(GATEWAY, b'{"A":{"t":1}}', NO_PARAMS, "test", receipt)
    store.open.set()
    await asyncio.gather(*(r.done for r in receipts))
    assert store.calls == 1


async def test_the_sub_device_limit_refuses_the_message(service: DeviceService) -> None:
    receipt = RecordingReceipt()
    service.gateway_telemetry(GATEWAY, b'{"A":{"t":1},"B":{"t":1},"C":{"t":1},"D":{"t":1}}', NO_PARAMS, "t", receipt)
    with pytest.raises(QuotaExceeded):
        await receipt.done


async def test_the_downlink_reaches_a_sub_device_through_its_gateway(
    service: DeviceService, downlink: Downlink
) -> None:
    connection = GatewayConnection()
    service.attach(GATEWAY, connection)
    receipt = RecordingReceipt()
    service.gateway_connect(GATEWAY, b'{"device":"A","type":"relay"}', NO_PARAMS, "test", receipt)
    await receipt.done
    assert downlink.connected("sub-1")
    await downlink.attributes_changed("sub-1", [KeyValue("interval", ValueType.LONG, 30)], [])
    assert await connection.pushed.get() == ("sub attributes", "A", {"interval": 30})
    call = asyncio.ensure_future(downlink.call("sub-1", "reboot", {"now": True}, timeout=5, oneway=False))
    kind, name, request_id, method, params = await connection.pushed.get()
    assert (kind, name, method, params) == ("sub rpc", "A", "reboot", {"now": True})
    service.gateway_rpc_reply(GATEWAY, b'{"device":"A","id":%d,"data":{"ok":1}}' % request_id, NO_PARAMS)
    assert await call == {"ok": 1}

    service.gateway_disconnect(GATEWAY, b'{"device":"A"}', NO_PARAMS)
    assert not downlink.connected("sub-1")
    again = RecordingReceipt()
    service.gateway_connect(GATEWAY, b'{"device":"A"}', NO_PARAMS, "test", again)
    await again.done
    assert downlink.connected("sub-1")
    service.detach(GATEWAY, connection)  # the gateway's connection closed: its sub-devices went with it
    assert not downlink.connected("sub-1") and not downlink.connected(GATEWAY.device_id)


def test_only_gateways_may_use_the_gateway_api() -> None:
    for operation in Operation:
        assert operation.allowed(GATEWAY)
        assert operation.allowed(PLAIN) == (not operation.method.startswith("gateway_"))
