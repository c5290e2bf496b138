"""TLS for the device listeners: TLS 1.2 at least, a client certificate optional.

TLS 1.2 is limited to forward-secret AEAD suites (ECDHE with AES-GCM or
ChaCha20-Poly1305: Mozilla's "intermediate" list without the DHE ones); TLS 1.3's
suites are all AEAD and stay OpenSSL's. The server's preference order applies,
and renegotiation and compression are off.

A certificate a client presents must chain to a trust anchor: a verified device
CA, or a registered device certificate (X509_CERTIFICATE credentials), which is
its own anchor thanks to VERIFY_X509_PARTIAL_CHAIN. Python's ``ssl`` hands the
server only the leaf, so the front-end then looks the device up by that leaf's
credentials hash.

The device CAs, few, are loaded into the store. The credentials, up to hundreds of
thousands, are files of a hashed directory (protocols.anchor_directory) that OpenSSL
reads by subject while a handshake verifies: OpenSSL 3.0 builds an in-memory store
of N anchors in more than N² time (docs/scaling.md), a directory costs nothing up
front. Anchors change while the gateway runs (a device provisions a certificate): a
new CA is added to the store in use, a new credential is one file written; a removal
rebuilds the context (a store keeps what it has read), which is handed to each new
handshake by the SNI callback, which OpenSSL calls for every ClientHello, with or
without a server name. The same swap
reloads the server's own certificate and key (SIGHUP): new handshakes present the
new pair, connections already established keep theirs.

A full handshake ends with one TLS 1.3 session ticket, not OpenSSL's default two:
each costs the server about a quarter of a handshake's CPU here (the session,
client certificate included, serialised and encrypted), and a device resumes
with one. The ticket keys belong to the entry context, which the swap keeps, so
tickets outlive anchor changes. A resumed session skips the certificate checks;
the core checks the dates again (gateway.auth) and revocation on every connection.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable

from fleetgate.core import metrics
from fleetgate.protocols.anchor_directory import AnchorDirectory

log = logging.getLogger(__name__)
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"


class DeviceTls:
    """The TLS context of one listener, with a client certificate optional
    (``verify_clients``) or not asked for, swapped in per handshake."""

    def __init__(self, cert_file: str, key_file: str, *, verify_clients: bool = True,
                 anchors_in: str | None = None) -> None:
        """``anchors_in``: where the credentials' directory is made (the temporary directory if None)."""
        self._cert_file, self._key_file = cert_file, key_file
        self._verify_clients = verify_clients
        self._anchors: list[bytes] = []  # the device CAs' DER, what a rebuild loads
        self._credentials = AnchorDirectory(anchors_in) if verify_clients else None
        self._current = self._build()
        self.context = self._build()
        self.context.sni_callback = self._hand_over
        self.context.num_tickets = 1
        self.context.sslobject_class = _CountedHandshake

    def set_anchors(self, cas_der: Iterable[bytes], credentials_der: Iterable[bytes] = ()) -> None:
        """Trust exactly these device CAs and X.509 credentials (DER) for the handshakes from now on."""
        anchors = list(cas_der)
        if self._credentials is not None:
            self._credentials.replace(credentials_der)
        self._current = self._build(anchors)
        self._anchors = anchors

    def add_anchors(self, cas_der: Iterable[bytes], credentials_der: Iterable[bytes] = ()) -> None:
        """Trust these device CAs and X.509 credentials (DER) too, from the next handshake on,
        without the others being read again."""
        if self._credentials is None:
            return
        added = list(cas_der)
        if added:
            self._current.load_verify_locations(cadata=b"".join(added))
            self._anchors.extend(added)
        if self._credentials.add(credentials_der).stale:
            self._current = self._build()

    def close(self) -> None:
        """Delete the credentials' directory (a handshake from now on trusts the device CAs alone)."""
        if self._credentials is not None:
            self._credentials.close()

    @property
    def handshake_context(self) -> ssl.SSLContext:
        """The context the next handshake is handed (certificate, key and anchors as they are now)."""
        return self._current

    def reload(self) -> None:
        """Read the certificate and key files again, for the handshakes from now on.
        Raises (ssl.SSLError, OSError) and keeps the pair in use when they do not load."""
        self._current = self._build()

    def _hand_over(self, ssl_object: ssl.SSLObject, _server_name: str | None, _context: ssl.SSLContext) -> None:
        ssl_object.context = self._current

    def _build(self, anchors: list[bytes] | None = None) -> ssl.SSLContext:
        # Not ssl.create_default_context(CLIENT_AUTH): that also trusts the system's public
        # CAs for client certificates, which no device should be vouched for by, and a
        # store that size made each handshake cost 3.1 ms of CPU here instead of 1.7.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(TLS12_CIPHERS)
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
        context.load_cert_chain(self._cert_file, self._key_file)
        if not self._verify_clients:
            return context
        # A handshake keeps the verify mode and flags of the context it began with; only
        # the trust store follows the swap, so every context carries both.
        context.verify_mode = ssl.CERT_OPTIONAL
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        # cadata takes DER certificates one after another.
        der = self._anchors if anchors is None else anchors
        if der:
            context.load_verify_locations(cadata=b"".join(der))
        if self._credentials is not None:
            context.load_verify_locations(capath=self._credentials.path)
        return context


class _CountedHandshake(ssl.SSLObject):
    """The server side of one connection: a failed handshake is counted by its reason.

    OpenSSL refuses an expired, revoked or unknown client certificate inside the
    handshake, and asyncio and uvloop drop such failures silently (an OSError on a
    connection no protocol has seen yet); the loop's transport calls this object's
    ``do_handshake`` (SSLContext.sslobject_class), so this is where they can be seen.
    """

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLCertVerificationError as exc:
            metrics.TLS_REFUSALS.labels(exc.verify_message or "certificate verify failed").inc()
            raise
        except ssl.SSLError as exc:
            metrics.TLS_REFUSALS.labels(exc.reason or type(exc).__name__).inc()
            raise

