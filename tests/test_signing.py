"""gateway.signing: SDK-HMAC-SHA256 verification, against tampering and stale dates."""

from __future__ import annotations

import datetime

import pytest

from fleetgate.core import signing
from fleetgate.core.errors import Unauthorized

NOW = datetime.datetime(2024, 1, 31, 8, 0, tzinfo=datetime.UTC)
DATE = NOW.strftime(signing.DATE_FORMAT)


def request(**changes) -> signing.SignedRequest:
    values = dict(method="POST", raw_path="/v5/iot/p1/provisioning-templates", query=[("limit", "10"), ("a", "b c")],
                  headers={"host": "127.0.0.1:8081", "x-sdk-date": DATE, "content-type": "application/json"},
                  body=b'{"x":1}')
    values.update(changes)
    return signing.SignedRequest(**values)


def signed(req: signing.SignedRequest, secret: str = "sk") -> signing.Signature:
    names = ("content-type", "host", "x-sdk-date")
    return signing.Signature("AK", names, signing.sign(req, names, DATE, secret))


def test_a_good_signature_verifies() -> None:
    signing.verify(request(), signed(request()), "sk", now=NOW)


@pytest.mark.parametrize("tampered", [
    dict(body=b'{"x":2}'), dict(method="PUT"), dict(raw_path="/v5/iot/p2/provisioning-templates"),
    dict(query=[("limit", "11"), ("a", "b c")]),
])
def test_tampering_is_refused(tampered) -> None:
    with pytest.raises(Unauthorized):
        signing.verify(request(**tampered), signed(request()), "sk", now=NOW)


def test_another_secret_and_a_stale_date_are_refused() -> None:
    with pytest.raises(Unauthorized):
        signing.verify(request(), signed(request(), "other"), "sk", now=NOW)
    with pytest.raises(Unauthorized):
        signing.verify(request(), signed(request()), "sk", now=NOW + datetime.timedelta(minutes=16))


def test_the_header_is_parsed() -> None:
    parsed = signing.parse("SDK-HMAC-SHA256 Access=AK1, SignedHeaders=host;x-sdk-date, Signature=ABCDEF")
    assert parsed == signing.Signature("AK1", ("host", "x-sdk-date"), "abcdef")
    with pytest.raises(Unauthorized):
        signing.parse("SDK-HMAC-SHA256 garbage")
