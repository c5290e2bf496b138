"""The ordering guarantee under concurrent writers (docs/ingestion.md, "Order"):

- per connection, acknowledgements leave in the order the messages came (MQTT PUBACKs in
  PUBLISH order), whichever batch commits first;
- per device, a message sent after the previous one was acknowledged is committed after it;
- messages of one device in flight together may be in batches written at once, and commit in
  either order.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

from fleetgate.core.ingest import IngestPipeline, IngestSettings
from fleetgate.core.telemetry_model import AttributeMessage, KeyValue, Reading, TelemetryMessage, ValueType
from fleetgate.protocols.mqtt.packets import PubAck, Publish
from tests.limits_support import mqtt_device, provisioned_token
from tests.support import gateway_settings, running_gateway

DEVICES = 40
PER_DEVICE = 15
IN_FLIGHT = 100  # QoS 1 PUBLISHes sent before the first PUBACK is read: the receive maximum


def message(device: str, seq: int) -> TelemetryMessage:
    return TelemetryMessage(device, (Reading(1_767_225_600_000 + seq, (KeyValue("seq", ValueType.LONG, seq),)),))


class ShuffledWriter:
    """Commits each batch after a random delay, so that concurrent batches finish in any order;
    records the commit order of every message."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.committed: list[TelemetryMessage] = []
        self.concurrent = 0
        self.most_concurrent = 0

    async def write(self, telemetry: Sequence[TelemetryMessage], attributes: Sequence[AttributeMessage]) -> None:
        self.concurrent += 1
        self.most_concurrent = max(self.most_concurrent, self.concurrent)
        try:
            await asyncio.sleep(self.rng.uniform(0, 0.004))  # a commit's latency, shuffled
        finally:
            self.concurrent -= 1
        self.committed.extend(telemetry)


async def test_a_device_waiting_for_each_acknowledgement_is_stored_in_order() -> None:
    writer = ShuffledWriter(random.Random(20))
    pipeline = IngestPipeline(writer, IngestSettings(batch_max_rows=8, batch_max_age=0.001, writers=4))
    pipeline.start()

    async def device(name: str) -> None:
        for seq in range(PER_DEVICE):
            stored = pipeline.submit(message(name, seq), wait_stored=True)
            assert stored is not None
            await stored

    try:
        async with asyncio.timeout(30):
            await asyncio.gather(*(device(f"d{n}") for n in range(DEVICES)))
    finally:
        await pipeline.stop(5)
    assert writer.most_concurrent > 1, "the writers never overlapped"
    for n in range(DEVICES):
        seqs = [m.readings[0].values[0].value for m in writer.committed if m.device_id == f"d{n}"]
        assert seqs == list(range(PER_DEVICE))


async def test_messages_in_flight_together_may_commit_in_either_order() -> None:
    """What is not promised, shown: the later message's batch commits first."""
    first_batch_open = asyncio.Event()
    committed: list[int] = []

    class HeldWriter:
        async def write(self, telemetry, attributes) -> None:
            seqs = [m.readings[0].values[0].value for m in telemetry]
            if 0 in seqs:
                await first_batch_open.wait()
            committed.extend(seqs)

    pipeline = IngestPipeline(HeldWriter(), IngestSettings(batch_max_rows=1, batch_max_age=0.001, writers=2))
    pipeline.start()
    try:
        earlier = pipeline.submit(message("d", 0), wait_stored=True)
        later = pipeline.submit(message("d", 1), wait_stored=True)
        assert earlier is not None and later is not None
        async with asyncio.timeout(5):
            await later
        assert not earlier.done()
        first_batch_open.set()
        async with asyncio.timeout(5):
            await earlier
    finally:
        await pipeline.stop(5)
    assert committed == [1, 0]


async def test_pubacks_leave_in_publish_order_under_concurrent_writers(database_url, tmp_path) -> None:
    # Small batches and four writers: the PUBLISHes below are spread over many batches written at once.
    settings = gateway_settings(str(tmp_path), writers=4, batch_max_rows=3, batch_max_age_ms=1)
    async with running_gateway(database_url, settings) as gw:
        client = await mqtt_device(gw, await provisioned_token(gw), 5)
        try:
            for packet_id in range(1, IN_FLIGHT + 1):
                await client.send(Publish("v1/devices/me/telemetry", b'{"ts":%d,"values":{"seq":%d}}' % (
                    1_767_225_600_000 + packet_id, packet_id), qos=1, packet_id=packet_id))
            acks = [await client.packet() for _ in range(IN_FLIGHT)]
        finally:
            await client.close()
    assert acks == [PubAck(packet_id) for packet_id in range(1, IN_FLIGHT + 1)]
