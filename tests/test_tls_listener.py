"""The TLS listener that does its handshakes itself (protocols.listeners with ``refused``), on
uvloop as the gateway runs and on asyncio's loop: every handshake completes however early the
ClientHello and the first request come, and a certificate refused in the handshake is told
with the client's address."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
import uvloop

from fleetgate.core.tasks import OwnedTasks
from fleetgate.protocols.listeners import listen
from tests.pki import self_signed

CLIENTS = 60


class Echo(asyncio.Protocol):
    """Answers each chunk with itself, once its TLS transport is handed over."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


def server_context(directory: Path) -> ssl.SSLContext:
    cert, key = self_signed(directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    # Client certificates asked for and checked against no anchor: any one presented is refused.
    context.verify_mode = ssl.CERT_OPTIONAL
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def client_context(cert_dir: Path | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if cert_dir is not None:
        context.load_cert_chain(*self_signed(cert_dir))
    return context


async def scenario(directory: Path) -> tuple[list[bytes], list[str], int]:
    refused: list[str] = []
    tasks = OwnedTasks()
    (directory / "server").mkdir()
    server, port = await listen(Echo, "127.0.0.1", 0, server_context(directory / "server"), 5.0,
                                refused=refused.append, spawn=tasks.spawn)
    plain = client_context()

    async def one(n: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=plain)
        writer.write(b"hello %d" % n)  # right after the handshake, maybe in the gap before the hand-over
        try:
            return await reader.readexactly(len(b"hello %d" % n))
        finally:
            writer.close()

    async def with_unknown_certificate() -> None:
        (directory / "client").mkdir()
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(directory / "client"))
        writer.write(b"x")
        try:
            # TLS 1.3: the server's verdict on the certificate comes after the client's Finished.
            with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
                await reader.readexactly(1)
        finally:
            writer.close()

    try:
        async with asyncio.timeout(20):
            answers = await asyncio.gather(*(one(n) for n in range(CLIENTS)))
            await with_unknown_certificate()
    finally:
        server.close()
        await tasks.finish()
    return answers, refused, CLIENTS


LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "uvloop": uvloop.new_event_loop, "asyncio": asyncio.new_event_loop}


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_every_handshake_completes_and_refusals_name_the_address(loop: str, tmp_path: Path) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        answers, refused, clients = runner.run(scenario(tmp_path))
    assert answers == [b"hello %d" % n for n in range(clients)]
    assert refused == ["127.0.0.1"]
