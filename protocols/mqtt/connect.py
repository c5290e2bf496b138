"""The CONNECT decision: who the client is, what it may do, and the CONNACK it gets."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from fleetgate.core.auth import DeviceAuthenticator
from fleetgate.core.errors import GatewayError, SourceBlocked, TooManyConnections, TooManyRequests, Unauthorized
from fleetgate.core.model import DeviceIdentity
from fleetgate.protocols.mqtt.packets import MQTT_5, Connect, Property, Properties, Reason
from fleetgate.protocols.mqtt.topics import UPLINK_TOPICS

PROVISION = "provision"


@dataclass(frozen=True, slots=True)
class Limits:
    max_packet_size: int
    receive_maximum: int
    topic_alias_maximum: int
    max_client_id_length: int = 256
    max_topic_length: int = 256


@dataclass(frozen=True, slots=True)
class Admitted:
    """An accepted CONNECT: a device, or a provisioning-only session (``device`` None)."""

    device: DeviceIdentity | None
    client_id: str
    keep_alive: int
    will_accepted: bool
    connack_properties: Properties


@dataclass(frozen=True, slots=True)
class Refused:
    reason: int
    message: str


def refusal_for(connect: Connect) -> int:
    """ThingsBoard's CONNACK code for credentials that match nothing (spec 3.1), as an
    MQTT 5 reason; the codec maps it to 3.1.1's return codes (0x86 and 0x87 both to 5)."""
    has_user, has_password = connect.username is not None, connect.password is not None
    if connect.client_id and not has_user and not has_password:
        return Reason.CLIENT_IDENTIFIER_NOT_VALID
    if (has_user and has_password and connect.client_id) or has_user != has_password:
        return Reason.BAD_USER_NAME_OR_PASSWORD
    return Reason.NOT_AUTHORIZED


def limit_reason(exc: TooManyRequests, protocol_level: int) -> int:
    """The CONNACK reason for a connection an abuse limit refuses (the codec gives 3.1.1 clients
    return code 3, Server unavailable, for 0x97 and 0x9F: "try again later")."""
    if isinstance(exc, SourceBlocked):
        # Back-off after authentication failures: MQTT 5 says why; 3.1.1 keeps hearing "not authorized".
        return Reason.CONNECTION_RATE_EXCEEDED if protocol_level == MQTT_5 else Reason.NOT_AUTHORIZED
    if isinstance(exc, TooManyConnections):
        return Reason.QUOTA_EXCEEDED
    return Reason.CONNECTION_RATE_EXCEEDED


async def admit(
    connect: Connect, auth: DeviceAuthenticator, limits: Limits, peer_certificate: bytes | None, source: str = "",
    address: str = "", *, resumed: bool = False,
) -> Admitted | Refused:
    if len(connect.client_id) > limits.max_client_id_length:
        return Refused(Reason.CLIENT_IDENTIFIER_NOT_VALID, f"client id longer than {limits.max_client_id_length}")
    if connect.username == PROVISION or connect.client_id == PROVISION:
        # Provisioning comes first, before any certificate, and needs no credentials.
        return _admitted(connect, None, limits, will_accepted=False)
    by_certificate = peer_certificate is not None and connect.username is None
    try:
        if by_certificate:
            assert peer_certificate is not None
            device = await auth.by_certificate(peer_certificate, source, address, resumed=resumed)
        else:
            device = await auth.by_mqtt(connect.client_id, connect.username, connect.password, address)
    except Unauthorized:
        # A certificate refused (unknown, disabled, not registrable) is only "not authorized".
        return Refused(Reason.NOT_AUTHORIZED if by_certificate else refusal_for(connect), "unknown credentials")
    except TooManyRequests as exc:
        return Refused(limit_reason(exc, connect.protocol_level), exc.message)
    except GatewayError as exc:
        return Refused(Reason.SERVER_UNAVAILABLE, exc.message)
    will = connect.will
    if will is not None and will.topic not in UPLINK_TOPICS:
        if connect.protocol_level == MQTT_5:
            return Refused(Reason.TOPIC_NAME_INVALID, f"a will may only go to the device's own topics: {will.topic}")
        return _admitted(connect, device, limits, will_accepted=False)
    return _admitted(connect, device, limits, will_accepted=will is not None)


def _admitted(connect: Connect, device: DeviceIdentity | None, limits: Limits, *, will_accepted: bool) -> Admitted:
    client_id = connect.client_id
    properties: Properties = {}
    if connect.protocol_level == MQTT_5:
        properties = {
            Property.RECEIVE_MAXIMUM: limits.receive_maximum,
            Property.TOPIC_ALIAS_MAXIMUM: limits.topic_alias_maximum,
            Property.MAXIMUM_PACKET_SIZE: limits.max_packet_size,
            Property.RETAIN_AVAILABLE: 0,
            Property.SHARED_SUBSCRIPTION_AVAILABLE: 0,
            Property.SUBSCRIPTION_IDENTIFIER_AVAILABLE: 0,
        }
        if not client_id:
            client_id = "gw-" + secrets.token_hex(8)
            properties[Property.ASSIGNED_CLIENT_IDENTIFIER] = client_id
    return Admitted(device, client_id, connect.keep_alive, will_accepted, properties)
