"""Signals on a gateway process: SIGHUP reloads the TLS certificate without dropping
connections; SIGTERM drains and exits 0 in time; a rolling restart loses nothing acknowledged."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import ssl
import time

import orjson
from cryptography import x509

from fleetgate.protocols.mqtt.packets import MQTT_5, Disconnect, PubAck, Publish, Reason
from tests.mqtt_raw import RawMqtt
from tests.pki import self_signed
from tests.process import GatewayProcess
from tests.support import free_port, new_tenant

TOPIC = "v1/devices/me/telemetry"


async def device_token(gateway, http) -> tuple[str, str]:
    tenant = await new_tenant(gateway.services)
    name = "sig-" + secrets.token_hex(4)
    async with http.post("/api/v1/provision", json={
            "deviceName": name, "provisionDeviceKey": tenant.provision_key,
            "provisionDeviceSecret": tenant.provision_secret}) as resp:
        token = orjson.loads(await resp.read())["credentialsValue"]
    device_id = await gateway.services.pool.fetchval(
        "SELECT id FROM devices WHERE project_id = $1 AND name = $2", tenant.project_id, name)
    return token, device_id


def trust_anything() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def tls_mqtt(port: int) -> tuple[RawMqtt, bytes]:
    """A TLS connection and the certificate the server presented in its handshake."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=trust_anything())
    return RawMqtt(reader, writer, MQTT_5), writer.get_extra_info("ssl_object").getpeercert(binary_form=True)


def der_of(cert_file: str) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding
    with open(cert_file, "rb") as handle:
        return x509.load_pem_x509_certificate(handle.read()).public_bytes(Encoding.DER)


async def publish(client: RawMqtt, packet_id: int, values: dict) -> int:
    await client.send(Publish(TOPIC, orjson.dumps(values), qos=1, packet_id=packet_id))
    ack = await client.packet()
    assert isinstance(ack, PubAck) and ack.packet_id == packet_id
    return ack.reason_code


async def test_sighup_reloads_the_certificate_and_sigterm_drains(database_url, gateway, http, tmp_path) -> None:
    token, _ = await device_token(gateway, http)
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old_cert, old_key = self_signed(tmp_path / "old")
    new_cert, new_key = self_signed(tmp_path / "new")
    cert_file, key_file = str(tmp_path / "server.pem"), str(tmp_path / "server.key")
    os.link(old_cert, cert_file)
    os.link(old_key, key_file)
    proc = await GatewayProcess.start(
        database_url, str(tmp_path), management_port=free_port(), mqtt_port=0, mqtts_port=free_port(),
        tls_cert_file=cert_file, tls_key_file=key_file, shutdown_timeout_seconds=5,
    )
    try:
        port = proc.port("mqtts")
        before, presented = await tls_mqtt(port)
        assert presented == der_of(old_cert)
        await before.connect(username=token)
        assert await publish(before, 1, {"n": 1}) == Reason.SUCCESS

        # Swap the files (each rename atomic, as a certificate manager does), then SIGHUP.
        os.replace(new_key, key_file)
        os.replace(new_cert, cert_file)
        proc.proc.send_signal(signal.SIGHUP)
        await proc.logged("TLS certificate reloaded")

        after, presented = await tls_mqtt(port)
        assert presented == der_of(cert_file)
        await after.connect(username=token)
        assert await publish(after, 1, {"n": 2}) == Reason.SUCCESS
        # The connection made before the reload still works.
        assert await publish(before, 2, {"n": 3}) == Reason.SUCCESS

        started = time.monotonic()
        code = await proc.stop(timeout=15)
        elapsed = time.monotonic() - started
        assert code == 0
        assert elapsed < 5 + 1
        for client in (before, after):
            disconnect = await client.packet()
            assert isinstance(disconnect, Disconnect) and disconnect.reason_code == Reason.SERVER_SHUTTING_DOWN
            await client.close()
    finally:
        await proc.kill()


async def test_a_broken_certificate_is_refused_and_the_old_one_stays(database_url, gateway, tmp_path) -> None:
    cert_file, key_file = self_signed(tmp_path)
    proc = await GatewayProcess.start(
        database_url, str(tmp_path), management_port=free_port(), mqtt_port=0, mqtts_port=free_port(),
        tls_cert_file=cert_file, tls_key_file=key_file,
    )
    try:
        original = der_of(cert_file)
        with open(cert_file, "w") as handle:
            handle.write("not a certificate")
        proc.proc.send_signal(signal.SIGHUP)
        await proc.logged("TLS certificate not reloaded")
        client, presented = await tls_mqtt(proc.port("mqtts"))
        assert presented == original
        await client.close()
        assert await proc.stop() == 0
    finally:
        await proc.kill()


class Publisher:
    """QoS 1 telemetry, 20 messages in flight, each with its sequence number; the numbers
    acknowledged are kept. Runs until the gateway closes the connection or ``until`` acks."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.seq = 0
        self.acked: set[int] = set()
        self.base_ts = int(time.time() * 1000) - 1_000_000

    async def run(self, port: int, until: int, reached: asyncio.Event | None = None) -> int | None:
        """The reason code of the server's DISCONNECT, or None when it just closed or ``until`` was met."""
        client = await RawMqtt.open(port, MQTT_5)
        await client.connect(username=self.token)
        try:
            while len(self.acked) < until:
                window: dict[int, int] = {}
                for _ in range(20):
                    self.seq += 1
                    packet_id = self.seq % 65_000 + 1
                    window[packet_id] = self.seq
                    payload = {"ts": self.base_ts + self.seq, "values": {"seq": self.seq}}
                    await client.send(Publish(TOPIC, orjson.dumps(payload), qos=1, packet_id=packet_id))
                while window:
                    packet = await client.packet(timeout=30)
                    if isinstance(packet, Disconnect):
                        return packet.reason_code
                    if isinstance(packet, PubAck) and packet.reason_code == Reason.SUCCESS:
                        self.acked.add(window.pop(packet.packet_id))
                        if reached is not None and len(self.acked) >= 200:
                            reached.set()
            return None
        except (ConnectionError, OSError):
            return None
        finally:
            await client.close()


async def test_rolling_restart_keeps_every_acknowledged_message(database_url, gateway, http, tmp_path) -> None:
    token, device_id = await device_token(gateway, http)
    ports = {"management_port": free_port(), "mqtt_port": free_port()}
    publisher = Publisher(token)

    first = await GatewayProcess.start(database_url, str(tmp_path), shutdown_timeout_seconds=10, **ports)
    try:
        reached = asyncio.Event()
        running = asyncio.create_task(publisher.run(first.port("mqtt"), until=10**9, reached=reached))
        await reached.wait()
        assert await first.stop() == 0
        # DISCONNECT 0x8B, or the socket closed under a publish the client was still sending.
        assert await running in (Reason.SERVER_SHUTTING_DOWN, None)
    finally:
        await first.kill()
    acked_before = len(publisher.acked)

    second = await GatewayProcess.start(database_url, str(tmp_path), shutdown_timeout_seconds=10, **ports)
    try:
        assert await publisher.run(second.port("mqtt"), until=acked_before + 200) is None
        assert await second.stop() == 0
    finally:
        await second.kill()

    stored = {r["long_v"] for r in await gateway.services.pool.fetch(
        "SELECT t.long_v FROM ts_kv t JOIN key_dictionary k ON k.key_id = t.key "
        "WHERE t.device_id = $1 AND k.key = 'seq'", device_id)}
    assert len(publisher.acked) >= acked_before + 200
    assert publisher.acked <= stored, f"acknowledged but not stored: {sorted(publisher.acked - stored)[:20]}"
