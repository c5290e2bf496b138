"""The device listeners' TLS context: only the gateway's own anchors are trusted, TLS 1.2 at least."""

from __future__ import annotations

import ssl

from fleetgate.protocols.tls import DeviceTls
from tests import pki
from tests.pki import self_signed


def test_no_public_ca_vouches_for_a_device(tmp_path) -> None:
    cert, key = self_signed(tmp_path)
    tls = DeviceTls(cert, key)
    assert tls.context.cert_store_stats()["x509_ca"] == 0
    device_ca = pki.ca("Device CA")
    tls.set_anchors([ssl.PEM_cert_to_DER_cert(device_ca.pem)])
    current = tls.handshake_context
    assert current.cert_store_stats()["x509_ca"] == 1
    assert current.minimum_version == ssl.TLSVersion.TLSv1_2
    assert current.verify_mode == ssl.CERT_OPTIONAL


def test_anchors_are_der_certificates_one_after_another(tmp_path) -> None:
    cert, key = self_signed(tmp_path)
    tls = DeviceTls(cert, key)
    tls.set_anchors(ssl.PEM_cert_to_DER_cert(pki.ca(f"CA {n}").pem) for n in range(3))
    assert tls.handshake_context.cert_store_stats()["x509_ca"] == 3
    tls.reload()  # the anchors stay with a reloaded certificate
    assert tls.handshake_context.cert_store_stats()["x509_ca"] == 3
