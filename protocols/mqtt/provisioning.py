"""The answer to a ``provision`` session's request on /provision/request (spec 2.1): the PUBACK
reason and the /provision/response body, counted by outcome."""

from __future__ import annotations

from typing import Any

import orjson

from fleetgate.core import metrics
from fleetgate.core.errors import TooManyRequests
from fleetgate.core.provision_json import response_to_json
from fleetgate.core.provisioning import ProvisioningService
from fleetgate.protocols.mqtt.packets import Reason

PROTOCOL = "mqtt"


async def answer(provisioning: ProvisioningService, request: Any) -> tuple[int, bytes]:
    try:
        result = await provisioning.provision(request)
    except TooManyRequests as exc:
        # Too many attempts with this key: PUBACK 0x97 (MQTT 5) and a FAILURE answer.
        metrics.LIMIT_REFUSALS.labels(PROTOCOL, type(exc).__name__).inc()
        return Reason.QUOTA_EXCEEDED, orjson.dumps({"errorMsg": exc.message, "status": "FAILURE"})
    metrics.PROVISIONING.labels(PROTOCOL, result.status.value, result.code).inc()
    return Reason.SUCCESS, response_to_json(result)
