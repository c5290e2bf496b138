"""The answer to a ``provision`` session's request on /provision/request (spec 1.4, 2.1).

An undecodable payload is PUBACK 0x99 and JSON lacking the key or secret 0x83, and the
session closes; too many attempts with the key get 0x97 and a FAILURE answer; every
other outcome gets its answer, and the session closes a while later, as ThingsBoard's does.
"""

from __future__ import annotations

import orjson

from fleetgate.core import metrics
from fleetgate.core.device_service import DeviceService
from fleetgate.core.errors import GatewayError, TooManyRequests
from fleetgate.core.provision_json import response_to_json
from fleetgate.protocols.mqtt.errors import reason_of
from fleetgate.protocols.mqtt.packets import Reason

PROTOCOL = "mqtt"


async def answer(service: DeviceService, payload: bytes) -> tuple[int, bytes | None]:
    """The PUBACK reason, and the answer to publish (None: close the session at once)."""
    try:
        result = await service.provision(payload, PROTOCOL, PROTOCOL)
    except TooManyRequests as exc:
        metrics.LIMIT_REFUSALS.labels(PROTOCOL, type(exc).__name__).inc()
        return reason_of(exc), orjson.dumps({"errorMsg": exc.message, "status": "FAILURE"})
    except GatewayError as exc:
        return reason_of(exc), None
    return Reason.SUCCESS, response_to_json(result)
