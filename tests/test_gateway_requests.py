"""fleetgate.core.gateway_requests: ThingsBoard's gateway API payloads, read and answered exactly."""

from __future__ import annotations

import orjson
import pytest

from fleetgate.core import gateway_requests as requests
from fleetgate.core.errors import MalformedPayload, PayloadTooLarge
from fleetgate.core.telemetry_model import AttributeValue


def test_connect_names_a_device_and_maybe_its_type() -> None:
    assert requests.connect(b'{"device":"A","type":"thermometer"}') == requests.Connect("A", "thermometer")
    assert requests.connect(b'{"device":"A"}') == requests.Connect("A", None)
    for bad in (b'{"type":"T"}', b'{"device":""}', b'{"device":5}', b'{"device":"A","type":""}',
                b'{"device":"A","type":7}', b"[]", b"{", b'{"device":"' + b"x" * 256 + b'"}'):
        with pytest.raises(MalformedPayload):
            requests.connect(bad)


def test_disconnect() -> None:
    assert requests.disconnect(b'{"device":"A"}') == "A"
    with pytest.raises(MalformedPayload):
        requests.disconnect(b'{"name":"A"}')


def test_per_device_payloads_are_bounded_and_named() -> None:
    body = b'{"A":[{"ts":1767225600000,"values":{"t":1}}],"B":{"h":2}}'
    assert requests.per_device(body, 2) == {"A": [{"ts": 1767225600000, "values": {"t": 1}}], "B": {"h": 2}}
    with pytest.raises(PayloadTooLarge, match="More than 1 devices in one message"):
        requests.per_device(body, 1)
    with pytest.raises(MalformedPayload):
        requests.per_device(b'{"":{"h":2}}', 5)
    with pytest.raises(MalformedPayload):
        requests.per_device(b'[{"A":{}}]', 5)


def test_attribute_requests_take_a_key_or_keys() -> None:
    one = requests.attribute_request(b'{"id":7,"device":"A","client":true,"key":"fw"}')
    assert one == requests.AttributeRequest(7, "A", True, ("fw",))
    several = requests.attribute_request(b'{"id":8,"device":"A","client":false,"keys":["a","b"]}')
    assert several == requests.AttributeRequest(8, "A", False, ("a", "b"))
    # The Python SDK always sends "keys"; "client" defaults to shared attributes.
    assert requests.attribute_request(b'{"id":9,"device":"A","keys":["a"]}').client is False
    for bad in (b'{"device":"A","key":"k"}', b'{"id":"1","device":"A","key":"k"}', b'{"id":true,"device":"A","key":"k"}',
                b'{"id":1,"device":"A"}', b'{"id":1,"device":"A","keys":"k"}', b'{"id":1,"device":"A","keys":[1]}',
                b'{"id":1,"device":"A","client":"yes","key":"k"}', b'{"id":1,"key":"k"}'):
        with pytest.raises(MalformedPayload):
            requests.attribute_request(bad)


def test_attribute_responses_are_thingsboards() -> None:
    request = requests.AttributeRequest(3, "A", True, ("a", "b"))
    assert orjson.loads(requests.attribute_response(request, [AttributeValue("a", 1, 0)])) == {
        "id": 3, "device": "A", "value": 1}
    assert orjson.loads(requests.attribute_response(request, [AttributeValue("a", 1, 0), AttributeValue("b", "x", 0)])) == {
        "id": 3, "device": "A", "values": {"a": 1, "b": "x"}}
    assert orjson.loads(requests.attribute_response(request, [])) == {"id": 3, "device": "A"}


def test_rpc_replies() -> None:
    assert requests.rpc_reply(b'{"device":"A","id":5,"data":{"ok":true}}') == requests.RpcReply("A", 5, {"ok": True})
    with pytest.raises(MalformedPayload):
        requests.rpc_reply(b'{"device":"A","data":{}}')
