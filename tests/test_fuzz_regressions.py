"""Inputs the fuzzers found, minimal, kept as regression tests with what they taught."""

from __future__ import annotations

import base64

from fuzz import mqtt_codec
from protocols.mqtt import codec
from protocols.mqtt.packets import ConnAck, Disconnect, Reason


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

    from protocols.http.openapi import document
    from tests.management_client import Management

    reply = await Management(management, tenant).call("POST", "/products", json={"name": "no-provisioning"})
    assert reply.status == 201 and reply.body["provision_key"] is None and reply.body["provision_secret"] is None
    spec = document()
    jsonschema.Draft202012Validator({**spec, "$ref": "#/components/schemas/Product"}).validate(reply.body)


async def test_an_attribute_request_naming_an_impossible_key_is_a_documented_400(gateway, http, tenant) -> None:
    """schemathesis, device API (ST103): GET .../attributes?sharedKeys=<U+0000> is refused with 400,
    which the document did not list for that operation."""
    from protocols.http.openapi import document

    async with http.post("/api/v1/provision", json={
            "deviceName": "fuzzed", "provisionDeviceKey": tenant.provision_key,
            "provisionDeviceSecret": tenant.provision_secret}) as resp:
        token = (await resp.json())["credentialsValue"]
    async with http.get(f"/api/v1/{token}/attributes", params={"sharedKeys": "\x00"}) as resp:
        assert resp.status == 400
    assert "400" in document()["paths"]["/api/v1/{token}/attributes"]["get"]["responses"]
