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
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fleetgate.core.operations import NO_PARAMS, Params

T = TypeVar("T")
_MAX_ID = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Match(Generic[T]):
    """The targets at an address, by method, and what its placeholders held."""

    pattern: str
    targets: Mapping[str, T]
    params: Params


def _parse_int(segment: str) -> int | None:
    if segment.isascii() and segment.isdigit() and len(segment) <= 10:
        value = int(segment)
        return value if value <= _MAX_ID else None
    return None


@dataclass(frozen=True, slots=True)
class _Pattern:
    text: str
    length: int
    literals: tuple[tuple[int, str], ...]  # (index, segment) of each literal segment
    holes: tuple[tuple[int, str, bool], ...]  # (index, name, as int) of each placeholder
    prefix: str  # the literal start, up to the first placeholder

    @classmethod
    def compile(cls, text: str, separator: str) -> _Pattern:
        segments = text.split(separator)
        holes, literals = [], []
        for index, segment in enumerate(segments):
            if segment.startswith("{") and segment.endswith("}"):
                name, _, kind = segment[1:-1].partition(":")
                if kind not in ("", "int"):
                    raise ValueError(f"unknown placeholder type in {text!r}: {kind}")
                holes.append((index, name, kind == "int"))
            else:
                literals.append((index, segment))
        first = holes[0][0] if holes else len(segments)
        prefix = separator.join(segments[:first]) + (separator if holes else "")
        return cls(text, len(segments), tuple(literals), tuple(holes), prefix)

    def match(self, parts: list[str]) -> Params | None:
        if len(parts) != self.length:
            return None
        for index, segment in self.literals:
            if parts[index] != segment:
                return None
        params: dict[str, Any] = {}
        for index, name, as_int in self.holes:
            value: Any = parts[index]
            if as_int and (value := _parse_int(value)) is None:
                return None
            params[name] = value
        return params


class RouteTable(Generic[T]):
    """Rows of (method, pattern, target); ``match`` finds an address's targets."""

    def __init__(self, rows: Iterable[tuple[str, str, T]], separator: str = "/") -> None:
        self._separator = separator
        self._exact: dict[str, Match[T]] = {}
        by_pattern: dict[str, dict[str, T]] = {}
        for method, pattern, target in rows:
            methods = by_pattern.setdefault(pattern, {})
            if method in methods:
                raise ValueError(f"two routes for {method} {pattern}")
            methods[method] = target
        self._patterns: list[tuple[_Pattern, Mapping[str, T]]] = []
        for text, targets in by_pattern.items():
            compiled = _Pattern.compile(text, separator)
            if compiled.holes:
                self._patterns.append((compiled, targets))
            else:
                self._exact[text] = Match(text, targets, NO_PARAMS)
        self.rows = tuple((method, pattern, target) for pattern, targets in by_pattern.items()
                          for method, target in targets.items())

    def match(self, address: str) -> Match[T] | None:
        exact = self._exact.get(address)
        if exact is not None:
            return exact
        parts: list[str] | None = None
        for pattern, targets in self._patterns:
            if address.startswith(pattern.prefix):
                if parts is None:
                    parts = address.split(self._separator)
                params = pattern.match(parts)
                if params is not None:
                    return Match(pattern.text, targets, params)
        return None


def render(pattern: str, params: Params) -> str:
    """An address from a pattern and the params of the address that asked (a reply topic)."""
    for name, value in params.items():
        pattern = pattern.replace(f"{{{name}:int}}", str(value)).replace(f"{{{name}}}", str(value))
    return pattern
