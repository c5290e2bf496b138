"""IoTDA's CONNECT authentication in the core (fleetgate.core.auth, iotda_auth), its payload times
(iotda_codec) and its topics (protocols/mqtt/iotda_topics), against in-memory fakes."""

from __future__ import annotations

import calendar
import hashlib
import hmac

import pytest

from fleetgate.core import iotda_auth
from fleetgate.core.auth import DeviceAuthenticator
from fleetgate.core.backoff import FailureBackoff
from fleetgate.core.codec import PayloadLimits
from fleetgate.core.errors import MalformedPayload, SourceBlocked, Unauthorized
from fleetgate.core.iotda_codec import event_time, properties_report
from fleetgate.core.model import CredentialsType, DeviceIdentity, StoredCredentials
from fleetgate.core.operations import Operation
from fleetgate.protocols.mqtt import iotda_topics
from tests.fakes import SetClock

NOW = calendar.timegm((2026, 12, 6, 15, 30, 0)) * 1000
DEVICE = DeviceIdentity("prod_node1", "p1", "prod", "node1")


class SecretDevices:
    """DeviceAuthStore holding one SECRET device."""

    async def authenticate(self, lookup: str) -> tuple[DeviceIdentity, StoredCredentials] | None:
        if lookup != iotda_auth.lookup(DEVICE.device_id):
            return None
        return DEVICE, StoredCredentials(CredentialsType.SECRET, lookup, secret="AccSecret_0123")


def hmac_hex(secret: str, hour: str) -> bytes:
    return hmac.new(hour.encode(), secret.encode(), hashlib.sha256).hexdigest().encode()


def authenticator(failures: int = 0) -> DeviceAuthenticator:
    backoff = FailureBackoff(failures, 60) if failures else None
    return DeviceAuthenticator(SecretDevices(), 0, backoff=backoff, clock=SetClock(NOW))


async def test_the_observed_example_authenticates() -> None:
    auth = authenticator()
    device = await auth.by_mqtt("prod_node1_0_1_2026120615", "prod_node1", hmac_hex("AccSecret_0123", "2026120615"))
    assert device == DEVICE


@pytest.mark.parametrize(("hour", "flag", "accepted"), [
    ("2026120614", 1, True), ("2026120616", 1, True), ("2026120613", 1, False), ("2026120617", 1, False),
    ("2020010100", 0, True), ("2026139915", 1, False),
])
async def test_the_hour_is_checked_only_when_asked(hour: str, flag: int, accepted: bool) -> None:
    auth = authenticator()
    attempt = auth.by_mqtt(f"prod_node1_0_{flag}_{hour}", "prod_node1", hmac_hex("AccSecret_0123", hour))
    if accepted:
        assert await attempt == DEVICE
    else:
        with pytest.raises(Unauthorized):
            await attempt


async def test_failures_count_towards_the_per_address_block() -> None:
    auth = authenticator(failures=2)
    for _ in range(2):
        with pytest.raises(Unauthorized):
            await auth.by_mqtt("prod_node1_0_1_2026120615", "prod_node1", hmac_hex("wrong_secret", "2026120615"),
                               "10.0.0.9")
    with pytest.raises(SourceBlocked):
        await auth.by_mqtt("prod_node1_0_1_2026120615", "prod_node1", hmac_hex("AccSecret_0123", "2026120615"),
                           "10.0.0.9")


def test_the_client_id_must_name_the_user() -> None:
    assert iotda_auth.parse("prod_node1_0_1_2026120615", "prod_node1") is not None
    assert iotda_auth.parse("prod_node1_0_1_2026120615", "other") is None
    assert iotda_auth.parse("prod_node1_0_2_2026120615", "prod_node1") is None
    assert iotda_auth.parse("prod_node1_0_1_20261206", "prod_node1") is None
    assert iotda_auth.parse("prod_node1", None) is None


def test_event_times_in_every_form_and_null() -> None:
    assert event_time("20161219T114920Z", NOW) == calendar.timegm((2016, 12, 19, 11, 49, 20)) * 1000
    assert event_time("2016-12-19T11:49:20.123Z", NOW) == calendar.timegm((2016, 12, 19, 11, 49, 20)) * 1000 + 123
    assert event_time("2016-12-19T11:49:20Z", NOW) == calendar.timegm((2016, 12, 19, 11, 49, 20)) * 1000
    for unset in (None, "", "yesterday", 12):
        assert event_time(unset, NOW) == NOW


def test_a_report_keeps_each_propertys_service() -> None:
    body = (b'{"services":[{"service_id":"A","properties":{"t":1.5,"n":null},"event_time":null},'
            b'{"service_id":"B","properties":{"h":2},"event_time":"20161219T114920Z"}]}')
    report = properties_report(body, NOW, PayloadLimits())
    assert report.services == (("A", ("t", "n")), ("B", ("h",)))
    assert [r.ts for r in report.readings] == [NOW, calendar.timegm((2016, 12, 19, 11, 49, 20)) * 1000]
    for bad in (b'{"services":{}}', b'[1]', b'{"services":[{"properties":{}}]}', b'not json'):
        with pytest.raises(MalformedPayload):
            properties_report(bad, NOW, PayloadLimits())


def test_topics_are_confined_to_the_device() -> None:
    match = iotda_topics.match("$oc/devices/d1/sys/properties/report", "d1")
    assert match is not None and match.targets[""].operation is Operation.IOTDA_PROPERTIES
    match = iotda_topics.match("$oc/devices/d1/sys/commands/response/request_id=42", "d1")
    assert match is not None and match.params == {"device_id": "d1", "request_id": "42"}
    assert iotda_topics.match("$oc/devices/d1/sys/unknown", "d1") is None
    assert iotda_topics.match("$oc/devices/d1/sys/shadow/get/request_id=", "d1") is None
    with pytest.raises(iotda_topics.Confined):
        iotda_topics.match("$oc/devices/d2/sys/properties/report", "d1")
