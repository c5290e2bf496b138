"""fleetgate.core.device_service, the one seam every front-end calls, against in-memory fakes of
the storage ports: no database, no sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import orjson
import pytest

from fleetgate.core.admission import AdmissionLimits, ConnectionGate
from fleetgate.core.auth import DeviceAuthenticator
from fleetgate.core.codec import PayloadLimits
from fleetgate.core.device_channel import SessionLimits
from fleetgate.core.device_service import DeviceService
from fleetgate.core.downlink import Downlink
from fleetgate.core.errors import (
    InvalidInput, InvalidProvisionRequest, MalformedPayload, TooManyConnections, Unauthorized,
)
from fleetgate.core.ingest import IngestPipeline, IngestSettings
from fleetgate.core.model import DeviceIdentity
from fleetgate.core.operations import NO_PARAMS
from fleetgate.core.provisioning import ProvisioningService
from fleetgate.core.provisioning_model import ProvisionStatus
from fleetgate.core.telemetry_model import (
    AttributeMessage,
    AttributeScope,
    KeyValue,
    TelemetryMessage,
    ValueType,
)
from tests.fakes import (
    FakeAuditLog, FakeProvisioningStore, MemoryWriter, RecordingReceipt, SetClock, StoredAttributes, TokenDevices,
)

DEVICE = DeviceIdentity("d1", "p1", "prod1", "meter")


class WatchedWriter(MemoryWriter):
    """Tells when a batch write has begun (and is held, while ``open`` is clear)."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = asyncio.Event()

    async def write(self, telemetry: Sequence[TelemetryMessage], attributes: Sequence[AttributeMessage]) -> None:
        self.writing.set()
        await super().write(telemetry, attributes)


@pytest.fixture
async def writer() -> WatchedWriter:
    return WatchedWriter()


@pytest.fixture
async def pipeline(writer: MemoryWriter) -> AsyncIterator[IngestPipeline]:
    pipeline = IngestPipeline(writer, IngestSettings(capacity_rows=10, batch_max_age=0.001))
    pipeline.start()
    yield pipeline
    await pipeline.stop(1.0)


def service_of(pipeline: IngestPipeline, *, clock: SetClock | None = None, ack_stored: bool = True,
               attributes: StoredAttributes | None = None, downlink: Downlink | None = None,
               gate: ConnectionGate | None = None) -> DeviceService:
    audit = FakeAuditLog()
    return DeviceService(
        auth=DeviceAuthenticator(TokenDevices({"T1": DEVICE}), cache_seconds=30),
        provisioning=ProvisioningService(FakeProvisioningStore(audit), audit),
        pipeline=pipeline, attributes=attributes or StoredAttributes(), limits=PayloadLimits(64, 64, 10),
        downlink=downlink or Downlink(SessionLimits(1024, 7)), ack_stored=ack_stored, gate=gate,
        clock=clock or SetClock(1_700_000_000_000),
    )


async def test_telemetry_is_acknowledged_once_its_rows_are_written(
    pipeline: IngestPipeline, writer: WatchedWriter
) -> None:
    service = service_of(pipeline)
    writer.open.clear()
    receipt = RecordingReceipt()
    assert service.telemetry(DEVICE, b'{"t":21.5,"on":true}', NO_PARAMS, "test", receipt) is None
    await writer.writing.wait()  # the batch is being written: nothing may be acknowledged yet
    assert not receipt.done.done()
    writer.open.set()
    await receipt.done
    assert writer.rows == 2


async def test_accepted_acknowledgements_come_at_once(pipeline: IngestPipeline, writer: MemoryWriter) -> None:
    service = service_of(pipeline, ack_stored=False)
    writer.open.clear()
    receipt = RecordingReceipt()
    service.telemetry(DEVICE, b'{"t":1}', NO_PARAMS, "test", receipt)
    assert receipt.done.done()
    writer.open.set()


async def test_server_timestamps_are_the_clocks_and_never_repeat_for_a_device(
    pipeline: IngestPipeline, writer: MemoryWriter
) -> None:
    clock = SetClock(1_700_000_000_000)
    service = service_of(pipeline, clock=clock)
    futures = [service.telemetry(DEVICE, b'{"t":%d}' % i, NO_PARAMS, "test") for i in range(3)]
    await asyncio.gather(*futures)
    stamps = [m.readings[0].ts for batch in writer.batches for m in batch if isinstance(m, TelemetryMessage)]
    assert sorted(stamps) == [clock.now, clock.now + 1, clock.now + 2]


async def test_client_attributes_carry_the_clocks_time(pipeline: IngestPipeline, writer: MemoryWriter) -> None:
    service = service_of(pipeline, clock=SetClock(42_000))
    await service.attributes(DEVICE, b'{"fw":"v1.2"}', NO_PARAMS, "test")
    (message,) = [m for batch in writer.batches for m in batch]
    assert isinstance(message, AttributeMessage)
    assert (message.scope, message.ts, message.values) == (
        AttributeScope.CLIENT, 42_000, (KeyValue("fw", ValueType.STRING, "v1.2"),))


async def test_bad_uplinks_are_refused_before_anything_is_queued(
    pipeline: IngestPipeline, writer: MemoryWriter
) -> None:
    service = service_of(pipeline)
    with pytest.raises(MalformedPayload):
        service.telemetry(DEVICE, b"{nope", NO_PARAMS, "test")
    with pytest.raises(InvalidInput):
        service.attributes(DEVICE, b"[1]", NO_PARAMS, "test")
    assert pipeline.depth_rows == 0 and not writer.batches


async def test_attribute_requests_name_their_keys_and_omit_empty_sections(pipeline: IngestPipeline) -> None:
    attributes = StoredAttributes({
        AttributeScope.CLIENT: [KeyValue("fw", ValueType.STRING, "1.2"), KeyValue("a", ValueType.LONG, 1)],
        AttributeScope.SHARED: [KeyValue("target", ValueType.DOUBLE, 20.5)],
    })
    service = service_of(pipeline, attributes=attributes)
    everything = await service.attribute_request(DEVICE, b"{}", NO_PARAMS)
    assert orjson.loads(everything) == {"client": {"fw": "1.2", "a": 1}, "shared": {"target": 20.5}}
    client = await service.attribute_request(DEVICE, b'{"clientKeys":"fw, nope"}', NO_PARAMS)
    assert orjson.loads(client) == {"client": {"fw": "1.2"}}
    sdk = await service.attribute_request(DEVICE, b'{"shared_keys":"target"}', NO_PARAMS)
    assert orjson.loads(sdk) == {"shared": {"target": 20.5}}
    nothing = await service.attribute_request(DEVICE, b'{"sharedKeys":"none"}', NO_PARAMS)
    assert orjson.loads(nothing) == {}
    with pytest.raises(MalformedPayload):
        service.attribute_request(DEVICE, b"{", NO_PARAMS)  # refused before anything is awaited


async def test_client_side_rpc_answers_get_session_limits_and_says_so_for_the_rest(
    pipeline: IngestPipeline,
) -> None:
    service = service_of(pipeline)
    limits = await service.client_rpc(DEVICE, b'{"method":"getSessionLimits","params":{}}', NO_PARAMS)
    assert orjson.loads(limits)["maxPayloadSize"] == 1024
    assert orjson.loads(limits)["maxInflightMessages"] == 7
    other = await service.client_rpc(DEVICE, b'{"method":"reboot"}', NO_PARAMS)
    assert orjson.loads(other) == {"error": "Unsupported RPC method: reboot"}
    with pytest.raises(InvalidInput):
        service.client_rpc(DEVICE, b"[1]", NO_PARAMS)


async def test_a_devices_rpc_reply_settles_the_call_waiting_for_it(pipeline: IngestPipeline) -> None:
    downlink = Downlink(SessionLimits(1024, 7))
    service = service_of(pipeline, downlink=downlink)
    pushed: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Channel:
        def push_attributes(self, update: dict[str, object]) -> None:
            pass

        def push_rpc(self, request_id: int, method: str, params: object) -> None:
            pushed.set_result(request_id)

    channel = Channel()
    service.attach(DEVICE, channel)
    call = asyncio.ensure_future(downlink.call(DEVICE.device_id, "reboot", {}, timeout=5, oneway=False))
    async with asyncio.timeout(5):
        service.rpc_reply(DEVICE, b'{"ok":true}', {"request_id": await pushed})
        assert await call == {"ok": True}
    service.detach(DEVICE, channel)
    assert not downlink.connected(DEVICE.device_id)


async def test_provisioning_parses_thingsboards_request(pipeline: IngestPipeline) -> None:
    service = service_of(pipeline)
    with pytest.raises(MalformedPayload) as undecodable:
        await service.provision(b"{", "test", "test")
    assert not isinstance(undecodable.value, InvalidProvisionRequest)
    with pytest.raises(MalformedPayload) as not_an_object:
        await service.provision(b"[]", "test", "test")
    assert not isinstance(not_an_object.value, InvalidProvisionRequest)
    with pytest.raises(InvalidProvisionRequest, match="Failed to find the field provisionDeviceSecret in JSON body!"):
        await service.provision(b'{"provisionDeviceKey":"k"}', "test", "test")
    result = await service.provision(b'{"provisionDeviceKey":"k","provisionDeviceSecret":"s"}', "test", "test")
    assert result.status is ProvisionStatus.NOT_FOUND


async def test_authentication_and_admission(pipeline: IngestPipeline) -> None:
    service = service_of(pipeline, gate=ConnectionGate(AdmissionLimits(max_per_address=1)))
    assert await service.by_token("T1") == DEVICE
    assert service.cached_token("T1") == DEVICE
    with pytest.raises(Unauthorized):
        await service.by_token("nope")
    service.open_connection("10.0.0.1")
    with pytest.raises(TooManyConnections):
        service.open_connection("10.0.0.1")
    service.close_connection("10.0.0.1")
    service.open_connection("10.0.0.1")


async def test_back_pressure_is_the_pipelines(pipeline: IngestPipeline, writer: WatchedWriter) -> None:
    service = service_of(pipeline)
    writer.open.clear()
    futures = [service.telemetry(DEVICE, b'{"a":1,"b":2,"c":3,"d":4,"e":5}', NO_PARAMS, "test") for _ in range(2)]
    assert service.saturated
    room = asyncio.ensure_future(service.wait_for_room())
    await writer.writing.wait()
    assert not room.done()
    writer.open.set()
    await asyncio.gather(*futures, room)
    assert not service.saturated
