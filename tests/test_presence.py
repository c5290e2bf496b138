"""fleetgate.core.presence against an in-memory fake of its port (tests/fakes.py) and a set clock:
what each process writes, and the status read from it. No database, no sockets."""

from __future__ import annotations

from typing import Any

import pytest

from fleetgate.core.auth import DeviceAuthenticator
from fleetgate.core.codec import PayloadLimits
from fleetgate.core.device_channel import SessionLimits
from fleetgate.core.device_service import DeviceService
from fleetgate.core.downlink import Downlink
from fleetgate.core.errors import Unavailable
from fleetgate.core.ingest import IngestPipeline, IngestSettings
from fleetgate.core.model import DeviceIdentity
from fleetgate.core.operations import NO_PARAMS
from fleetgate.core.presence import Presence, PresenceSettings
from fleetgate.core.presence_model import Connectivity, DeviceStatus
from fleetgate.core.provisioning import ProvisioningService
from tests.fakes import FakeAuditLog, FakeProvisioningStore, MemoryPresence, MemoryWriter, SetClock, \
    StoredAttributes, TokenDevices

T0 = 1_700_000_000_000
TIMEOUT_MS = 60_000
SETTINGS = PresenceSettings(inactivity_timeout_ms=TIMEOUT_MS, flush_seconds=1.0)  # leases of 5 s
ONLINE, OFFLINE = DeviceStatus.ONLINE, DeviceStatus.OFFLINE


@pytest.fixture
def clock() -> SetClock:
    return SetClock(T0)


@pytest.fixture
def store() -> MemoryPresence:
    return MemoryPresence()


@pytest.fixture
def presence(store: MemoryPresence, clock: SetClock) -> Presence:
    return Presence(store, SETTINGS, clock=clock, process_id="p1")


class Channel:
    """DeviceChannel: a session the device service delivers to (nothing is delivered here)."""

    def push_attributes(self, update: dict[str, Any]) -> None: ...

    def push_rpc(self, request_id: int, method: str, params: Any) -> None: ...


def status(store: MemoryPresence, clock: SetClock, device_id: str = "d1") -> Connectivity:
    return store.connectivity(device_id, clock.now)


async def test_a_connected_device_is_online_until_it_disconnects(
    presence: Presence, store: MemoryPresence, clock: SetClock
) -> None:
    assert status(store, clock) == Connectivity(OFFLINE)  # never seen
    presence.connected("d1", "mqtt")
    await presence.flush()
    assert status(store, clock) == Connectivity(ONLINE, T0)

    clock.now += 3_000
    presence.active("d1", "mqtt")
    await presence.flush()
    assert status(store, clock) == Connectivity(ONLINE, T0, None, T0 + 3_000)
    # Activity on a connection is no request: it leases nothing.
    assert store.rows["d1"]["online_until"] is None

    clock.now += 1_000
    presence.disconnected("d1", "mqtt")
    await presence.flush()
    assert status(store, clock) == Connectivity(OFFLINE, T0, T0 + 4_000, T0 + 3_000)


async def test_a_device_with_two_connections_is_online_until_both_close(
    presence: Presence, store: MemoryPresence, clock: SetClock
) -> None:
    presence.connected("d1", "mqtt")
    presence.connected("d1", "mqtt")
    await presence.flush()
    presence.disconnected("d1", "mqtt")
    await presence.flush()
    assert status(store, clock).status is ONLINE
    presence.disconnected("d1", "mqtt")
    await presence.flush()
    assert status(store, clock).status is OFFLINE


async def test_a_device_making_requests_is_online_until_the_inactivity_timeout(
    presence: Presence, store: MemoryPresence, clock: SetClock
) -> None:
    presence.active("d1", "http")
    await presence.flush()
    assert status(store, clock) == Connectivity(ONLINE, T0, None, T0)
    clock.now += TIMEOUT_MS - 1
    assert status(store, clock).status is ONLINE
    clock.now += 1
    # Nothing wrote it: the lease ran out, and the read says when.
    assert status(store, clock) == Connectivity(OFFLINE, T0, T0 + TIMEOUT_MS, T0)

    clock.now += 10_000
    presence.active("d1", "coap")
    await presence.flush()
    again = T0 + TIMEOUT_MS + 10_000
    assert status(store, clock) == Connectivity(ONLINE, again, T0 + TIMEOUT_MS, again)


async def test_requests_in_a_row_extend_the_lease_without_going_online_again(
    presence: Presence, store: MemoryPresence, clock: SetClock
) -> None:
    presence.active("d1", "http")
    await presence.flush()
    clock.now += TIMEOUT_MS // 2
    presence.active("d1")  # an attribute request: no protocol
    await presence.flush()
    clock.now += TIMEOUT_MS // 2 + 1
    assert status(store, clock) == Connectivity(ONLINE, T0, None, T0 + TIMEOUT_MS // 2)


async def test_a_coap_observation_that_ends_leaves_the_device_online_for_the_timeout(
    presence: Presence, store: MemoryPresence, clock: SetClock
) -> None:
    presence.connected("d1", "coap")
    await presence.flush()
    clock.now += 5_000
    presence.disconnected("d1", "coap")
    await presence.flush()
    assert status(store, clock) == Connectivity(ONLINE, T0, None, T0 + 5_000)
    assert store.connections == {}
    clock.now += TIMEOUT_MS
    assert status(store, clock).status is OFFLINE


async def test_an_explicit_disconnect_ends_a_request_lease(
    presence: Presence, store: MemoryPresence, clock: SetClock
) -> None:
    presence.active("d1", "http")
    await presence.flush()
    presence.connected("d1", "mqtt")
    await presence.flush()
    clock.now += 1_000
    presence.disconnected("d1", "mqtt")
    await presence.flush()
    assert status(store, clock).status is OFFLINE
    assert status(store, clock).last_offline_time == T0 + 1_000


async def test_a_process_that_dies_leaves_its_devices_offline_when_its_lease_runs_out(
    presence: Presence, store: MemoryPresence, clock: SetClock
) -> None:
    presence.connected("d1", "mqtt")
    await presence.flush()  # and then nothing more: the process is gone
    lease_end = T0 + SETTINGS.lease_ms
    clock.now = lease_end - 1
    assert status(store, clock).status is ONLINE
    clock.now = lease_end
    assert status(store, clock) == Connectivity(OFFLINE, T0, lease_end)

    # Another process's next write clears what the dead one left; the device reads the same.
    other = Presence(store, SETTINGS, clock=clock, process_id="p2")
    clock.now += 1_000
    await other.flush()
    assert "p1" not in store.leases and store.connections == {}
    assert status(store, clock) == Connectivity(OFFLINE, T0, lease_end)


async def test_a_device_connected_to_two_processes_stays_online_when_one_dies(
    presence: Presence, store: MemoryPresence, clock: SetClock
) -> None:
    other = Presence(store, SETTINGS, clock=clock, process_id="p2")
    presence.connected("d1", "mqtt")
    other.connected("d1", "mqtt")
    await presence.flush()
    await other.flush()
    for _ in range(10):  # p1 is dead; p2 keeps writing
        clock.now += 1_000
        await other.flush()
    assert status(store, clock) == Connectivity(ONLINE, T0)


async def test_a_lease_lost_during_a_pause_is_written_again(
    presence: Presence, store: MemoryPresence, clock: SetClock
) -> None:
    presence.connected("d1", "mqtt")
    await presence.flush()
    clock.now += SETTINGS.lease_ms + 1_000  # p1 paused past its lease; p2 ended its connections
    await Presence(store, SETTINGS, clock=clock, process_id="p2").flush()
    assert store.connections == {}
    await presence.flush()  # back: its lease is new, so it writes its connections again
    await presence.flush()
    assert status(store, clock) == Connectivity(ONLINE, clock.now, T0 + SETTINGS.lease_ms)


async def test_a_failed_write_is_carried_by_the_next(
    presence: Presence, store: MemoryPresence, clock: SetClock
) -> None:
    presence.connected("d1", "mqtt")
    presence.active("d1", "mqtt")
    presence.active("d2", "http")
    store.failures.append(Unavailable("database down"))
    with pytest.raises(Unavailable):
        await presence.flush()
    assert store.batches == []
    clock.now += 1_000
    await presence.flush()
    assert status(store, clock) == Connectivity(ONLINE, T0, None, T0 + 1_000)
    assert status(store, clock, "d2") == Connectivity(ONLINE, T0 + 1_000, None, T0 + 1_000)


async def test_a_failed_write_does_not_undo_what_happened_since(
    presence: Presence, store: MemoryPresence, clock: SetClock
) -> None:
    presence.connected("d1", "mqtt")
    await presence.flush()
    presence.disconnected("d1", "mqtt")
    store.failures.append(Unavailable("database down"))
    with pytest.raises(Unavailable):
        await presence.flush()
    presence.connected("d1", "mqtt")  # back before the write could say it left
    await presence.flush()
    assert status(store, clock).status is ONLINE


async def test_a_connection_closed_between_two_writes_writes_nothing(
    presence: Presence, store: MemoryPresence, clock: SetClock
) -> None:
    presence.connected("d1", "mqtt")
    presence.disconnected("d1", "mqtt")
    await presence.flush()
    assert (store.batches[0].opened, store.batches[0].closed) == ((), ())


async def test_a_clean_stop_ends_the_connections_at_once(
    presence: Presence, store: MemoryPresence, clock: SetClock
) -> None:
    presence.start()
    presence.connected("d1", "mqtt")
    presence.active("d2", "http")
    clock.now += 500
    await presence.stop()
    assert status(store, clock) == Connectivity(OFFLINE, T0, T0 + 500)
    assert status(store, clock, "d2").status is ONLINE  # requests keep their own lease
    assert store.leases == {}


async def test_the_gauge_counts_devices_online_here_by_protocol(
    presence: Presence, store: MemoryPresence, clock: SetClock
) -> None:
    presence.connected("d1", "mqtt")
    presence.connected("d1", "mqtt")
    presence.connected("d2", "mqtt")
    presence.active("d3", "http")
    presence.active("d4", "coap")
    presence.active("d5")  # an attribute request: its protocol is not known
    assert (presence.online("mqtt"), presence.online("http")) == (2, 0)  # requests count once written
    await presence.flush()
    assert (presence.online("mqtt"), presence.online("http"), presence.online("coap")) == (2, 1, 1)
    presence.disconnected("d2", "mqtt")
    clock.now += TIMEOUT_MS
    assert (presence.online("mqtt"), presence.online("http"), presence.online("coap")) == (1, 0, 0)


async def test_the_device_service_reports_connections_and_activity(
    store: MemoryPresence, clock: SetClock
) -> None:
    presence = Presence(store, SETTINGS, clock=clock, process_id="p1")
    device = DeviceIdentity("d1", "p", "prod", "meter")
    pipeline = IngestPipeline(MemoryWriter(), IngestSettings(capacity_rows=10, batch_max_age=0.001))
    pipeline.start()
    audit = FakeAuditLog()
    service = DeviceService(
        auth=DeviceAuthenticator(TokenDevices({"T1": device}), cache_seconds=30),
        provisioning=ProvisioningService(FakeProvisioningStore(audit), audit), pipeline=pipeline,
        attributes=StoredAttributes(), limits=PayloadLimits(64, 64, 10), downlink=Downlink(SessionLimits(1024, 7)),
        ack_stored=True, clock=clock, presence=presence,
    )
    try:
        channel = Channel()
        service.attach(device, channel)
        await service.telemetry(device, b'{"t":1}', NO_PARAMS, "mqtt")
        await presence.flush()
        assert status(store, clock) == Connectivity(ONLINE, T0, None, T0)
        clock.now += 1_000
        service.detach(device, channel)
        await presence.flush()
        assert status(store, clock).status is OFFLINE

        clock.now += 1_000
        await service.attribute_request(device, b"{}", NO_PARAMS)
        await presence.flush()
        assert status(store, clock) == Connectivity(ONLINE, T0 + 2_000, T0 + 1_000, T0 + 2_000)
    finally:
        await pipeline.stop(1.0)
