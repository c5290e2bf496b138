"""A last will, stored as the device's own message when its connection dropped without DISCONNECT.

CONNECT accepted it only if its topic is one of the device's uplink topics (connect.py).
"""

from __future__ import annotations

import logging

from gateway import codec as payloads
from gateway.errors import GatewayError
from gateway.model import DeviceIdentity
from gateway.uplink import Uplink
from protocols.mqtt import topics
from protocols.mqtt.packets import Will

log = logging.getLogger(__name__)


def store_will(will: Will, device: DeviceIdentity, uplink: Uplink, protocol: str) -> None:
    route = topics.route(will.topic)
    try:
        payload = payloads.loads(will.payload)
        if route is not None and route.kind is topics.Kind.ATTRIBUTES:
            uplink.submit_attributes(device, payload, protocol)
        else:
            uplink.submit_telemetry(device, payload, protocol)
    except GatewayError as exc:
        log.info("the last will of %s was not stored: %s", device.name, exc.message,
                 extra={"device_id": device.device_id})
