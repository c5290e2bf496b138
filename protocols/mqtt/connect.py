"""The CONNECT decision: who the client is, what it may do, and the CONNACK it gets."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from fleetgate.core import iotda_auth
from fleetgate.core.device_service import DeviceService
from fleetgate.core.errors import GatewayError
from fleetgate.core.model import DeviceIdentity
from fleetgate.core.operations import Reply
from fleetgate.protocols.mqtt.errors import ClientIdRefused, WillRefused, reason_of
from fleetgate.protocols.mqtt.packets import MQTT_5, Connect, Property, Properties
from fleetgate.protocols.mqtt.routes import ROUTES

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
    iotda: bool = False  # connected in IoTDA's form: commands go out on its $oc topics


@dataclass(frozen=True, slots=True)
class Refused:
    reason: int
    message: str


def _stored_by(topic: str, device: DeviceIdentity) -> bool:
    """Whether the device's PUBLISH to ``topic`` is stored (a will may only go to such a topic)."""
    match = ROUTES.match(topic)
    if match is None:
        return False
    operation = match.targets[""].operation
    return operation.reply is Reply.STORED and operation.allowed(device)


async def admit(
    connect: Connect, service: DeviceService, limits: Limits, peer_certificate: bytes | None, source: str = "",
    address: str = "", *, resumed: bool = False, tls: bool = False,
) -> Admitted | Refused:
    try:
        if len(connect.client_id) > limits.max_client_id_length:
            raise ClientIdRefused(f"client id longer than {limits.max_client_id_length}")
        if connect.username == PROVISION or connect.client_id == PROVISION:
            # Provisioning comes first, before any certificate, and needs no credentials.
            return _admitted(connect, None, limits, will_accepted=False)
        iotda = iotda_auth.parse(connect.client_id, connect.username)
        if peer_certificate is not None and (connect.username is None or (iotda and connect.password is None)):
            # A certificate alone (ThingsBoard), or with IoTDA's client id and user name.
            device = await service.by_certificate(peer_certificate, source, address, resumed=resumed, iotda=iotda)
        else:
            device = await service.by_mqtt(connect.client_id, connect.username, connect.password, address, tls=tls)
        will = connect.will
        if will is not None and not _stored_by(will.topic, device):
            if connect.protocol_level == MQTT_5:
                raise WillRefused(f"a will may only go to the device's own topics: {will.topic}")
            return _admitted(connect, device, limits, will_accepted=False, iotda=iotda is not None)
    except GatewayError as exc:
        return Refused(reason_of(exc, connect), exc.message)
    return _admitted(connect, device, limits, will_accepted=will is not None, iotda=iotda is not None)


def _admitted(
    connect: Connect, device: DeviceIdentity | None, limits: Limits, *, will_accepted: bool, iotda: bool = False
) -> Admitted:
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
    return Admitted(device, client_id, connect.keep_alive, will_accepted, properties, iotda)
