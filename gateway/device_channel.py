"""What a front-end's device session takes from the core, and the client-side RPC the gateway answers.

A front-end attaches a channel for each authenticated device session (fleetgate.core.downlink);
the bodies pushed to it are ThingsBoard's, whatever the protocol renders them in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from fleetgate.core.telemetry_model import KeyValue, ValueType


class DeviceChannel(Protocol):
    """One device session, as a front-end delivers to it (an MQTT session, a CoAP observer...)."""

    def push_attributes(self, update: dict[str, Any]) -> None: ...

    def push_rpc(self, request_id: int, method: str, params: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """What ``getSessionLimits`` answers: the limits this gateway really enforces."""

    max_payload_size: int
    max_inflight_messages: int

    def to_json(self) -> dict[str, Any]:
        # An empty rate-limit string means "no limit" to ThingsBoard's SDK.
        return {
            "maxPayloadSize": self.max_payload_size,
            "maxInflightMessages": self.max_inflight_messages,
            "rateLimits": {"messages": "", "telemetryMessages": "", "telemetryDataPoints": ""},
        }


def client_rpc(limits: SessionLimits, method: Any, params: Any) -> dict[str, Any]:
    """A device's own call: the gateway answers the ones it knows and says so for the rest."""
    if method == "getSessionLimits":
        return limits.to_json()
    return {"error": f"Unsupported RPC method: {method}"}


def attribute_update(updated: Sequence[KeyValue], deleted: Sequence[str]) -> dict[str, Any]:
    """ThingsBoard's update body: {"key": value, ...} and "deleted": [keys] when keys went away."""
    body: dict[str, Any] = {kv.key: orjson.loads(kv.value) if kv.type is ValueType.JSON else kv.value
                            for kv in updated}
    if deleted:
        body["deleted"] = list(deleted)
    return body
