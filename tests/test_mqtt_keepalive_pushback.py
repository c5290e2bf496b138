"""Found by the fault suite's reasoning on a frozen database (issue 8): while the gateway stops
reading a connection because the ingest queue is full (or, for MQTT 3.1.1, too many messages
await storage), the client's PINGREQs wait unread in the socket. The keep-alive must not
then be held against the client: it is the gateway that is not listening."""

from __future__ import annotations

import asyncio

import orjson

from fleetgate.protocols.mqtt.packets import PingReq, PubAck, Publish
from tests.mqtt_raw import RawMqtt
from tests.support import gateway_settings, new_tenant, provision_token, running_gateway
from tests.telemetry_support import writes_blocked

KEEP_ALIVE = 1  # seconds: the gateway gives up after 1.5 s without a packet
HELD = 4.0  # how long the database is kept from storing: well past 1.5 s


async def test_a_pushed_back_client_that_pings_is_not_timed_out(database_url, tmp_path) -> None:
    import aiohttp

    settings = gateway_settings(str(tmp_path), ingest_queue_rows=2)
    async with running_gateway(database_url, settings) as gw:
        tenant = await new_tenant(gw.services)
        async with aiohttp.ClientSession(gw.listeners[0].url) as http:
            token = await provision_token(http, tenant, "pinging")
        port = next(int(l.url.rsplit(":", 1)[1]) for l in gw.listeners if l.name == "mqtt")
        client = await RawMqtt.open(port)
        await client.connect(username=token, keep_alive=KEEP_ALIVE)
        try:
            async with writes_blocked(database_url):
                for packet_id in range(1, 6):  # more than the queue holds: the gateway stops reading
                    body = orjson.dumps({"ts": 1767225600000 + packet_id, "values": {"n": packet_id}})
                    await client.send(Publish("v1/devices/me/telemetry", body, qos=1, packet_id=packet_id))
                loop = asyncio.get_running_loop()
                until = loop.time() + HELD
                while loop.time() < until:  # a well-behaved client keeps pinging
                    await client.send(PingReq())
                    await asyncio.sleep(KEEP_ALIVE / 2)  # the client's keep-alive cadence
            acked = set()
            while len(acked) < 5:
                packet = await client.packet(timeout=10)
                if isinstance(packet, PubAck):
                    acked.add(packet.packet_id)
                else:
                    assert type(packet).__name__ == "PingResp", f"closed on the client: {packet}"
            assert acked == {1, 2, 3, 4, 5}
        finally:
            await client.close()
