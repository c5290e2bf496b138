"""A raw CoAP endpoint for tests that need to see every datagram (empty ACKs, retransmissions):
a UDP socket, with aiocoap's Message used only to encode and decode the bytes."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from aiocoap import Message
from aiocoap.numbers.types import Type


class _Queue(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.put_nowait(data)


class RawCoap:
    def __init__(self, transport: asyncio.DatagramTransport, protocol: _Queue) -> None:
        self._transport = transport
        self._protocol = protocol

    @classmethod
    async def open(cls, port: int) -> RawCoap:
        transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
            _Queue, remote_addr=("127.0.0.1", port))
        return cls(transport, protocol)

    def close(self) -> None:
        self._transport.close()

    def send_bytes(self, data: bytes) -> None:
        self._transport.sendto(data)

    def send(self, message: Message) -> bytes:
        data = message.encode()
        self._transport.sendto(data)
        return data

    async def receive_bytes(self, timeout: float = 5) -> bytes:
        async with asyncio.timeout(timeout):
            return await self._protocol.received.get()

    async def receive(self, timeout: float = 5) -> Message:
        return Message.decode(await self.receive_bytes(timeout))

    def nothing_received(self) -> bool:
        return self._protocol.received.empty()


def request(code: Any, path: str, payload: bytes = b"", *, mid: int | None = None, con: bool = True,
            **options: Any) -> Message:
    # aiocoap deprecates choosing type and message id (its library manages them); a raw endpoint must.
    message = Message(_mtype=Type.CON if con else Type.NON, _mid=secrets.randbelow(65536) if mid is None else mid,
                      code=code, payload=payload, uri_path=tuple(path.strip("/").split("/")),
                      **options)
    message.token = secrets.token_bytes(4)
    return message


def ack(to: Message) -> Message:
    from aiocoap import Code

    return Message(_mtype=Type.ACK, _mid=to.mid, code=Code.EMPTY)
