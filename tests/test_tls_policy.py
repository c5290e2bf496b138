"""The TLS policy of the HTTPS and MQTTS listeners, tested with `openssl s_client`: TLS 1.1 is
refused by the server, TLS 1.3 and TLS 1.2 with a forward-secret AEAD suite are accepted, TLS 1.2
with CBC or RSA key exchange is refused.

"Refused by the server" is shown on the wire: the client offered the protocol (it wrote its
ClientHello, and OpenSSL raised no "no protocols/ciphers available" of its own) and the server
answered nothing and closed (asyncio and uvloop both drop OpenSSL's pending alert when a server
handshake fails, so the client reads EOF rather than the alert). Why it refused is shown by the
server's own context in memory: the error it raises and the alert record it writes."""

from __future__ import annotations

import asyncio
import re
import shutil
import ssl

import pytest

from fleetgate.protocols.tls import DeviceTls
from tests.limits_support import limited_gateway, port_of
from tests.pki import self_signed

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
LISTENERS = ["https", "mqtts"]


@pytest.fixture(scope="module")
async def gw(database_url, tmp_path_factory):
    async with limited_gateway(database_url, tmp_path_factory.mktemp("tls-policy"), tls=True) as running:
        yield running


async def s_client(port: int, *options: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost", *options,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(20):
            out, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return out.decode(errors="replace")


def refused_by_server(out: str) -> bool:
    offered = re.search(r"SSL handshake has read 0 bytes and written (\d+) bytes", out)
    client_side = ("no protocols available", "no ciphers available", "no cipher match")
    return bool(offered) and int(offered.group(1)) > 0 and not any(text in out for text in client_side)


@pytest.mark.parametrize("name", LISTENERS)
async def test_tls_1_1_is_refused_by_the_server(gw, name: str) -> None:
    # SECLEVEL=0 lets OpenSSL 3's client offer TLS 1.1 at all.
    out = await s_client(port_of(gw, name), "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert refused_by_server(out), out


@pytest.mark.parametrize("name", LISTENERS)
async def test_tls_1_0_is_refused_by_the_server(gw, name: str) -> None:
    out = await s_client(port_of(gw, name), "-tls1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert refused_by_server(out), out


@pytest.mark.parametrize("name", LISTENERS)
async def test_tls_1_3_is_accepted(gw, name: str) -> None:
    out = await s_client(port_of(gw, name), "-tls1_3")
    assert "New, TLSv1.3, Cipher is TLS_" in out, out


@pytest.mark.parametrize("name", LISTENERS)
async def test_tls_1_2_with_an_aead_suite_is_accepted(gw, name: str) -> None:
    out = await s_client(port_of(gw, name), "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")
    assert "New, TLSv1.2, Cipher is ECDHE-ECDSA-AES128-GCM-SHA256" in out, out


@pytest.mark.parametrize("name", LISTENERS)
@pytest.mark.parametrize("cipher", ["ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES256-SHA", "AES128-GCM-SHA256"])
async def test_tls_1_2_without_forward_secret_aead_is_refused(gw, name: str, cipher: str) -> None:
    out = await s_client(port_of(gw, name), "-tls1_2", "-cipher", cipher + "@SECLEVEL=0")
    assert refused_by_server(out), out


def server_refusal(tmp_path, client: ssl.SSLContext) -> tuple[str, bytes]:
    """A handshake in memory against the listeners' context: the server's error and what it wrote."""
    cert, key = self_signed(tmp_path)
    server_context = DeviceTls(cert, key).context
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client_side = client.wrap_bio(c_in, c_out, server_hostname="localhost")
    server_side = server_context.wrap_bio(s_in, s_out, server_side=True)
    with pytest.raises(ssl.SSLWantReadError):
        client_side.do_handshake()
    s_in.write(c_out.read())
    with pytest.raises(ssl.SSLError) as refused:
        server_side.do_handshake()
    return refused.value.reason or "", s_out.read()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_server_refuses_tls_1_1_with_a_protocol_version_alert(tmp_path) -> None:
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    client.minimum_version = client.maximum_version = ssl.TLSVersion.TLSv1_1
    client.set_ciphers("DEFAULT@SECLEVEL=0")
    reason, written = server_refusal(tmp_path, client)
    assert reason == "UNSUPPORTED_PROTOCOL"
    assert written[:1] == b"\x15" and written[-1:] == b"\x46"  # an alert record: fatal protocol_version (70)


def test_the_server_refuses_cbc_suites_with_a_handshake_failure_alert(tmp_path) -> None:
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    client.set_ciphers("ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA")
    reason, written = server_refusal(tmp_path, client)
    assert reason == "NO_SHARED_CIPHER"
    assert written[:1] == b"\x15" and written[-1:] == b"\x28"  # fatal handshake_failure (40)
