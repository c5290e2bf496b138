"""A last will, stored as the device's own message when its connection dropped without DISCONNECT.

CONNECT accepted it only if its topic routes to a stored operation (connect.py).
"""

from __future__ import annotations

import logging

from fleetgate.core.device_service import DeviceService
from fleetgate.core.errors import GatewayError
from fleetgate.core.model import DeviceIdentity
from fleetgate.protocols.mqtt.packets import Will
from fleetgate.protocols.mqtt.routes import ROUTES

log = logging.getLogger(__name__)


def store_will(will: Will, device: DeviceIdentity, service: DeviceService, protocol: str) -> None:
    match = ROUTES.match(will.topic)
    if match is None or not match.targets[""].operation.allowed(device):
        return
    try:
        service.handler(match.targets[""].operation)(device, will.payload, match.params, protocol)
    except GatewayError as exc:
        log.info("the last will of %s was not stored: %s", device.name, exc.message,
                 extra={"device_id": device.device_id})
