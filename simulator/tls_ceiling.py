"""The mtls bench's baseline: what one TLS handshake costs on this machine, with no gateway.

Mutual TLS handshakes, each side in memory (ssl.MemoryBIO, no socket, no event loop),
with a server context set up as the gateway sets up its device listener's (the bench's
server certificate, client certificates asked for, the device CA the only anchor) and a
device's client context. The CPU time each side spends is the floor under any connection
a second: a process doing nothing but handshakes manages 1 / (its cost) of them on one core.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass

_ROUNDS = 10  # a TLS 1.3 mutual handshake takes two or three; more means it went wrong


@dataclass(frozen=True, slots=True)
class HandshakeCost:
    server_ms: float
    client_ms: float

    @property
    def server_ceiling_per_s(self) -> float:
        """Handshakes a second one core of the server could do, and nothing else."""
        return 1000 / self.server_ms if self.server_ms else 0.0


def handshake_cost(server_cert: str, server_key: str, ca_pem: str, anchor_pem: str, device_pem: str,
                   count: int = 200) -> HandshakeCost:
    server_context = _server_context(server_cert, server_key, anchor_pem)
    client_context = ssl.create_default_context(cadata=ca_pem)
    client_context.check_hostname = False
    client_context.load_cert_chain(device_pem)
    server_s = client_s = 0.0
    for _ in range(count):
        spent = _one(server_context, client_context)
        server_s += spent[0]
        client_s += spent[1]
    return HandshakeCost(1000 * server_s / count, 1000 * client_s / count)


def _server_context(cert_file: str, key_file: str, anchor_pem: str) -> ssl.SSLContext:
    """What the gateway's device listener hands a handshake: TLS 1.2 or later with its ECDHE
    AEAD suites, a client certificate asked for, the anchor alone trusted (no system CAs,
    whose store also makes each handshake dearer) and allowed to be an intermediate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL")
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    context.load_cert_chain(cert_file, key_file)
    context.verify_mode = ssl.CERT_OPTIONAL
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.load_verify_locations(cadata=anchor_pem)
    return context


def _one(server_context: ssl.SSLContext, client_context: ssl.SSLContext) -> tuple[float, float]:
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_in, client_in = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_context.wrap_bio(server_in, to_client, server_side=True)
    client = client_context.wrap_bio(client_in, to_server)
    server_s = client_s = 0.0
    client_done = server_done = False
    for _ in range(_ROUNDS):
        started = time.process_time()
        client_done = _step(client)
        client_s += time.process_time() - started
        server_in.write(to_server.read())
        started = time.process_time()
        server_done = _step(server)
        server_s += time.process_time() - started
        client_in.write(to_client.read())
        if client_done and server_done:
            return server_s, client_s
    raise RuntimeError("the in-memory TLS handshake did not complete")


def _step(side: ssl.SSLObject) -> bool:
    try:
        side.do_handshake()
    except ssl.SSLWantReadError:
        return False
    return True
