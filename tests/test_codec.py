"""Unit tests of gateway/codec.py: ThingsBoard's telemetry/attribute grammar and value typing (spec 3.4)."""

from __future__ import annotations

import orjson
import pytest

from fleetgate.core import codec
from fleetgate.core.codec import PayloadLimits
from fleetgate.core.errors import MalformedPayload, PayloadTooLarge
from fleetgate.core.telemetry_model import KeyValue, Reading, ValueType

NOW = 1_700_000_000_000
LIMITS = PayloadLimits()
B, L, D, S, J = ValueType.BOOLEAN, ValueType.LONG, ValueType.DOUBLE, ValueType.STRING, ValueType.JSON


def telemetry(body: str | bytes, limits: PayloadLimits = LIMITS) -> tuple[Reading, ...]:
    return codec.parse_telemetry(body, NOW, limits)


# --- the grammar ------------------------------------------------------------------------------


def test_flat_object_is_stamped_with_the_server_time():
    assert telemetry('{"a":1,"b":"x"}') == (Reading(NOW, (KeyValue("a", L, 1), KeyValue("b", S, "x"))),)


def test_ts_values_object_uses_the_device_timestamp():
    assert telemetry('{"ts":1634712287000,"values":{"t":26}}') == (Reading(1634712287000, (KeyValue("t", L, 26),)),)


def test_array_mixes_timestamped_and_plain_objects():
    body = '[{"ts":1634712287000,"values":{"t":26}},{"h":87},{"ts":1634712588000,"values":{"t":27}}]'
    assert telemetry(body) == (
        Reading(1634712287000, (KeyValue("t", L, 26),)),
        Reading(NOW, (KeyValue("h", L, 87),)),
        Reading(1634712588000, (KeyValue("t", L, 27),)),
    )


def test_ts_without_values_is_an_ordinary_key():
    """Only an object with both "ts" and "values" is the timestamped form."""
    assert telemetry('{"ts":1634712287000,"a":1}') == (
        Reading(NOW, (KeyValue("ts", L, 1634712287000), KeyValue("a", L, 1))),
    )


def test_values_without_ts_is_an_ordinary_json_key():
    assert telemetry('{"values":{"a":1}}') == (Reading(NOW, (KeyValue("values", J, '{"a":1}'),)),)


@pytest.mark.parametrize("body", ["{}", "[]", "[{}]", '{"a":null}', '[{"ts":1634712287000,"values":{}}]'])
def test_empty_payloads_give_no_readings(body):
    assert telemetry(body) == ()


@pytest.mark.parametrize("body", ["1", '"text"', "null", "true", "[1]", '[{"a":1},"x"]', "[[]]"])
def test_telemetry_root_must_be_an_object_or_array_of_objects(body):
    with pytest.raises(MalformedPayload, match="Can't parse value"):
        telemetry(body)


@pytest.mark.parametrize("values", ["1", "[]", '"x"', "null"])
def test_values_must_be_an_object(values):
    with pytest.raises(MalformedPayload, match="Can't parse value"):
        telemetry('{"ts":1634712287000,"values":%s}' % values)


@pytest.mark.parametrize("body", [b"", b"{", b"{a:1}", b"{'a':1}", b'{"a":1,}', b"\xff\xfe", b"NaN"])
def test_invalid_json(body):
    with pytest.raises(MalformedPayload, match="Invalid JSON"):
        codec.loads(body)


# --- timestamps -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1634712287000", 1634712287000),
        ('"1634712287000"', 1634712287000),
        ("1634712287000.0", 1634712287000),
        ('"1634712287000.0"', 1634712287000),
        ("100000000000", 100_000_000_000),
    ],
)
def test_accepted_timestamps(raw, expected):
    (reading,) = telemetry('{"ts":%s,"values":{"a":1}}' % raw)
    assert reading.ts == expected


def test_timestamp_in_seconds_is_refused_with_a_hint():
    with pytest.raises(MalformedPayload) as caught:
        telemetry('{"ts":1634712287,"values":{"a":1}}')
    assert caught.value.message == (
        "ts 1634712287 looks like seconds; timestamps are Unix milliseconds (for example 1634712287000)"
    )


@pytest.mark.parametrize(
    "raw", ["true", "1634712287000.5", '"abc"', "null", "{}", "-1", "100000000000001", '"%s"' % ("1" * 5000)]
)
def test_refused_timestamps(raw):
    with pytest.raises(MalformedPayload, match="ts"):
        telemetry('{"ts":%s,"values":{"a":1}}' % raw)


def test_one_bad_timestamp_refuses_the_whole_array():
    with pytest.raises(MalformedPayload, match="seconds"):
        telemetry('[{"ts":1634712287000,"values":{"a":1}},{"ts":1634712288,"values":{"a":2}}]')


# --- value typing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("json_value", "expected"),
    [
        ("true", KeyValue("k", B, True)),
        ("false", KeyValue("k", B, False)),
        ("0", KeyValue("k", L, 0)),
        ("73", KeyValue("k", L, 73)),
        ("-5", KeyValue("k", L, -5)),
        ("9223372036854775807", KeyValue("k", L, 9223372036854775807)),
        ("-9223372036854775808", KeyValue("k", L, -9223372036854775808)),
        ("9223372036854775808", KeyValue("k", S, "9223372036854775808")),
        ("42.0", KeyValue("k", D, 42.0)),
        ("-0.5", KeyValue("k", D, -0.5)),
        ("7e-06", KeyValue("k", D, 7e-06)),
        ('"value1"', KeyValue("k", S, "value1")),
        ('""', KeyValue("k", S, "")),
        ('{"someNumber":42,"someArray":[1,2,3]}', KeyValue("k", J, '{"someNumber":42,"someArray":[1,2,3]}')),
        ("[1,2,3]", KeyValue("k", J, "[1,2,3]")),
        ("[]", KeyValue("k", J, "[]")),
        ("{}", KeyValue("k", J, "{}")),
    ],
)
def test_value_types(json_value, expected):
    assert codec.parse_attributes('{"k":%s}' % json_value, LIMITS) == (expected,)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("42", KeyValue("k", L, 42)),
        ("-42", KeyValue("k", L, -42)),
        ("007", KeyValue("k", L, 7)),
        ("-0", KeyValue("k", L, 0)),
        ("42.0", KeyValue("k", D, 42.0)),
        ("1.5", KeyValue("k", D, 1.5)),
        (".5", KeyValue("k", D, 0.5)),
        ("-.5", KeyValue("k", D, -0.5)),
        ("9223372036854775807", KeyValue("k", L, 9223372036854775807)),
        # Beyond a long, BigDecimal's plain string form is kept.
        ("9223372036854775808", KeyValue("k", S, "9223372036854775808")),
        ("-9223372036854775809", KeyValue("k", S, "-9223372036854775809")),
        ("00099999999999999999999", KeyValue("k", S, "99999999999999999999")),
        ("1" * 5000, KeyValue("k", S, "1" * 5000)),
        # A fraction of more than 16 digits (BigDecimal scale > 16) stays a string.
        ("0.1234567890123456", KeyValue("k", D, 0.1234567890123456)),
        ("0.12345678901234567890", KeyValue("k", S, "0.12345678901234567890")),
        ("-.12345678901234567890", KeyValue("k", S, "-0.12345678901234567890")),
        # Not parsable by NumberUtils.isParsable: kept as strings.
        ("1.", KeyValue("k", S, "1.")),
        ("1e3", KeyValue("k", S, "1e3")),
        ("+1", KeyValue("k", S, "+1")),
        ("0x10", KeyValue("k", S, "0x10")),
        (" 1", KeyValue("k", S, " 1")),
        ("1 ", KeyValue("k", S, "1 ")),
        ("-", KeyValue("k", S, "-")),
        ("1.2.3", KeyValue("k", S, "1.2.3")),
        ("NaN", KeyValue("k", S, "NaN")),
        ("true", KeyValue("k", S, "true")),
    ],
)
def test_numeric_strings_are_cast(text, expected):
    assert codec.typed("k", text, LIMITS) == expected


def test_nulls_are_skipped_and_order_is_kept():
    assert codec.parse_attributes('{"a":1,"n":null,"b":true}', LIMITS) == (KeyValue("a", L, 1), KeyValue("b", B, True))


def test_bool_is_not_taken_for_an_integer():
    assert codec.typed("k", True, LIMITS).type is B
    assert codec.typed("k", 1, LIMITS).type is L


# --- limits -----------------------------------------------------------------------------------


def test_string_longer_than_the_limit_gets_thingsboards_message():
    limits = PayloadLimits(max_string_length=5)
    assert codec.typed("k", "abcde", limits) == KeyValue("k", S, "abcde")
    with pytest.raises(MalformedPayload) as caught:
        codec.typed("key", "abcdef", limits)
    assert caught.value.message == "String value length [6] for key [key] is greater than maximum allowed [5]"


def test_json_value_longer_than_the_limit():
    with pytest.raises(MalformedPayload, match=r"JSON value length \[7\] for key \[k\]"):
        codec.typed("k", [1, 2, 3], PayloadLimits(max_string_length=6))


@pytest.mark.parametrize("key", ["", "x" * 256])
def test_key_length(key):
    with pytest.raises(MalformedPayload, match="Key length"):
        codec.parse_attributes(orjson.dumps({key: 1}), LIMITS)


def test_key_of_the_maximum_length_is_accepted():
    assert codec.parse_attributes(orjson.dumps({"x" * 255: 1}), LIMITS) == (KeyValue("x" * 255, L, 1),)


def test_null_value_under_an_empty_key_is_still_skipped():
    assert codec.parse_attributes('{"":null}', LIMITS) == ()


def test_datapoint_budget_spans_the_whole_telemetry_array():
    limits = PayloadLimits(max_datapoints=3)
    assert len(telemetry('[{"a":1,"b":2},{"c":3}]', limits)) == 2
    with pytest.raises(PayloadTooLarge):
        telemetry('[{"a":1,"b":2},{"c":3,"d":4}]', limits)


def test_datapoint_budget_for_attributes():
    limits = PayloadLimits(max_datapoints=2)
    assert len(codec.parse_attributes('{"a":1,"b":2}', limits)) == 2
    with pytest.raises(PayloadTooLarge):
        codec.parse_attributes('{"a":1,"b":2,"c":3}', limits)


# --- attributes -------------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["[]", '[{"a":1}]', "1", '"x"', "null"])
def test_attributes_root_must_be_an_object(body):
    with pytest.raises(MalformedPayload, match="Attributes must be a JSON object"):
        codec.parse_attributes(body, LIMITS)


def test_attributes_have_no_ts_form():
    assert codec.parse_attributes('{"ts":1634712287000,"values":{"a":1}}', LIMITS) == (
        KeyValue("ts", L, 1634712287000),
        KeyValue("values", J, '{"a":1}'),
    )


# --- U+0000, which PostgreSQL text and jsonb cannot hold ----------------------------------------


def test_nul_characters_are_removed_from_strings_like_thingsboards_remove_null_chars():
    assert codec.typed("k", "a\x00b\x00", LIMITS) == KeyValue("k", S, "ab")


def test_nul_characters_are_removed_from_json_values():
    value = {"k\x00": ["x\x00y", {"n": "\x00"}], "plain": "\\u0000"}
    assert codec.typed("k", value, LIMITS) == KeyValue("k", J, '{"k":["xy",{"n":""}],"plain":"\\\\u0000"}')


def test_a_key_with_a_nul_character_is_malformed():
    with pytest.raises(MalformedPayload, match="U\\+0000"):
        codec.parse_attributes('{"a\\u0000":1}', LIMITS)


# --- exact refusals and the branches above not reached through a body -------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("1", "Can't parse value: 1"),
        ('"text"', "Can't parse value: 'text'"),
        ('[{"a":1},[2]]', "Can't parse value: [2]"),
        ('{"ts":1634712287000,"values":[1]}', "Can't parse value: [1]"),
        # A long value is cut to 80 characters in the message.
        ('["%s"]' % ("x" * 100), "Can't parse value: '" + "x" * 76 + "..."),
    ],
)
def test_refused_telemetry_names_the_value(body, message):
    with pytest.raises(MalformedPayload) as caught:
        telemetry(body)
    assert caught.value.message == message


def test_refused_attributes_name_the_value():
    with pytest.raises(MalformedPayload) as caught:
        codec.parse_attributes("[1]", LIMITS)
    assert caught.value.message == "Attributes must be a JSON object, not [1]"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("true", "ts must be Unix milliseconds, not True"),
        ('"abc"', "ts must be Unix milliseconds, not 'abc'"),
        ("1634712287000.5", "ts must be Unix milliseconds, not 1634712287000.5"),
        ("-1", "ts -1 is out of range; timestamps are Unix milliseconds"),
        ("100000000000001", "ts 100000000000001 is out of range; timestamps are Unix milliseconds"),
    ],
)
def test_refused_timestamps_say_why(raw, message):
    with pytest.raises(MalformedPayload) as caught:
        telemetry('{"ts":%s,"values":{"a":1}}' % raw)
    assert caught.value.message == message


def test_the_latest_timestamp_accepted_is_the_year_5138():
    (reading,) = telemetry('{"ts":100000000000000,"values":{"a":1}}')
    assert reading.ts == 100_000_000_000_000


def test_the_datapoint_budget_message():
    with pytest.raises(PayloadTooLarge) as caught:
        telemetry('{"a":1,"b":2}', PayloadLimits(max_datapoints=1))
    assert caught.value.message == "More than 1 data points in one message"


def test_the_key_length_message_shows_at_most_64_characters_of_the_key():
    with pytest.raises(MalformedPayload) as caught:
        codec.parse_attributes(orjson.dumps({"x" * 300: 1}), LIMITS)
    assert caught.value.message == f"Key length must be 1 to 255 characters: {'x' * 64!r}"


def test_typed_given_a_python_float_or_a_big_int():
    """The typing any caller can use directly, outside the fast path of a parsed body."""
    assert codec.typed("k", 2.5, LIMITS) == KeyValue("k", D, 2.5)
    assert codec.typed("k", 2**63, LIMITS) == KeyValue("k", S, "9223372036854775808")
    assert codec.typed("k", -(2**63), LIMITS) == KeyValue("k", L, -(2**63))


def test_removing_nul_characters_keeps_the_other_json_values():
    value = {"a\x00": [1, 2.5, True, None, "\x00"]}
    assert codec.typed("k", value, LIMITS) == KeyValue("k", J, '{"a":[1,2.5,true,null,""]}')
