"""TLS on the MQTTS listener beyond the handshake's success: a registered device resuming its TLS
session from a ticket with ``openssl s_client`` (authenticated by the certificate the session
carries, counted as resumed), and handshakes OpenSSL refuses, counted by reason."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from tests import pki
from tests.autoregistration_support import DAY, SUBJECT, devices_in, publish_as, url_of
from tests.certificates_support import ready_ca
from tests.management_client import Management

CONNECT = bytes.fromhex("101000044d5154540402003c0004") + b"ab12"  # MQTT 3.1.1, client id "ab12", clean session
CONNACK_ACCEPTED = b"\x20\x02\x00\x00"


@pytest.fixture
def api(tls_api: Management) -> Management:
    """This module's tenant lives on the TLS gateway."""
    return tls_api


async def s_client(port: str, server_cert: str, cert: str, key: str, *session: str) -> bytes:
    """One MQTT CONNECT through ``openssl s_client``; its output up to the CONNACK (then it is ended)."""
    proc = await asyncio.create_subprocess_exec(
        "openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_3", "-CAfile", server_cert,
        "-cert", cert, "-key", key, "-ign_eof", *session,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(CONNECT)
    await proc.stdin.drain()
    out = b""
    try:
        async with asyncio.timeout(15):
            while CONNACK_ACCEPTED not in out:
                chunk = await proc.stdout.read(4096)
                if not chunk:
                    break
                out += chunk
    finally:
        proc.terminate()
        await proc.wait()
    return out


def _sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_registered_device_resumes_its_session_and_is_still_that_device(tls, api, tmp_path: Path) -> None:
    gw, server_cert = tls
    ca, _ = await ready_ca(api)
    device = pki.leaf(ca, CN="resumer", **SUBJECT)
    assert (await publish_as(gw, server_cert, device, tmp_path))[0] == 0  # registered on its first connection
    cert, key = device.files(tmp_path, "resumer")
    port = url_of(gw, "mqtts").rsplit(":", 1)[1]
    session = str(tmp_path / "session.pem")
    resumed = {"protocol": "mqtt", "resumed": "true"}
    before = _sample("gateway_tls_handshakes_total", resumed)
    first = await s_client(port, server_cert, cert, key, "-sess_out", session)
    assert CONNACK_ACCEPTED in first and b"New, TLSv1.3" in first, first[-2000:]
    again = await s_client(port, server_cert, cert, key, "-sess_in", session)
    assert b"Reused, TLSv1.3" in again and CONNACK_ACCEPTED in again, again[-2000:]
    assert _sample("gateway_tls_handshakes_total", resumed) == before + 1
    assert await devices_in(gw, api.tenant.project_id) == [f"{api.tenant.product_id}_resumer"]


async def test_handshakes_openssl_refuses_are_counted_by_reason(tls, api, tmp_path: Path) -> None:
    gw, server_cert = tls
    ca, _ = await ready_ca(api)
    assert (await publish_as(gw, server_cert, pki.leaf(ca, CN="trusted", **SUBJECT), tmp_path))[0] == 0
    cases = {
        "certificate has expired": pki.leaf(ca, CN="old", not_before=-2 * DAY, not_after=-DAY, **SUBJECT),
        "certificate is not yet valid": pki.leaf(ca, CN="early", not_before=DAY, not_after=2 * DAY, **SUBJECT),
        "unable to get local issuer certificate": pki.leaf(pki.ca("Stranger"), CN="stranger", **SUBJECT),
    }
    for reason, device in cases.items():
        before = _sample("gateway_tls_handshake_failures_total", {"reason": reason})
        code, out = await publish_as(gw, server_cert, device, tmp_path, attempts=1)
        assert code != 0, out
        assert _sample("gateway_tls_handshake_failures_total", {"reason": reason}) == before + 1, reason
