"""A bare MQTT client over a socket, for the wire-level tests: it sends exactly the bytes it is given."""

from __future__ import annotations

import asyncio

from fleetgate.protocols.mqtt import codec
from fleetgate.protocols.mqtt.packets import Connect, Packet


class RawMqtt:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, level: int) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = codec.Decoder(protocol_level=level)
        self.level = level
        self._ready: list[Packet] = []

    @classmethod
    async def open(cls, port: int, level: int = 4) -> RawMqtt:
        return cls(*await asyncio.open_connection("127.0.0.1", port), level)

    async def send(self, data: bytes | Packet) -> None:
        self.writer.write(data if isinstance(data, bytes) else codec.encode(data, self.level))
        await self.writer.drain()

    async def connect(self, username: str | None = None, keep_alive: int = 60, **fields) -> Packet:
        await self.send(Connect(self.level, fields.pop("client_id", ""), keep_alive=keep_alive, username=username,
                                **fields))
        return await self.packet()

    async def raw(self, count: int, timeout: float = 5) -> bytes:
        async with asyncio.timeout(timeout):
            return await self.reader.readexactly(count)

    async def packet(self, timeout: float = 5) -> Packet:
        async with asyncio.timeout(timeout):
            while not self._ready:
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError("closed by the gateway")
                self._ready.extend(self.decoder.feed(data))
        return self._ready.pop(0)

    async def closed(self, timeout: float = 5) -> bool:
        """True once the gateway has closed the connection (whatever it sent before)."""
        async with asyncio.timeout(timeout):
            while await self.reader.read(65536):
                pass
        return True

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass
