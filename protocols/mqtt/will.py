"""A last will, stored as the device's own message when its connection dropped without DISCONNECT.

CONNECT accepted it only if its topic is one of the device's uplink topics (connect.py).
"""

from __future__ import annotations

import logging

from fleetgate.core import codec as payloads
from fleetgate.core.errors import GatewayError
from fleetgate.core.model import DeviceIdentity
from fleetgate.core.uplink import Uplink
from fleetgate.protocols.mqtt import topics
from fleetgate.protocols.mqtt.packets import Will

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
