"""TLS for simulated MQTT devices (mqtts): the server check, and each device's client certificate.

Contexts are built before the first CONNECT (loading a certificate costs about
a millisecond), one shared by the devices without a certificate, one per
device with a certificate of its own. With ``resume``, a device keeps the TLS
session of its last accepted connection (its ticket) and offers it on the next,
as devices that reconnect often do: the server then skips the certificate
exchange and its signatures.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class MqttTls:
    """``ca_file``: PEM the server's certificate must chain to (None: not checked, for test
    servers with self-signed certificates). ``certificates``: one PEM file a device (its
    certificate, then its key), in the order of the spec's devices; empty for token devices."""

    ca_file: str | None = None
    certificates: tuple[str, ...] = ()
    server_hostname: str | None = None
    resume: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"ca_file": self.ca_file, "certificates": list(self.certificates),
                "server_hostname": self.server_hostname, "resume": self.resume}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> MqttTls | None:
        if data is None:
            return None
        return cls(data["ca_file"], tuple(data["certificates"]), data["server_hostname"], data["resume"])

    def share(self, start: int, stop: int) -> MqttTls:
        return replace(self, certificates=self.certificates[start:stop]) if self.certificates else self


class _Resuming(ssl.SSLObject):
    """A client connection that offers its context's saved session (one context a device).

    The event loop's TLS transport creates it through ``SSLContext.wrap_bio``, which
    takes no session, so it is set here, before the first handshake step."""

    _offered = False

    def do_handshake(self) -> None:
        if not self._offered:
            self._offered = True
            saved = getattr(self.context, "saved_session", None)
            if saved is not None:
                self.session = saved
        super().do_handshake()


def remember_session(transport: Any) -> None:
    """An accepted connection: keep its session (its ticket came with the handshake's
    last flight, before CONNACK) for the device's next connection."""
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if isinstance(ssl_object, _Resuming) and ssl_object.session is not None:
        ssl_object.context.saved_session = ssl_object.session  # type: ignore[attr-defined]


def resumed(transport: Any) -> bool:
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    return ssl_object is not None and ssl_object.session_reused


def _context(tls: MqttTls) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca_file)
    if tls.ca_file is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.resume:
        context.sslobject_class = _Resuming
    return context


def client_tls(tls: MqttTls | None) -> Callable[[int], ssl.SSLContext] | None:
    """Device index -> its TLS context, all built now; None for plain TCP."""
    if tls is None:
        return None
    if not tls.certificates:
        shared = _context(tls)
        return lambda index: shared
    contexts = []
    for path in tls.certificates:
        context = _context(tls)
        context.load_cert_chain(path)
        contexts.append(context)
    return contexts.__getitem__
