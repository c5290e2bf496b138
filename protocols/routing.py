"""Route tables: wire addresses (MQTT topics, HTTP and CoAP paths) to what serves them.

A pattern is an address with placeholders for whole segments: ``{token}`` takes
any segment (an empty one too: it is then refused as unknown credentials), ``{request_id:int}`` a decimal id as ThingsBoard parses it
(Java's Integer.parseInt: digits, at most 2^31 - 1). Addresses without
placeholders are found in one dict lookup, and win over patterns, so
``/api/v1/me/telemetry`` is not ``/api/v1/{token}/telemetry`` with the token "me".
A table maps each pattern to one target per method (MQTT has no method: ``""``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from operator import itemgetter
from types import MappingProxyType
from typing import Any, Generic, NamedTuple, TypeVar

from fleetgate.core.operations import NO_PARAMS, Params

T = TypeVar("T")
_MAX_ID = 2**31 - 1
# Addresses with placeholders matched lately, and their matches: a device sends to the same
# address again and again (its token is in the path), and finding a match again cost about
# 1.5 µs of a device HTTP request's 30 (measured with the HTTP device API on this project's
# machine). Cleared when full.
_MAX_RECENT = 10_000


class Match(NamedTuple, Generic[T]):
    """The targets at an address, by method, and what its placeholders held. A named tuple: one is
    made for each request to an address with placeholders, in half a frozen dataclass's time."""

    pattern: str
    targets: Mapping[str, T]
    params: Params


def _parse_int(segment: str) -> int | None:
    if segment.isascii() and segment.isdigit() and len(segment) <= 10:
        value = int(segment)
        return value if value <= _MAX_ID else None
    return None


class _Pattern(Generic[T]):
    """One address with placeholders: its literal segments are compared in one C-level call."""

    __slots__ = ("_expected", "_holes", "_literals", "length", "targets", "text")

    def __init__(self, text: str, separator: str, targets: Mapping[str, T]) -> None:
        segments = text.split(separator)
        holes, indexes, expected = [], [], []
        for index, segment in enumerate(segments):
            if segment.startswith("{") and segment.endswith("}"):
                name, _, kind = segment[1:-1].partition(":")
                if kind not in ("", "int"):
                    raise ValueError(f"unknown placeholder type in {text!r}: {kind}")
                holes.append((index, name, kind == "int"))
            else:
                indexes.append(index)
                expected.append(segment)
        self.text = text
        self.targets = targets
        self.length = len(segments)
        self._holes: tuple[tuple[int, str, bool], ...] = tuple(holes)
        # itemgetter of one index returns the item, of several a tuple: compare likewise.
        self._literals = itemgetter(*indexes) if indexes else (lambda parts: ())
        self._expected: Any = expected[0] if len(expected) == 1 else tuple(expected)

    @property
    def has_holes(self) -> bool:
        return bool(self._holes)

    def match(self, parts: list[str]) -> Params | None:
        """What the placeholders hold, for an address of this pattern's length; None if not this one."""
        if self._literals(parts) != self._expected:
            return None
        params: dict[str, Any] = {}
        for index, name, as_int in self._holes:
            if as_int:
                if (number := _parse_int(parts[index])) is None:
                    return None
                params[name] = number
            else:
                params[name] = parts[index]
        return params


class RouteTable(Generic[T]):
    """Rows of (method, pattern, target); ``match`` finds an address's targets."""

    def __init__(self, rows: Iterable[tuple[str, str, T]], separator: str = "/") -> None:
        self._separator = separator
        self._exact: dict[str, Match[T]] = {}
        self._recent: dict[str, Match[T]] = {}
        by_pattern: dict[str, dict[str, T]] = {}
        for method, pattern, target in rows:
            methods = by_pattern.setdefault(pattern, {})
            if method in methods:
                raise ValueError(f"two routes for {method} {pattern}")
            methods[method] = target
        # Patterns with placeholders, by their number of segments, in the order given.
        self._by_length: dict[int, list[_Pattern[T]]] = {}
        for text, targets in by_pattern.items():
            compiled = _Pattern(text, separator, targets)
            if compiled.has_holes:
                self._by_length.setdefault(compiled.length, []).append(compiled)
            else:
                self._exact[text] = Match(text, targets, NO_PARAMS)
        self.rows = tuple((method, pattern, target) for pattern, targets in by_pattern.items()
                          for method, target in targets.items())

    def match(self, address: str) -> Match[T] | None:
        found = self._exact.get(address)
        if found is None:
            found = self._recent.get(address)
        if found is not None:
            return found
        parts = address.split(self._separator)
        for pattern in self._by_length.get(len(parts), ()):
            params = pattern.match(parts)
            if params is not None:
                if len(self._recent) >= _MAX_RECENT:
                    self._recent.clear()
                found = self._recent[address] = Match(pattern.text, pattern.targets, MappingProxyType(params))
                return found
        return None


def render(pattern: str, params: Params) -> str:
    """An address from a pattern and the params of the address that asked (a reply topic)."""
    for name, value in params.items():
        pattern = pattern.replace(f"{{{name}:int}}", str(value)).replace(f"{{{name}}}", str(value))
    return pattern
