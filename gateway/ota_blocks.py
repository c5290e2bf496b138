"""A bounded cache of OTA package blocks. Packages never change once stored (a new upload is a
new package), so a cached block is never stale. Devices downloading the same package at once
ask for the same blocks at once: one read from the store serves every request for a block."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable

ReadBlocks = Callable[[str, int, int], Awaitable[list[bytes]]]


class BlockCache:
    def __init__(self, read: ReadBlocks, capacity_bytes: int) -> None:
        self._read = read
        self._capacity = capacity_bytes
        self._bytes = 0
        self._blocks: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._loading: dict[tuple[str, int], asyncio.Future[None]] = {}

    @property
    def size_bytes(self) -> int:
        return self._bytes

    async def get(self, package_id: str, first: int, last: int) -> list[bytes]:
        """Blocks ``first`` to ``last`` of the package: from the cache, the rest in one read."""
        found: dict[int, bytes] = {}
        missing: list[int] = []
        waits: list[asyncio.Future[None]] = []
        for seq in range(first, last + 1):
            key = (package_id, seq)
            block = self._blocks.get(key)
            if block is not None:
                self._blocks.move_to_end(key)
                found[seq] = block
            elif (loading := self._loading.get(key)) is not None:
                waits.append(loading)
            else:
                missing.append(seq)
        if missing:
            found.update(await self._load(package_id, missing[0], missing[-1]))
        if waits:
            await asyncio.gather(*(asyncio.shield(w) for w in waits))
        blocks = []
        for seq in range(first, last + 1):
            block = found.get(seq)
            if block is None:
                block = self._blocks.get((package_id, seq))
            if block is None:  # evicted meanwhile, or a reader failed: read it alone
                block = (await self._load(package_id, seq, seq)).get(seq, b"")
            blocks.append(block)
        return blocks

    async def _load(self, package_id: str, first: int, last: int) -> dict[int, bytes]:
        loop = asyncio.get_running_loop()
        keys = [(package_id, seq) for seq in range(first, last + 1) if (package_id, seq) not in self._loading]
        done: asyncio.Future[None] = loop.create_future()
        for key in keys:
            self._loading[key] = done
        try:
            blocks = await self._read(package_id, first, last)
            read = {first + i: block for i, block in enumerate(blocks)}
            for seq, block in read.items():
                self._put((package_id, seq), block)
            return read
        finally:
            # Whatever happened, the waiters go on: they find the blocks cached, or read them themselves.
            for key in keys:
                if self._loading.get(key) is done:
                    del self._loading[key]
            done.set_result(None)

    def _put(self, key: tuple[str, int], block: bytes) -> None:
        if len(block) > self._capacity:
            return
        old = self._blocks.pop(key, None)
        if old is not None:
            self._bytes -= len(old)
        self._blocks[key] = block
        self._bytes += len(block)
        while self._bytes > self._capacity:
            _, evicted = self._blocks.popitem(last=False)
            self._bytes -= len(evicted)
