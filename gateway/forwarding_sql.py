"""The subset of IoTDA's forwarding SQL a rule's ``where`` and ``select`` may use.

Parsed when the rule is created or changed (anything outside the subset is InvalidInput, a 400),
then evaluated on each notification, a JSON object like IoTDA's
(``{"resource", "event", "event_time", "notify_data": {"header": {...}, "body": {...}}}``).

- A path names a field: ``notify_data.body.services[0].properties.temperature``; names are letters,
  digits, ``_`` (or any text between double quotes, for a name with ``-``); ``[n]`` indexes a list.
- ``where``: comparisons ``path op literal`` (or ``literal op path``), op one of ``= != <> < <= > >=``,
  literals 'strings', numbers, ``true``, ``false``; ``path IS [NOT] NULL``; AND, OR, NOT and
  parentheses. A path that is missing, or a comparison of a number with a string, is unknown
  (SQL's NULL): the notification matches only when the whole condition is true.
- ``select``: ``*``, or paths and literals separated by commas, each with an optional ``AS name``
  (required for a literal); the forwarded JSON is then ``{name or path: value}``.

IoTDA's functions (``concat``, ``substring``...), arithmetic, IN, LIKE and sub-queries are outside
the subset, and so refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fleetgate.core.errors import InvalidInput

MAX_LENGTH = 500  # IoTDA's bound on each clause

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<string>'(?:[^']|'')*')
    | (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
    | (?P<op><>|!=|<=|>=|=|<|>)
    | (?P<punct>[(),.*\[\]])
    | (?P<quoted>"[^"]+")
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    )""", re.VERBOSE)
_KEYWORDS = {"AND", "OR", "NOT", "AS", "IS", "NULL", "TRUE", "FALSE"}
_MISSING = object()

Condition = Callable[[Any], "bool | None"]


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # string, number, op, punct, name, keyword, end
    text: str
    value: Any = None


def _tokens(text: str, clause: str) -> list[_Token]:
    if len(text) > MAX_LENGTH:
        raise InvalidInput(f"{clause} is longer than {MAX_LENGTH} characters")
    found: list[_Token] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise InvalidInput(f"{clause}: unexpected {text[position:].strip()[:20]!r} (outside the supported subset)")
        position = match.end()
        kind = match.lastgroup
        raw = match.group(kind)  # type: ignore[arg-type]
        if kind == "string":
            found.append(_Token("string", raw, raw[1:-1].replace("''", "'")))
        elif kind == "number":
            found.append(_Token("number", raw, float(raw) if any(c in raw for c in ".eE") else int(raw)))
        elif kind == "quoted":
            found.append(_Token("name", raw, raw[1:-1]))
        elif kind == "word" and raw.upper() in _KEYWORDS:
            found.append(_Token("keyword", raw.upper()))
        elif kind == "word":
            found.append(_Token("name", raw, raw))
        else:
            found.append(_Token(kind, raw))  # type: ignore[arg-type]
    found.append(_Token("end", ""))
    return found


class _Parser:
    def __init__(self, text: str, clause: str) -> None:
        self._clause = clause
        self._tokens = _tokens(text, clause)
        self._at = 0

    @property
    def peek(self) -> _Token:
        return self._tokens[self._at]

    def take(self) -> _Token:
        token = self._tokens[self._at]
        self._at += 1
        return token

    def accept(self, kind: str, text: str | None = None) -> _Token | None:
        token = self.peek
        if token.kind == kind and (text is None or token.text == text):
            return self.take()
        return None

    def expect(self, kind: str, text: str | None = None) -> _Token:
        token = self.accept(kind, text)
        if token is None:
            self.fail(f"expected {text or kind}")
        return token  # type: ignore[return-value]

    def fail(self, why: str) -> None:
        near = self.peek.text or "the end"
        raise InvalidInput(f"{self._clause}: {why} near {near!r} (outside the supported subset)")

    def path(self) -> tuple[str | int, ...]:
        steps: list[str | int] = [self.expect("name").value]
        while True:
            if self.accept("punct", "."):
                steps.append(self.expect("name").value)
            elif self.accept("punct", "["):
                index = self.expect("number").value
                if not isinstance(index, int) or index < 0:
                    self.fail("an index must be a whole number")
                steps.append(index)
                self.expect("punct", "]")
            else:
                return tuple(steps)

    def literal(self) -> tuple[bool, Any]:
        token = self.peek
        if token.kind in ("string", "number"):
            self.take()
            return True, token.value
        if token.kind == "keyword" and token.text in ("TRUE", "FALSE"):
            self.take()
            return True, token.text == "TRUE"
        return False, None

    # where

    def disjunction(self) -> Condition:
        terms = [self.conjunction()]
        while self.accept("keyword", "OR"):
            terms.append(self.conjunction())
        return terms[0] if len(terms) == 1 else _any(terms)

    def conjunction(self) -> Condition:
        terms = [self.negation()]
        while self.accept("keyword", "AND"):
            terms.append(self.negation())
        return terms[0] if len(terms) == 1 else _all(terms)

    def negation(self) -> Condition:
        if self.accept("keyword", "NOT"):
            inner = self.negation()
            return lambda data: None if (value := inner(data)) is None else not value
        if self.accept("punct", "("):
            inner = self.disjunction()
            self.expect("punct", ")")
            return inner
        return self.comparison()

    def comparison(self) -> Condition:
        is_literal, left_value = self.literal()
        if is_literal:
            op = self.expect("op").text
            return _compare(self.path(), _FLIPPED[op], left_value)
        path = self.path()
        if self.accept("keyword", "IS"):
            negated = self.accept("keyword", "NOT") is not None
            self.expect("keyword", "NULL")
            return lambda data: (_resolve(data, path) in (None, _MISSING)) != negated
        op = self.expect("op").text
        is_literal, value = self.literal()
        if not is_literal:
            self.fail("a comparison's other side must be a literal")
        return _compare(path, op, value)


_FLIPPED = {"=": "=", "!=": "!=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _any(terms: list[Condition]) -> Condition:
    def either(data: Any) -> bool | None:
        unknown = False
        for term in terms:
            value = term(data)
            if value:
                return True
            unknown = unknown or value is None
        return None if unknown else False
    return either


def _all(terms: list[Condition]) -> Condition:
    def both(data: Any) -> bool | None:
        unknown = False
        for term in terms:
            value = term(data)
            if value is False:
                return False
            unknown = unknown or value is None
        return None if unknown else True
    return both


def _compare(path: tuple[str | int, ...], op: str, literal: Any) -> Condition:
    def compare(data: Any) -> bool | None:
        value = _resolve(data, path)
        if value is _MISSING or value is None:
            return None
        if isinstance(literal, str) != isinstance(value, str) or isinstance(value, (dict, list)):
            return None
        if isinstance(literal, bool) != isinstance(value, bool):
            return None
        match op:
            case "=":
                return bool(value == literal)
            case "!=" | "<>":
                return bool(value != literal)
            case "<":
                return bool(value < literal)
            case "<=":
                return bool(value <= literal)
            case ">":
                return bool(value > literal)
            case _:
                return bool(value >= literal)
    return compare


def _resolve(data: Any, path: tuple[str | int, ...]) -> Any:
    for step in path:
        if isinstance(step, int):
            if not isinstance(data, list) or step >= len(data):
                return _MISSING
            data = data[step]
        elif isinstance(data, dict) and step in data:
            data = data[step]
        else:
            return _MISSING
    return data


@dataclass(frozen=True, slots=True)
class Where:
    """A parsed ``where``: ``matches(notification)``."""

    text: str
    _condition: Condition

    def matches(self, notification: dict[str, Any]) -> bool:
        return self._condition(notification) is True


@dataclass(frozen=True, slots=True)
class Select:
    """A parsed ``select``: ``apply(notification)`` is the JSON forwarded."""

    text: str
    _fields: tuple[tuple[str, tuple[str | int, ...] | None, Any], ...]  # (name, path or None, literal)

    def apply(self, notification: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, path, literal in self._fields:
            if path is None:
                out[name] = literal
            elif (value := _resolve(notification, path)) is not _MISSING:
                out[name] = value
        return out


def parse_where(text: str) -> Where:
    parser = _Parser(_strip_keyword(text, "WHERE"), "where")
    if parser.peek.kind == "end":
        parser.fail("an empty condition")
    condition = parser.disjunction()
    if parser.peek.kind != "end":
        parser.fail("unexpected text")
    return Where(text, condition)


def parse_select(text: str) -> Select | None:
    """None for ``*`` (the whole notification)."""
    parser = _Parser(_strip_keyword(text, "SELECT"), "select")
    if parser.accept("punct", "*"):
        if parser.peek.kind != "end":
            parser.fail("unexpected text after *")
        return None
    fields: list[tuple[str, tuple[str | int, ...] | None, Any]] = []
    while True:
        is_literal, value = parser.literal()
        path = None if is_literal else parser.path()
        if parser.accept("keyword", "AS"):
            name = parser.expect("name").value
            if len(name) > 32:
                parser.fail("an AS name is at most 32 characters")
        elif path is None:
            parser.fail("a literal needs AS name")
        else:
            name = ".".join(str(step) if isinstance(step, str) else f"[{step}]" for step in path).replace(".[", "[")
        fields.append((name, path, value))
        if not parser.accept("punct", ","):
            break
    if parser.peek.kind != "end":
        parser.fail("unexpected text")
    return Select(text, tuple(fields))


def _strip_keyword(text: str, keyword: str) -> str:
    """IoTDA's examples write the clause with or without its keyword."""
    stripped = text.strip()
    if stripped[:len(keyword)].upper() == keyword and stripped[len(keyword):len(keyword) + 1].isspace():
        return stripped[len(keyword):]
    return stripped
