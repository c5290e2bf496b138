"""A TLS session resumed from a ticket skips OpenSSL's certificate checks: the core checks the
certificate's dates again (gateway.auth), with an in-memory store of one X.509 device."""

from __future__ import annotations

import datetime

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from fleetgate.core.auth import DeviceAuthenticator
from fleetgate.core.errors import Unauthorized
from tests import pki
from tests.fakes import OneCertificateDevice

DAY = datetime.timedelta(days=1)
CA = pki.ca("Resumption CA")


def _der(**dates: datetime.timedelta) -> bytes:
    return pki.leaf(CA, CN="meter", **dates).certificate.public_bytes(Encoding.DER)


@pytest.mark.parametrize("resumed", [False, True])
async def test_a_certificate_within_its_dates_authenticates(resumed: bool) -> None:
    der = _der()
    store = OneCertificateDevice(der)
    assert await DeviceAuthenticator(store, 0).by_certificate(der, resumed=resumed) == store.device


@pytest.mark.parametrize("dates", [{"not_before": -2 * DAY, "not_after": -DAY},
                                   {"not_before": DAY, "not_after": 2 * DAY}], ids=["expired", "not_yet_valid"])
async def test_a_resumed_session_outside_its_certificate_dates_is_refused(dates) -> None:
    der = _der(**dates)
    auth = DeviceAuthenticator(OneCertificateDevice(der), 0)
    with pytest.raises(Unauthorized):
        await auth.by_certificate(der, resumed=True)
    # A full handshake had OpenSSL check the dates (and refuse these): the core does not repeat it.
    assert (await auth.by_certificate(der, resumed=False)).name == "meter"
