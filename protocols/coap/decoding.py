"""A datagram aiocoap cannot decode is dropped with a warning, whatever made it undecodable.

aiocoap 0.4's UDP transport drops a datagram whose decoding raises UnparsableMessage, but a
string option (Uri-Path, Uri-Query, Uri-Host, Location-*, Proxy-*) that is not UTF-8 makes
``Message.decode`` raise UnicodeDecodeError, which nothing catches: it escapes the socket's
read callback, and asyncio logs it at ERROR with a traceback, for every such datagram a
client sends (found by the CoAP fuzzing in tests/test_fuzz_coap.py). The gateway treats it
as aiocoap treats any unparsable datagram: one warning line, no answer.

``guard_decoding`` wraps one UDP endpoint instance's ``datagram_msg_received`` (aiocoap 0.4's
name, checked at install); the request path costs one ``try`` more.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def guard_decoding(endpoint: Any) -> None:
    """Make ``endpoint`` (aiocoap's UDP message interface, the socket's protocol) drop the
    datagrams whose string options are not UTF-8 instead of raising from the read callback."""
    received = getattr(endpoint, "datagram_msg_received", None)
    if not callable(received):
        raise RuntimeError("aiocoap's UDP endpoint has no datagram_msg_received: unsupported aiocoap version")

    def datagram_msg_received(data: bytes, ancdata: Any, flags: int, address: Any) -> None:
        try:
            received(data, ancdata, flags, address)
        except UnicodeDecodeError:
            # From Message.decode: the site answers whatever it is handed (at worst 5.00), and an
            # error from dispatching would have been logged at ERROR by aiocoap first.
            log.warning("Ignoring unparsable message from %s: a string option is not UTF-8", address)

    endpoint.datagram_msg_received = datagram_msg_received
