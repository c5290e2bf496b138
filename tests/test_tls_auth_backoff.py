"""Certificates refused in the TLS handshake count as authentication failures of their address
(auth_failures_per_address): after too many, even a good certificate from that address is
refused until the block ends. Each address here is a loopback address of its own."""

from __future__ import annotations

import asyncio
import secrets
import ssl
from pathlib import Path

import aiohttp
import orjson

from fleetgate.protocols.mqtt.packets import ConnAck, Reason
from tests.limits_support import limited_gateway, port_of
from tests.mqtt_raw import RawMqtt
from tests.pki import self_signed
from tests.support import new_tenant

FAILURES = 3
BLOCK_SECONDS = 1.5
READY_FROM = "127.0.0.2"  # waits for the anchors to be reloaded; its failures are its own
TESTED_FROM = "127.0.0.3"


def client_context(cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


async def connack(gw, context: ssl.SSLContext, source: str) -> ConnAck | None:
    """The CONNACK for a certificate device's CONNECT over MQTTS from ``source``; None when the
    TLS handshake refused the certificate (the connection ends before any CONNACK)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(gw, "mqtts"), ssl=context,
                                                       local_addr=(source, 0))
    except (ssl.SSLError, ConnectionError):
        return None
    client = RawMqtt(reader, writer, 5)
    try:
        packet = await client.connect(client_id="c-" + secrets.token_hex(4))
    except (ssl.SSLError, ConnectionError, asyncio.IncompleteReadError):
        return None  # TLS 1.3: the server's verdict on the certificate comes after the client's Finished
    finally:
        writer.close()
    assert isinstance(packet, ConnAck), packet
    return packet


async def test_refused_certificates_block_their_address(database_url, tmp_path: Path) -> None:
    async with limited_gateway(database_url, tmp_path, tls=True, auth_failures_per_address=FAILURES,
                               auth_block_seconds=BLOCK_SECONDS) as gw:
        tenant = await new_tenant(gw.services)
        (tmp_path / "good").mkdir()
        good_cert, good_key = self_signed(tmp_path / "good")
        http_url = next(listener.url for listener in gw.listeners if listener.name == "http")
        async with aiohttp.ClientSession(http_url) as http, http.post("/api/v1/provision", json={
                "deviceName": "tls-" + secrets.token_hex(4), "provisionDeviceKey": tenant.provision_key,
                "provisionDeviceSecret": tenant.provision_secret, "credentialsType": "X509_CERTIFICATE",
                "hash": Path(good_cert).read_text()}) as resp:
            assert orjson.loads(await resp.read())["status"] == "SUCCESS"
        good = client_context(good_cert, good_key)
        # The gateway reloads its anchors when PostgreSQL notifies it: a device tries again
        # until it is in (from an address of its own, so that these tries count elsewhere).
        for _ in range(50):
            answer = await connack(gw, good, READY_FROM)
            if answer is not None and answer.reason_code == Reason.SUCCESS:
                break
        else:
            raise AssertionError(f"the good certificate was never accepted: {answer}")

        for n in range(FAILURES + 1):
            (tmp_path / f"bad-{n}").mkdir()
            unknown = client_context(*self_signed(tmp_path / f"bad-{n}"))  # a CA the gateway does not know
            assert await connack(gw, unknown, TESTED_FROM) is None
        blocked_at = asyncio.get_running_loop().time()
        refused = await connack(gw, good, TESTED_FROM)
        assert refused is not None and refused.reason_code == Reason.CONNECTION_RATE_EXCEEDED, refused
        # Another address is not affected.
        assert (await connack(gw, good, READY_FROM)).reason_code == Reason.SUCCESS  # type: ignore[union-attr]

        await asyncio.sleep(max(blocked_at + BLOCK_SECONDS - asyncio.get_running_loop().time(), 0))  # the block
        accepted = await connack(gw, good, TESTED_FROM)
        assert accepted is not None and accepted.reason_code == Reason.SUCCESS, accepted
