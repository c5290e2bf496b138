"""atheris harness for the payload codec (gateway/codec.py): ThingsBoard's telemetry and
attribute grammar.

Whatever the bytes: parsing raises nothing but InvalidInput (MalformedPayload, PayloadTooLarge);
what it accepts respects the limits (data points, key and string lengths), holds no U+0000
(PostgreSQL text cannot), and has timestamps in the accepted range.

Run: ``python3 -m fuzz.payload_codec -max_total_time=20``.
"""

from __future__ import annotations

import sys

import atheris
import orjson

with atheris.instrument_imports():
    from fleetgate.core import codec
    from fleetgate.core.errors import InvalidInput
    from fleetgate.core.telemetry_model import ValueType

LIMITS = codec.PayloadLimits(max_key_length=16, max_string_length=64, max_datapoints=8)
NOW = 1_700_000_000_000


def check_values(kvs) -> None:
    assert len(kvs) <= LIMITS.max_datapoints
    for kv in kvs:
        assert 0 < len(kv.key) <= LIMITS.max_key_length and "\x00" not in kv.key, kv
        if kv.type in (ValueType.STRING, ValueType.JSON):
            assert isinstance(kv.value, str) and "\x00" not in kv.value, kv
            assert len(kv.value) <= LIMITS.max_string_length, kv
        elif kv.type is ValueType.LONG:
            assert type(kv.value) is int and -(2**63) <= kv.value < 2**63, kv
        elif kv.type is ValueType.DOUBLE:
            assert type(kv.value) is float, kv
        else:
            assert type(kv.value) is bool, kv


def document(provider: atheris.FuzzedDataProvider, depth: int = 0):
    """A JSON value shaped by the fuzzer's bytes: orjson refuses most raw bytes, so most of
    the grammar is reached through documents built here."""
    kind = provider.ConsumeIntInRange(0, 9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return provider.ConsumeBool()
    if kind == 2:
        return provider.ConsumeIntInRange(-(2**64), 2**64)
    if kind == 3:
        return provider.ConsumeRegularFloat()
    if kind == 4:
        return provider.ConsumeUnicodeNoSurrogates(provider.ConsumeIntInRange(0, 80))
    if kind == 5:  # numeric strings, which the grammar casts
        return provider.PickValueInList(["-", "", "0", "."]) + str(provider.ConsumeIntInRange(0, 10**25))
    if kind == 6:
        return provider.ConsumeIntInRange(0, 2**50)  # timestamps, among others
    if kind == 7:
        return [document(provider, depth + 1) for _ in range(provider.ConsumeIntInRange(0, 4))]
    keys = ["ts", "values", "", "k", "\x00", "a" * 17] if kind == 8 else None
    return {
        (provider.PickValueInList(keys) if keys and provider.ConsumeBool()
         else provider.ConsumeUnicodeNoSurrogates(provider.ConsumeIntInRange(0, 20))): document(provider, depth + 1)
        for _ in range(provider.ConsumeIntInRange(0, 5))
    }


def one_input(data: bytes) -> None:
    check(data)
    provider = atheris.FuzzedDataProvider(data)
    try:
        built = orjson.dumps(document(provider))
    except (TypeError, orjson.JSONEncodeError):
        return  # an integer beyond 64 bits: orjson writes none, and a device cannot send one
    check(built)


def check(data: bytes) -> None:
    try:
        readings = codec.parse_telemetry(data, NOW, LIMITS)
    except InvalidInput:
        pass
    else:
        assert sum(len(r.values) for r in readings) <= LIMITS.max_datapoints
        for reading in readings:
            assert 100_000_000_000 <= reading.ts <= 100_000_000_000_000 or reading.ts == NOW, reading
            check_values(reading.values)
    try:
        check_values(codec.parse_attributes(data, LIMITS))
    except InvalidInput:
        pass


def main() -> None:
    atheris.instrument_all()
    atheris.Setup(sys.argv, lambda data: one_input(bytes(data)))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
