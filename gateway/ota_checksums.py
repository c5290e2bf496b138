"""The checksums ThingsBoard offers for OTA packages, computed incrementally as an upload streams.

Each is written as ThingsBoard writes it (Guava's ``HashCode.toString()``): lowercase hex of the
hash's bytes. For CRC32 and MURMUR3_32 those bytes are the 32-bit value little-endian, and for
MURMUR3_128 the two 64-bit halves little-endian, which is what ThingsBoard's device SDKs compare.
"""

from __future__ import annotations

import enum
import hashlib
import zlib
from typing import Protocol

import mmh3


class ChecksumAlgorithm(enum.Enum):
    MD5 = "MD5"
    SHA256 = "SHA256"
    SHA384 = "SHA384"
    SHA512 = "SHA512"
    CRC32 = "CRC32"
    MURMUR3_32 = "MURMUR3_32"
    MURMUR3_128 = "MURMUR3_128"


class Hasher(Protocol):
    def update(self, data: bytes) -> None: ...

    def hexdigest(self) -> str: ...


class _Crc32:
    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: bytes) -> None:
        self._value = zlib.crc32(data, self._value)

    def hexdigest(self) -> str:
        return self._value.to_bytes(4, "little").hex()


class _Murmur:
    """mmh3's streaming hashers; their digest() is already Guava's byte order."""

    __slots__ = ("_hasher",)

    def __init__(self, hasher: mmh3.mmh3_32 | mmh3.mmh3_x64_128) -> None:
        self._hasher = hasher

    def update(self, data: bytes) -> None:
        self._hasher.update(data)

    def hexdigest(self) -> str:
        return self._hasher.digest().hex()


def hasher(algorithm: ChecksumAlgorithm) -> Hasher:
    if algorithm is ChecksumAlgorithm.CRC32:
        return _Crc32()
    if algorithm is ChecksumAlgorithm.MURMUR3_32:
        return _Murmur(mmh3.mmh3_32())
    if algorithm is ChecksumAlgorithm.MURMUR3_128:
        return _Murmur(mmh3.mmh3_x64_128())
    return hashlib.new(algorithm.value.lower())


def checksum(algorithm: ChecksumAlgorithm, data: bytes) -> str:
    """The checksum of ``data`` whole (for tests and small payloads)."""
    h = hasher(algorithm)
    h.update(data)
    return h.hexdigest()
