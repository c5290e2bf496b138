"""ThingsBoard's telemetry and attribute payload grammar (spec 3.4), with limits.

Telemetry is an object, ``{"ts": ms, "values": {...}}``, or an array mixing both;
attributes are a flat object. Values are typed as ThingsBoard types them, with
numeric strings cast to numbers and nulls skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from fleetgate.core.errors import MalformedPayload, PayloadTooLarge
from fleetgate.core.telemetry_model import KeyValue, Reading, ValueType

_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_NUMERIC = re.compile(r"-?(?:\d+(?:\.\d+)?|\.\d+)")
# BigDecimal scale above which ThingsBoard keeps a decimal as a string.
_MAX_DOUBLE_SCALE = 16
# Unix milliseconds below this are before March 1973: the device sent seconds.
_MIN_TS_MS = 100_000_000_000
# Above this (year 5138) the device sent micro- or nanoseconds.
_MAX_TS_MS = 100_000_000_000_000


@dataclass(frozen=True, slots=True)
class PayloadLimits:
    max_key_length: int = 255
    max_string_length: int = 65_536
    max_datapoints: int = 1_000


def loads(body: bytes | str) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedPayload(f"Invalid JSON: {exc}") from None


def parse_telemetry(body: bytes | str, now_ms: int, limits: PayloadLimits) -> tuple[Reading, ...]:
    return telemetry_from_json(loads(body), now_ms, limits)


def telemetry_from_json(root: Any, now_ms: int, limits: PayloadLimits) -> tuple[Reading, ...]:
    if isinstance(root, dict):
        items: list[Any] = [root]
    elif isinstance(root, list):
        items = root
    else:
        raise MalformedPayload(f"Can't parse value: {_preview(root)}")
    readings = []
    budget = limits.max_datapoints
    for item in items:
        if not isinstance(item, dict):
            raise MalformedPayload(f"Can't parse value: {_preview(item)}")
        if "ts" in item and "values" in item:
            ts = _timestamp(item["ts"])
            values = item["values"]
            if not isinstance(values, dict):
                raise MalformedPayload(f"Can't parse value: {_preview(values)}")
        else:
            ts, values = now_ms, item
        kvs = key_values(values, limits)
        budget -= len(kvs)
        if budget < 0:
            raise PayloadTooLarge(f"More than {limits.max_datapoints} data points in one message")
        if kvs:
            readings.append(Reading(ts, kvs))
    return tuple(readings)


def parse_attributes(body: bytes | str, limits: PayloadLimits) -> tuple[KeyValue, ...]:
    return attributes_from_json(loads(body), limits)


def attributes_from_json(root: Any, limits: PayloadLimits) -> tuple[KeyValue, ...]:
    if not isinstance(root, dict):
        raise MalformedPayload(f"Attributes must be a JSON object, not {_preview(root)}")
    kvs = key_values(root, limits)
    if len(kvs) > limits.max_datapoints:
        raise PayloadTooLarge(f"More than {limits.max_datapoints} data points in one message")
    return kvs


def key_values(obj: dict[str, Any], limits: PayloadLimits) -> tuple[KeyValue, ...]:
    out = []
    max_key = limits.max_key_length
    for key, value in obj.items():
        if value is None:
            continue
        if not key or len(key) > max_key:
            raise MalformedPayload(f"Key length must be 1 to {max_key} characters: {key[:64]!r}")
        if "\x00" in key:
            raise MalformedPayload(f"Key cannot contain U+0000: {key[:64]!r}")
        # The common cases first, by exact type (bool is a subclass of int).
        kind = type(value)
        if kind is float:
            out.append(KeyValue(key, ValueType.DOUBLE, value))
        elif kind is int and _LONG_MIN <= value <= _LONG_MAX:
            out.append(KeyValue(key, ValueType.LONG, value))
        elif kind is bool:
            out.append(KeyValue(key, ValueType.BOOLEAN, value))
        else:
            out.append(typed(key, value, limits))
    return tuple(out)


def typed(key: str, value: Any, limits: PayloadLimits) -> KeyValue:
    # bool first: it is a subclass of int.
    if value is True or value is False:
        return KeyValue(key, ValueType.BOOLEAN, value)
    if isinstance(value, int):
        if _LONG_MIN <= value <= _LONG_MAX:
            return KeyValue(key, ValueType.LONG, value)
        return KeyValue(key, ValueType.STRING, str(value))
    if isinstance(value, float):
        return KeyValue(key, ValueType.DOUBLE, value)
    if isinstance(value, str):
        if len(value) > limits.max_string_length:
            raise MalformedPayload(
                f"String value length [{len(value)}] for key [{key}] is greater than "
                f"maximum allowed [{limits.max_string_length}]"
            )
        if _NUMERIC.fullmatch(value):
            return _numeric_string(key, value)
        # ThingsBoard's sql.remove_null_chars: PostgreSQL text cannot hold U+0000.
        return KeyValue(key, ValueType.STRING, value.replace("\x00", ""))
    raw = orjson.dumps(value).decode()
    if "\\u0000" in raw:  # nor can jsonb
        raw = orjson.dumps(without_nul(value)).decode()
    if len(raw) > limits.max_string_length:
        raise MalformedPayload(
            f"JSON value length [{len(raw)}] for key [{key}] is greater than maximum allowed [{limits.max_string_length}]"
        )
    return KeyValue(key, ValueType.JSON, raw)


def without_nul(value: Any) -> Any:
    """The value with U+0000 dropped from its strings and keys: PostgreSQL's jsonb cannot hold it."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {k.replace("\x00", ""): without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    return value


def _numeric_string(key: str, value: str) -> KeyValue:
    """ThingsBoard's cast of a numeric string through BigDecimal: a fraction longer than
    16 digits, or an integer beyond the long range, stays a string (BigDecimal's plain
    form) rather than losing precision."""
    if "." in value:
        if len(value.partition(".")[2]) > _MAX_DOUBLE_SCALE:
            return KeyValue(key, ValueType.STRING, format(Decimal(value), "f"))
        return KeyValue(key, ValueType.DOUBLE, float(value))
    sign, digits = ("-", value[1:]) if value.startswith("-") else ("", value)
    digits = digits.lstrip("0") or "0"
    # A long has at most 19 digits; int() of a longer string may also exceed
    # Python's int_max_str_digits limit.
    if len(digits) <= 19 and _LONG_MIN <= (number := int(sign + digits)) <= _LONG_MAX:
        return KeyValue(key, ValueType.LONG, number)
    return KeyValue(key, ValueType.STRING, sign + digits)


def _timestamp(raw: Any) -> int:
    if isinstance(raw, bool):
        raise MalformedPayload(f"ts must be Unix milliseconds, not {raw!r}")
    if isinstance(raw, str) and len(raw) <= 32 and _NUMERIC.fullmatch(raw):
        raw = float(raw) if "." in raw else int(raw)
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if not isinstance(raw, int):
        raise MalformedPayload(f"ts must be Unix milliseconds, not {_preview(raw)}")
    if 0 <= raw < _MIN_TS_MS:
        raise MalformedPayload(
            f"ts {raw} looks like seconds; timestamps are Unix milliseconds (for example {raw * 1000})"
        )
    if not _MIN_TS_MS <= raw <= _MAX_TS_MS:
        raise MalformedPayload(f"ts {raw} is out of range; timestamps are Unix milliseconds")
    return raw


def _preview(value: Any) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
