"""OTA at fleet scale: assigning a package to a product tells the processes in bulk (a bounded
number of bus events, not one per device), over the in-process bus, PostgreSQL NOTIFY and NATS;
and /metrics carries the devices in each reported state (gateway_ota_devices), counted from the
stored progress."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import aiohttp
import orjson
import paho.mqtt.client as mqtt
from prometheus_client.parser import text_string_to_metric_families

from fleetgate.core.device_channel import SessionLimits
from fleetgate.core.downlink import BULK_DEVICES, Downlink
from fleetgate.core.local_bus import LocalBus
from fleetgate.core.ota import OtaService, UploadRequest
from fleetgate.core.ota_metrics import DEVICES
from fleetgate.core.ota_progress import OtaProgress
from fleetgate.core.telemetry_model import KeyValue, Reading, ValueType
from fleetgate.storage.nats_bus import NatsDownlinkBus, NatsSettings
from tests.fakes_ota import DEVICE, IMAGE, OTHER, PRODUCT, PROJECT, Devices, FakeOtaStore, Recorder, stream
from tests.nats_support import nats_cluster, requires_nats_server

PRODUCT_DEVICES = 2 * BULK_DEVICES + 500


class CountingBus(LocalBus):
    def __init__(self) -> None:
        super().__init__()
        self.published: list[dict[str, Any]] = []

    async def publish(self, event: dict[str, Any]) -> None:
        self.published.append(event)
        await super().publish(event)


def fleet() -> tuple[FakeOtaStore, OtaService, Downlink, CountingBus]:
    store = FakeOtaStore({f"d{i}": PRODUCT for i in range(PRODUCT_DEVICES)})
    bus = CountingBus()
    downlink = Downlink(SessionLimits(65536, 100), bus)
    bus.receiver = downlink.receive
    return store, OtaService(store, Devices(), downlink), downlink, bus


async def test_assigning_to_a_product_is_a_few_bulk_events_and_one_update_per_device() -> None:
    _, service, downlink, bus = fleet()
    connected = {f"d{i}": Recorder() for i in range(0, PRODUCT_DEVICES, 7)}
    for device_id, channel in connected.items():
        downlink.attach(device_id, channel)
    package = await service.upload(UploadRequest(PROJECT, "FIRMWARE", "fw", "2.0"), stream(IMAGE))
    await service.assign(PROJECT, "product", PRODUCT, package.id)

    assert len(bus.published) == 3  # 2,500 devices, at most BULK_DEVICES an event
    assert all(len(event["ds"]) <= BULK_DEVICES and "d" not in event for event in bus.published)
    assert sorted(d for event in bus.published for d in event["ds"]) == sorted(f"d{i}" for i in range(PRODUCT_DEVICES))
    for channel in connected.values():
        assert channel.updates == [{
            "fw_title": "fw", "fw_version": "2.0", "fw_size": len(IMAGE), "fw_checksum": package.checksum,
            "fw_checksum_algorithm": "SHA256",
        }]

    # Unassigned: the keys go, in bulk too.
    bus.published.clear()
    await service.unassign(PROJECT, "product", PRODUCT, "FIRMWARE")
    assert len(bus.published) == 3
    assert connected["d0"].updates[-1] == {"deleted": ["fw_title", "fw_version", "fw_size", "fw_checksum",
                                                       "fw_checksum_algorithm"]}


async def test_assigning_to_one_device_is_one_event_for_that_device() -> None:
    _, service, downlink, bus = fleet()
    channel = Recorder()
    downlink.attach("d3", channel)
    package = await service.upload(UploadRequest(PROJECT, "SOFTWARE", "sw", "1"), stream(IMAGE))
    await service.assign(PROJECT, "device", "d3", package.id)
    assert [(event["t"], event["d"]) for event in bus.published] == [("attributes", "d3")]
    assert len(channel.updates) == 1 and channel.updates[0]["sw_version"] == "1"


def gauge(kind: str, state: str) -> float:
    return DEVICES.labels(kind, state)._value.get()


async def test_the_state_gauge_counts_the_stored_states_and_zeroes_states_left() -> None:
    store = FakeOtaStore({"d1": PRODUCT, "d2": PRODUCT})
    progress = OtaProgress(store)

    async def report(device: Any, key: str, state: str) -> None:
        progress.reported(device, (Reading(1, (KeyValue(key, ValueType.STRING, state),)),))
        await progress.settled()
        await progress.refresh_gauge()

    await report(DEVICE, "fw_state", "DOWNLOADING")
    await report(OTHER, "fw_state", "DOWNLOADING")
    await report(OTHER, "sw_state", "FAILED")
    assert (gauge("FIRMWARE", "DOWNLOADING"), gauge("SOFTWARE", "FAILED")) == (2, 1)
    await report(DEVICE, "fw_state", "UPDATED")
    await report(OTHER, "fw_state", "UPDATED")
    assert (gauge("FIRMWARE", "DOWNLOADING"), gauge("FIRMWARE", "UPDATED")) == (0, 2)
    await progress.close()


# with the real gateway: PostgreSQL NOTIFY carries the bulk event, /metrics the gauge


async def test_a_product_assignment_reaches_connected_devices_with_one_bus_event_and_counts_states(
    gateway, http: aiohttp.ClientSession, management: aiohttp.ClientSession, tenant, clients, mqtt_port: int,
) -> None:
    from fleetgate.core import metrics
    from tests.support import provision

    headers = {"X-Auth-Token": tenant.token}
    base = f"/v5/iot/{tenant.project_id}"
    devices = []
    for _ in range(3):
        _, result = await provision(http, tenant)
        client = clients(version=mqtt.MQTTv5)
        await client.connect(mqtt_port, username=result["credentialsValue"])
        await client.subscribe("v1/devices/me/attributes")
        devices.append((client, result["credentialsValue"]))
    title = "fleet-" + secrets.token_hex(3)
    async with management.post(f"{base}/ota-upgrades/packages", data=IMAGE, headers=headers,
                               params={"type": "FIRMWARE", "title": title, "version": "3"}) as resp:
        assert resp.status == 201, await resp.text()
        package = await resp.json()

    events = metrics.DOWNLINK_BUS_EVENTS.labels("yes")._value.get()
    async with management.put(f"{base}/products/{tenant.product_id}/ota-packages/FIRMWARE", headers=headers,
                              json={"package_id": package["package_id"]}) as resp:
        assert resp.status == 200, await resp.text()
    for client, _ in devices:
        message = await client.next_message()
        assert message.topic == "v1/devices/me/attributes"
        assert orjson.loads(message.payload) == {
            "fw_title": title, "fw_version": "3", "fw_size": len(IMAGE), "fw_checksum": package["checksum"],
            "fw_checksum_algorithm": "SHA256"}
    assert metrics.DOWNLINK_BUS_EVENTS.labels("yes")._value.get() == events + 1  # one event, three devices

    before = gauge("FIRMWARE", "VERIFIED")
    for client, _ in devices[:2]:
        await client.publish("v1/devices/me/telemetry", orjson.dumps({"fw_state": "VERIFIED"}))
    await gateway.ota_progress.settled()
    await gateway.ota_progress.refresh_gauge()
    async with management.get("/metrics") as resp:
        families = {f.name: f for f in text_string_to_metric_families(await resp.text())}
    samples = {(s.labels["type"], s.labels["state"]): s.value for s in families["gateway_ota_devices"].samples}
    assert samples[("FIRMWARE", "VERIFIED")] == before + 2
    for client, _ in devices:
        await client.close()


class Updates:
    def __init__(self) -> None:
        self.updates: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def push_attributes(self, update: dict[str, Any]) -> None:
        self.updates.put_nowait(update)

    def push_rpc(self, request_id: int, method: str, params: Any) -> None:
        raise AssertionError("no RPC expected")


@requires_nats_server
async def test_a_bulk_event_reaches_every_process_on_nats(tmp_path) -> None:
    async with nats_cluster(tmp_path, 1, jetstream=False) as nodes:
        processes = []
        for _ in range(2):
            bus = NatsDownlinkBus(NatsSettings((nodes[0].url,), reconnect_wait=0.1))
            downlink = Downlink(SessionLimits(1024, 10), bus)
            bus.receiver = downlink.receive
            await bus.start()
            processes.append((bus, downlink))
        try:
            (bus_a, a), (bus_b, b) = processes
            on_a, on_b = Updates(), Updates()
            a.attach("dev-a", on_a)
            b.attach("dev-b", on_b)
            for bus in (bus_a, bus_b):
                await bus.flush()
            update = [KeyValue("fw_version", ValueType.STRING, "9")]
            await a.attributes_changed_many(["dev-a", "dev-b", "dev-nowhere"], update, ())
            async with asyncio.timeout(10):
                assert await on_a.updates.get() == await on_b.updates.get() == {"fw_version": "9"}
        finally:
            for bus, downlink in processes:
                await downlink.close()
                await bus.stop()
