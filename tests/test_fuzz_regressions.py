"""Inputs the fuzzers found, minimal, kept as regression tests with what they taught."""

from __future__ import annotations

import base64

from fuzz import mqtt_codec
from fuzz.logrecords import Recorded
from fleetgate.protocols.mqtt import codec
from fleetgate.protocols.mqtt.packets import ConnAck, Disconnect, Reason


def test_a_violation_drops_the_packets_before_it_in_the_same_chunk() -> None:
    """atheris, MQTT codec: DISCONNECT then a reserved packet type. Fed as one chunk nothing is
    returned (Decoder.feed raises at the violation); fed byte by byte the DISCONNECT comes first.
    Documented behaviour (the connection is closed either way); the harness compares acceptance only."""
    data = b"\xe0\x00\xe8\x00"
    assert codec.Decoder(protocol_level=5).feed(data[:2]) == [Disconnect(Reason.SUCCESS)]
    whole = codec.Decoder(protocol_level=5)
    try:
        whole.feed(data)
    except codec.ProtocolError:
        pass
    else:  # pragma: no cover
        raise AssertionError("a reserved packet type was accepted")
    mqtt_codec.check(base64.b64decode("IADgAOgA"))


def test_connack_return_code_4_is_decoded_but_sent_as_5() -> None:
    """atheris, MQTT codec: a 3.1.1 CONNACK with return code 4 decodes to 0x86 and re-encodes as 5
    (ThingsBoard's answer for bad credentials), so 3.1.1 round trips are checked as fixpoints."""
    packet = codec.decode(b"\x20\x02\x00\x04", 4)[0]
    assert packet == ConnAck(reason_code=Reason.BAD_USER_NAME_OR_PASSWORD)
    assert codec.encode(packet, 4) == b"\x20\x02\x00\x05"
    mqtt_codec.check(base64.b64decode("IQAgAgAEAaL/9SuwBQUCAAAAAAEuAAAA"))


async def test_a_product_without_provisioning_matches_its_schema(gateway, management, tenant) -> None:
    """schemathesis, management API: a DISABLED product's provision_key and provision_secret are
    null, which the Product schema did not allow (ST108 on POST/GET/PUT /products)."""
    import jsonschema

    from fleetgate.protocols.http.openapi import document
    from tests.management_client import Management

    reply = await Management(management, tenant).call("POST", "/products", json={"name": "no-provisioning"})
    assert reply.status == 201 and reply.body["provision_key"] is None and reply.body["provision_secret"] is None
    spec = document()
    jsonschema.Draft202012Validator({**spec, "$ref": "#/components/schemas/Product"}).validate(reply.body)


async def test_an_attribute_request_naming_an_impossible_key_is_a_documented_400(gateway, http, tenant) -> None:
    """schemathesis, device API (ST103): GET .../attributes?sharedKeys=<U+0000> is refused with 400,
    which the document did not list for that operation."""
    from fleetgate.protocols.http.openapi import document

    async with http.post("/api/v1/provision", json={
            "deviceName": "fuzzed", "provisionDeviceKey": tenant.provision_key,
            "provisionDeviceSecret": tenant.provision_secret}) as resp:
        token = (await resp.json())["credentialsValue"]
    async with http.get(f"/api/v1/{token}/attributes", params={"sharedKeys": "\x00"}) as resp:
        assert resp.status == 400
    assert "400" in document()["paths"]["/api/v1/{token}/attributes"]["get"]["responses"]


NOT_UTF8 = bytes([0x40, 0x02, 0x12, 0x34, 0xB1]) + b"\xff"  # CON POST, one Uri-Path option: the byte 0xFF


async def test_a_string_option_that_is_not_utf8_is_dropped_without_an_error(gateway, coap_url) -> None:
    """hypothesis, CoAP over UDP (tests/test_fuzz_coap.py): a datagram whose Uri-Path (any string
    option) is not UTF-8 makes aiocoap's Message.decode raise UnicodeDecodeError, not the
    UnparsableMessage its transport catches; it escaped the socket's read callback and asyncio
    logged an ERROR with a traceback for every such datagram. protocols/coap/decoding.py now drops
    it with a warning, as aiocoap drops any unparsable datagram; the next request is answered."""
    import asyncio
    import logging

    from aiocoap import Code, Message

    from tests.coap_wire import RawCoap, request

    datagram = NOT_UTF8
    try:
        Message.decode(datagram)
    except UnicodeDecodeError:
        pass
    else:  # pragma: no cover - aiocoap fixed it: the guard is then harmless
        raise AssertionError("aiocoap now decodes a Uri-Path that is not UTF-8")

    errors = Recorded(logging.ERROR)
    for name in ("asyncio", "fleetgate"):
        logging.getLogger(name).addHandler(errors)
    client = await RawCoap.open(int(coap_url.rsplit(":", 1)[1]))
    try:
        for _ in range(3):
            client.send_bytes(datagram)
        sent = request(Code.POST, "/no/such/path")
        client.send(sent)
        async with asyncio.timeout(5):
            answer = await client.receive()
        assert answer.mid == sent.mid and answer.code == Code.NOT_FOUND, answer
        assert client.nothing_received()  # the undecodable datagrams got no answer
    finally:
        client.close()
        for name in ("asyncio", "fleetgate"):
            logging.getLogger(name).removeHandler(errors)
    assert not errors.records, [r.getMessage() for r in errors.records]


def test_the_coap_harness_takes_an_undecodable_datagram_as_refused() -> None:
    """The same datagram through fuzz/coap_requests.py: refused before any request exists."""
    from fuzz import coap_requests

    coap_requests.replay(NOT_UTF8)
