"""Simulated devices for the fault suite, one loop a device, each with its own client:
MQTT QoS 1 over a raw socket (tests.mqtt_raw), HTTP with aiohttp, CoAP CON with aiocoap.

Each makes one message per tick at a fixed rate until the clock stops production,
records what the gateway acknowledged, and retransmits what it did not (same ts, so
the same row) until it is acknowledged or the clock gives up:

- MQTT keeps up to ``window`` messages in flight; on a lost connection, a DISCONNECT or
  no PUBACK for ``ACK_TIMEOUT`` it reconnects and resends every unacknowledged one (DUP).
- HTTP and CoAP have one request in flight; on 503 / 5.03 they wait Retry-After /
  Max-Age (at most ``MAX_BACKOFF``), on a timeout or connection error a moment, and retry.
"""

from __future__ import annotations

import asyncio

import aiocoap
import aiocoap.error
import aiohttp
from aiocoap import Code

from fleetgate.protocols.mqtt.packets import ConnAck, Disconnect, PubAck, Publish, Reason
from tests.faults.ledger import Clock, DeviceLog, Message
from tests.mqtt_raw import RawMqtt

TOPIC = "v1/devices/me/telemetry"
REQUEST_TIMEOUT = 4.0  # an HTTP or CoAP request unanswered this long is sent again (a device's patience)
ACK_TIMEOUT = 45.0  # longer than the 30-s freeze: a stalled PUBACK alone is no reason to reconnect
MAX_BACKOFF = 1.0
RECONNECT_DELAY = 0.2
MAX_MESSAGES = 10_000  # per device: the count bound of every load loop


class Pacer:
    """A device's ticks at a fixed rate while the clock produces; no burst after falling behind."""

    def __init__(self, clock: Clock, rate: float, log: DeviceLog) -> None:
        self.clock, self.interval, self.log = clock, 1 / rate, log
        self.next_at: float | None = None

    async def tick(self) -> bool:
        """Wait for the next tick; False once production is over (or MAX_MESSAGES made)."""
        loop = asyncio.get_running_loop()
        if self.next_at is None:
            self.next_at = loop.time()
        else:
            self.next_at += self.interval
            if (delay := self.next_at - loop.time()) > 0:
                await asyncio.sleep(delay)  # the load's pace
            else:
                self.next_at = loop.time()  # fell behind (pushed back): no burst to catch up
        return self.clock.producing() and self.log.seq < MAX_MESSAGES


async def http_device(session: aiohttp.ClientSession, token: str, log: DeviceLog, clock: Clock, rate: float) -> None:
    pacer = Pacer(clock, rate, log)
    while await pacer.tick():
        await _http_deliver(session, token, log, clock, log.new_message())


async def _http_deliver(session: aiohttp.ClientSession, token: str, log: DeviceLog, clock: Clock,
                        message: Message) -> None:
    while clock.left() > 0:
        try:
            async with asyncio.timeout(min(REQUEST_TIMEOUT, max(clock.left(), 0.1))):
                async with session.post(f"/api/v1/{token}/telemetry", data=message.body) as resp:
                    await resp.read()
                    status, retry_after = resp.status, resp.headers.get("Retry-After", "1")
        except TimeoutError:
            clock.events["http timeout"] += 1
            continue
        except aiohttp.ClientError:
            clock.events["http conn error"] += 1
            await asyncio.sleep(RECONNECT_DELAY)
            continue
        if status == 200:
            log.ack(message)
            return
        assert status == 503, f"HTTP {status} for {message}"
        clock.events["http 503"] += 1
        await asyncio.sleep(min(float(retry_after), MAX_BACKOFF))


async def coap_device(context: aiocoap.Context, coap_url: str, token: str, log: DeviceLog, clock: Clock,
                      rate: float) -> None:
    pacer = Pacer(clock, rate, log)
    while await pacer.tick():
        await _coap_deliver(context, f"{coap_url}/api/v1/{token}/telemetry", log, clock, log.new_message())


async def _coap_deliver(context: aiocoap.Context, uri: str, log: DeviceLog, clock: Clock, message: Message) -> None:
    while clock.left() > 0:
        request = aiocoap.Message(code=Code.POST, uri=uri, payload=message.body)  # CON
        try:
            async with asyncio.timeout(min(REQUEST_TIMEOUT, max(clock.left(), 0.1))):
                response = await context.request(request).response
        except TimeoutError:
            clock.events["coap timeout"] += 1
            continue
        except aiocoap.error.Error:
            clock.events["coap error"] += 1
            await asyncio.sleep(RECONNECT_DELAY)
            continue
        if response.code == Code.CREATED:
            log.ack(message)
            return
        assert response.code == Code.SERVICE_UNAVAILABLE, f"CoAP {response.code} for {message}"
        clock.events["coap 5.03"] += 1
        await asyncio.sleep(min(response.opt.max_age or 1, MAX_BACKOFF))


class MqttDevice:
    def __init__(self, port: int, token: str, log: DeviceLog, clock: Clock, rate: float, window: int) -> None:
        self.port, self.token, self.log, self.clock = port, token, log, clock
        self.rate, self.window = rate, window
        self.unacked: dict[int, Message] = {}  # packet id -> message
        self._last_id = 0
        self._pacer = Pacer(clock, rate, log)

    def _done(self) -> bool:
        return not self.unacked and not self.clock.producing()

    async def run(self) -> None:
        first = True
        while self.clock.left() > 0 and not self._done():
            if not first:
                self.clock.events["mqtt reconnect"] += 1
                await asyncio.sleep(RECONNECT_DELAY)
            first = False
            try:
                client = await RawMqtt.open(self.port)
            except OSError:
                continue
            try:
                connack = await client.connect(username=self.token, keep_alive=60)
                if not isinstance(connack, ConnAck) or connack.reason_code != Reason.SUCCESS:
                    self.clock.events["mqtt connack refused"] += 1
                    continue
                await self._session(client)
            except (ConnectionError, OSError, TimeoutError, asyncio.IncompleteReadError):
                pass
            finally:
                await client.close()

    async def _session(self, client: RawMqtt) -> None:
        for packet_id, message in self.unacked.items():
            self.clock.events["mqtt resent"] += 1
            await client.send(Publish(TOPIC, message.body, qos=1, dup=True, packet_id=packet_id))
        producer = asyncio.create_task(self._produce(client))
        try:
            while not self._done() or not producer.done():
                if producer.done() and producer.exception() is not None:
                    raise ConnectionError("publish failed")
                reading = asyncio.ensure_future(client.packet(timeout=min(ACK_TIMEOUT, max(self.clock.left(), 0.1))))
                waited = {reading} if producer.done() else {reading, producer}
                await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
                if not reading.done():
                    reading.cancel()
                    await asyncio.gather(reading, return_exceptions=True)
                    continue
                packet = reading.result()
                if isinstance(packet, Disconnect):
                    self.clock.events["mqtt disconnect"] += 1
                    raise ConnectionError("DISCONNECT")
                if isinstance(packet, PubAck) and packet.packet_id in self.unacked:
                    assert packet.reason_code == Reason.SUCCESS, packet
                    self.log.ack(self.unacked.pop(packet.packet_id))
        finally:
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)

    async def _produce(self, client: RawMqtt) -> None:
        """New messages at the device's pace; while ``window`` are unacknowledged, none."""
        while await self._pacer.tick():
            if len(self.unacked) >= self.window:
                continue  # the device skips this tick
            message = self.log.new_message()
            packet_id = self._next_id()
            self.unacked[packet_id] = message
            await client.send(Publish(TOPIC, message.body, qos=1, packet_id=packet_id))

    def _next_id(self) -> int:
        while True:
            self._last_id = self._last_id % 65_535 + 1
            if self._last_id not in self.unacked:
                return self._last_id
