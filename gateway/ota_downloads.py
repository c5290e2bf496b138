"""Devices downloading their OTA package in chunks, on MQTT, HTTP and CoAP alike.

A chunk is ``size`` bytes at ``chunk * size`` (size 0: the whole package), read from the
package's stored blocks through a bounded cache, so a thousand devices fetching the same
package read each block from PostgreSQL once. One chunk past the end is empty (ThingsBoard's
HTTP SDK asks for one more); a chunk beyond that is refused. The limits: a chunk is at most
``max_chunk_bytes``, at most ``max_in_flight`` chunks are read at once (more wait their turn,
up to ``max_waiting``), and each device's chunk requests are rate-limited.

On MQTT the request names neither the package nor the chunk size after the first: the
package a request id started with, and its chunk size, are remembered for that id, as
ThingsBoard does, so an assignment changed mid-download cannot mix two packages.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from fleetgate.core import codec
from fleetgate.core.buckets import TokenBuckets
from fleetgate.core.errors import InvalidInput, PayloadTooLarge, TooManyRequests
from fleetgate.core.model import DeviceIdentity
from fleetgate.core.ota_blocks import BlockCache
from fleetgate.core.ota_metrics import CHUNKS, CHUNK_BYTES, REFUSALS
from fleetgate.core.ota_model import (
    BLOCK_BYTES, NoPackageAssigned, OtaPackage, OtaType, PackageMismatch, WrongChunk,
)
from fleetgate.core.ports import OtaStore

_MAX_CHUNK_NUMBER = 2**31 - 1
# MQTT request ids remembered (ThingsBoard keeps them per session): the oldest go first.
_MAX_REQUESTS = 100_000


@dataclass(frozen=True, slots=True)
class DownloadLimits:
    max_chunk_bytes: int = 1024 * 1024
    max_in_flight: int = 64
    max_waiting: int = 10_000
    chunk_rate_per_device: float = 200.0
    chunk_burst_per_device: int = 400
    cache_bytes: int = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ChunkRequest:
    """What a device asks for: ``title`` and ``version`` (HTTP and CoAP) must be its package's."""

    chunk: int
    size: int
    title: str | None = None
    version: str | None = None


def chunk_span(package_size: int, size: int, chunk: int, max_chunk: int) -> tuple[int, int]:
    """(offset, length) of chunk ``chunk`` of ``size`` bytes (0: the whole package)."""
    if size <= 0:
        size = package_size
    if size > max_chunk:
        raise PayloadTooLarge(
            f"A chunk is at most {max_chunk} bytes (ota_max_chunk_bytes): ask for the package in smaller chunks"
        )
    count = -(-package_size // size)
    if not 0 <= chunk <= count:
        raise WrongChunk(
            f"Chunk {chunk} does not exist: the package has {count} chunks of {size} bytes (0 to {count - 1})"
        )
    offset = chunk * size
    return offset, max(0, min(size, package_size - offset))


def query_request(body: bytes) -> ChunkRequest:
    """HTTP's and CoAP's ``?title=&version=&size=&chunk=`` (in the body's JSON form)."""
    query = codec.loads(body)
    if not isinstance(query, dict):
        raise InvalidInput("Expected the query parameters title, version, size and chunk")
    title, version = query.get("title") or None, query.get("version") or None
    return ChunkRequest(_number(query.get("chunk"), "chunk"), _number(query.get("size"), "size"), title, version)


def _number(raw: Any, name: str) -> int:
    if raw is None or raw == "":
        return 0
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 10 and int(raw) <= _MAX_CHUNK_NUMBER:
        return int(raw)
    raise WrongChunk(f"{name} must be a whole number from 0 to {_MAX_CHUNK_NUMBER}")


class OtaDownloads:
    def __init__(self, store: OtaStore, limits: DownloadLimits = DownloadLimits()) -> None:
        self._store = store
        self.limits = limits
        self._blocks = BlockCache(store.read_blocks, limits.cache_bytes)
        self._slots = asyncio.Semaphore(limits.max_in_flight)
        self._waiting = 0
        self._reading = 0
        self._rate = TokenBuckets(limits.chunk_rate_per_device, limits.chunk_burst_per_device)
        self._requests: OrderedDict[tuple[str, OtaType, int], tuple[OtaPackage, int]] = OrderedDict()

    @property
    def in_flight(self) -> int:
        """Chunks being read or waiting their turn (the gateway_ota_chunks_in_flight gauge)."""
        return self._reading + self._waiting

    def mqtt_chunk(
        self, device: DeviceIdentity, kind: OtaType, request_id: int, chunk: str, body: bytes
    ) -> Awaitable[bytes]:
        """``v2/fw/request/{request_id}/chunk/{chunk}`` with the chunk size in ASCII (empty: the
        size this request id asked for before, or the whole package)."""
        number = _number(chunk, "The chunk number")
        text = body.decode("ascii", "replace").strip()
        size = _number(text, "The chunk size") if text else None
        self._take(device, kind)
        return self._mqtt(device, kind, request_id, number, size)

    def query_chunk(
        self, device: DeviceIdentity, kind: OtaType, body: bytes, *, counted: bool = True
    ) -> Awaitable[bytes]:
        """``counted``: False for CoAP's later Block2 blocks of a chunk, already rate-limited once."""
        request = query_request(body)
        if counted:
            self._take(device, kind)
        return self._query(device, kind, request)

    async def _mqtt(self, device: DeviceIdentity, kind: OtaType, request_id: int, chunk: int,
                    size: int | None) -> bytes:
        key = (device.device_id, kind, request_id)
        known = self._requests.get(key)
        if known is None:
            package = await self._assigned(device, kind)
        else:
            package = known[0]
            self._requests.move_to_end(key)
            if size is None:
                size = known[1]
        size = size or 0
        self._requests[key] = (package, size)
        if len(self._requests) > _MAX_REQUESTS:
            self._requests.popitem(last=False)
        return await self._serve(package, size, chunk, "mqtt")

    async def _query(self, device: DeviceIdentity, kind: OtaType, request: ChunkRequest) -> bytes:
        package = await self._assigned(device, kind)
        if (request.title is not None and request.title != package.title) or (
            request.version is not None and request.version != package.version
        ):
            REFUSALS.labels(kind.value, "mismatch").inc()
            raise PackageMismatch(
                f"The {kind.value.lower()} assigned to this device is {package.title} {package.version}, "
                f"not {request.title} {request.version}"
            )
        return await self._serve(package, request.size, request.chunk, "query")

    async def _assigned(self, device: DeviceIdentity, kind: OtaType) -> OtaPackage:
        assignment = await self._store.assigned(device.device_id, kind)
        if assignment is None:
            REFUSALS.labels(kind.value, "none_assigned").inc()
            raise NoPackageAssigned(f"No {kind.value.lower()} is assigned to this device or its product")
        return assignment.package

    async def _serve(self, package: OtaPackage, size: int, chunk: int, via: str) -> bytes:
        try:
            offset, length = chunk_span(package.size, size, chunk, self.limits.max_chunk_bytes)
        except InvalidInput as exc:
            REFUSALS.labels(package.type.value, "too_large" if isinstance(exc, PayloadTooLarge) else "chunk").inc()
            raise
        if length == 0:
            return b""
        if self._slots.locked() and self._waiting >= self.limits.max_waiting:
            REFUSALS.labels(package.type.value, "busy").inc()
            raise TooManyRequests("Too many OTA downloads at once; retry later")
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        self._reading += 1
        try:
            data = await self._read(package.id, offset, length)
        finally:
            self._reading -= 1
            self._slots.release()
        CHUNKS.counts[(package.type.value,)] += 1
        CHUNK_BYTES.counts[(package.type.value,)] += length
        return data

    async def _read(self, package_id: str, offset: int, length: int) -> bytes:
        first, last = offset // BLOCK_BYTES, (offset + length - 1) // BLOCK_BYTES
        blocks = await self._blocks.get(package_id, first, last)
        start = offset - first * BLOCK_BYTES
        if len(blocks) == 1:
            return blocks[0][start:start + length]
        return b"".join(blocks)[start:start + length]

    def _take(self, device: DeviceIdentity, kind: OtaType) -> None:
        wait = self._rate.take(device.device_id)
        if wait:
            REFUSALS.labels(kind.value, "rate").inc()
            raise TooManyRequests("Too many OTA chunk requests from this device; retry later", wait)
