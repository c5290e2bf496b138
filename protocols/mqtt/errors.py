"""The core's errors as MQTT reason codes: the one place this front-end maps them.

The codes are MQTT 5's; the codec turns them into 3.1.1's CONNACK return codes
(0x86 and 0x87 both become 5, 0x97 and 0x9F become 3) and leaves PUBACK
without one. A refused CONNECT gets ThingsBoard's codes (spec 3.1).
"""

from __future__ import annotations

from fleetgate.core.errors import (
    CertificateRefused, GatewayError, InvalidInput, InvalidProvisionRequest, NotFound, PayloadTooLarge,
    ShuttingDown, SourceBlocked, TooManyConnections, TooManyRequests, UnknownAddress, Unauthorized,
)
from fleetgate.protocols.mqtt.packets import MQTT_5, Connect, Reason


class ClientIdRefused(InvalidInput):
    """The client id is longer than this gateway accepts."""


class WillRefused(InvalidInput):
    """A will may only go to the device's own uplink topics."""


def reason_of(exc: GatewayError, connect: Connect | None = None) -> int:
    """The reason code for ``exc``: a CONNACK's when it refused ``connect``, else a PUBACK's."""
    if connect is not None:
        return _connack_reason(exc, connect)
    if isinstance(exc, InvalidProvisionRequest):
        return Reason.IMPLEMENTATION_SPECIFIC_ERROR  # ThingsBoard's runtime error
    if isinstance(exc, InvalidInput):
        return Reason.PAYLOAD_FORMAT_INVALID
    if isinstance(exc, UnknownAddress):
        return Reason.TOPIC_NAME_INVALID
    if isinstance(exc, TooManyRequests):
        return Reason.QUOTA_EXCEEDED
    return Reason.SERVER_UNAVAILABLE


def disconnect_reason(exc: GatewayError) -> int:
    """The reason a DISCONNECT gives when ``exc`` ends a connection: a PUBACK's reason where
    DISCONNECT may carry it too, else the nearest one it may (0x88 is CONNACK's alone)."""
    if isinstance(exc, ShuttingDown):
        return Reason.SERVER_SHUTTING_DOWN
    reason = reason_of(exc)
    if reason == Reason.SERVER_UNAVAILABLE:
        return Reason.SERVER_BUSY
    return reason


def error_text(exc: GatewayError) -> bytes:
    """A refusal published as text on its own topic (ThingsBoard's v2/fw/error): ThingsBoard's
    status name, then why."""
    if isinstance(exc, PayloadTooLarge):
        status = "PAYLOAD_TOO_LARGE"
    elif isinstance(exc, InvalidInput):
        status = "BAD_REQUEST"
    elif isinstance(exc, NotFound):
        status = "NOT_FOUND"
    elif isinstance(exc, TooManyRequests):
        status = "TOO_MANY_REQUESTS"
    else:
        status = "FAILURE"
    return f"{status}: {exc.message}".encode()


def _connack_reason(exc: GatewayError, connect: Connect) -> int:
    if isinstance(exc, SourceBlocked):
        # Back-off after authentication failures: MQTT 5 says why; 3.1.1 keeps hearing "not authorized".
        return Reason.CONNECTION_RATE_EXCEEDED if connect.protocol_level == MQTT_5 else Reason.NOT_AUTHORIZED
    if isinstance(exc, TooManyConnections):
        return Reason.QUOTA_EXCEEDED
    if isinstance(exc, TooManyRequests):
        return Reason.CONNECTION_RATE_EXCEEDED
    if isinstance(exc, CertificateRefused):
        return Reason.NOT_AUTHORIZED  # a certificate refused for any reason is only "not authorized"
    if isinstance(exc, Unauthorized):
        return _credentials_refusal(connect)
    if isinstance(exc, ClientIdRefused):
        return Reason.CLIENT_IDENTIFIER_NOT_VALID
    if isinstance(exc, WillRefused):
        return Reason.TOPIC_NAME_INVALID
    return Reason.SERVER_UNAVAILABLE


def _credentials_refusal(connect: Connect) -> int:
    """ThingsBoard's code for credentials that match nothing depends on the fields sent."""
    has_user, has_password = connect.username is not None, connect.password is not None
    if connect.client_id and not has_user and not has_password:
        return Reason.CLIENT_IDENTIFIER_NOT_VALID
    if (has_user and has_password and connect.client_id) or has_user != has_password:
        return Reason.BAD_USER_NAME_OR_PASSWORD
    return Reason.NOT_AUTHORIZED
