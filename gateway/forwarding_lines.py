"""The outbox's compact form of property reports: one line a message, cut, not parsed, at delivery.

A batch's property reports for one lane are stored as ``MARK`` then one line each, joined by
``\\n``: ``device id \\x1f ts \\x1f service \\x1f properties`` (the service as JSON, or empty for
ThingsBoard's telemetry; the properties as the JSON object written at ingest). The delivery of a
plain rule (no where, select or app id) splices each line's fields into IoTDA's push JSON without
decoding them into Python objects: JSON written by orjson holds no raw control character, so the
separators cannot occur inside a field. A message of several readings, or a device id that is
not plain text, is a line holding its entry as JSON (``[device id, [[ts, {...}], ...], services?]``),
decoded when it is delivered.

Everything else sees the lines as the entries they stand for (:class:`ReportLines`, a sequence).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

import orjson

MARK = b"\x1e"  # what begins the lines form; the other form is a JSON array, "["
_SEP = b"\x1f"


def prefix(device_id: str) -> bytes | None:
    """What a line of the device begins with; None for an id that is not plain text (its lines are JSON)."""
    if device_id.isprintable() and "\x1f" not in device_id and device_id[:1] != "[":
        return device_id.encode() + _SEP
    return None


def single(start: bytes, ts: int, service: str | None, properties: Any) -> bytes:
    """The line of a message of one reading; ``start``: its device's prefix()."""
    return b"%s%d\x1f%s\x1f%s" % (start, ts, orjson.dumps(service) if service else b"", orjson.dumps(properties))


def line(device_id: str, readings: list[tuple[int, Any]], services: list[str | None] | None) -> bytes:
    """One message's line; ``readings`` are ``(ts, properties)``, properties as orjson writes them."""
    start = prefix(device_id)
    if len(readings) == 1 and start is not None:
        return single(start, readings[0][0], services[0] if services else None, readings[0][1])
    return orjson.dumps([device_id, readings, services] if services else [device_id, readings])


def lines(entries: list[bytes]) -> str:
    return (MARK + b"\n".join(entries)).decode()


class ReportLines(Sequence[Any]):
    """The entries of an outbox row in the lines form: ``raw`` for the delivery's fast path, each
    decoded into its entry (``[device id, [[ts, {...}]], services?]``) when asked for."""

    __slots__ = ("raw",)

    def __init__(self, text: str | bytes) -> None:
        data = text.encode() if isinstance(text, str) else text
        self.raw: list[bytes] = data[len(MARK):].split(b"\n")

    def __len__(self) -> int:
        return len(self.raw)

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [decode(r) for r in self.raw[index]]
        return decode(self.raw[index])

    def __iter__(self) -> Iterator[Any]:
        return (decode(r) for r in self.raw)

    def devices(self, start: int = 0) -> set[str]:
        return {device_of(r) for r in self.raw[start:]}


def device_of(raw: bytes) -> str:
    if raw[:1] == b"[":
        return orjson.loads(raw)[0]
    return raw[:raw.index(_SEP)].decode()


def decode(raw: bytes) -> list[Any]:
    if raw[:1] == b"[":
        return orjson.loads(raw)
    device_id, ts, service, properties = raw.split(_SEP, 3)
    entry: list[Any] = [device_id.decode(), [[int(ts), orjson.loads(properties)]]]
    if service:
        entry.append([orjson.loads(service)])
    return entry


def entries_of(text: str | bytes) -> Sequence[Any]:
    """An outbox row's entries column, in either form."""
    if (text[:1] == "\x1e") if isinstance(text, str) else text.startswith(MARK):
        return ReportLines(text)
    return orjson.loads(text)
