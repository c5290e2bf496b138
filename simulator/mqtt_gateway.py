"""What a simulated ThingsBoard gateway publishes: its sub-devices' telemetry, several to a message.

ThingsBoard's gateway API lets one MQTT connection (a gateway device's) speak
for many devices: v1/gateway/telemetry carries
``{"A":[{"ts":T,"values":{...}}],"B":[...]}``, and a sub-device first named
there is created by the server. A simulated gateway here has ``subdevices``
sub-devices that take turns, ``per_message`` of them in each message, so that
each sends as often as the others; its payloads are encoded once, each split
where its timestamp goes (one T for every reading of a message: they are of
different devices, and a device's next reading comes in a later message).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import orjson

GATEWAY_TELEMETRY_TOPIC = "v1/gateway/telemetry"


def subdevice_name(prefix: str, gateway: int, subdevice: int) -> str:
    """Sub-device ``subdevice`` of gateway ``gateway`` (0-based both); unique given unique gateways."""
    return f"{prefix}{gateway}-{subdevice}"


def turns(subdevices: int, per_message: int) -> int:
    """Messages before the same sub-devices share a message again: each sub-device is in
    ``per_message / gcd`` of them, so all are covered as evenly as can be."""
    return subdevices // math.gcd(subdevices, per_message)


def payload_parts(names: Sequence[str], body: bytes, *, timestamp: bool) -> tuple[bytes, ...]:
    """One message for these sub-devices, each with ``body`` as its one reading.

    With ``timestamp``: the parts around the 13-digit T each reading carries,
    ``{"A":[{"ts":`` T ``,"values":BODY}],"B":[{"ts":`` T ``,...}]}``, so that
    joined by T they are the payload. Without: one part, ``{"A":[BODY],...}``
    (plain values, which ThingsBoard stamps on arrival).
    """
    if not names:
        raise ValueError("a gateway message names at least one sub-device")
    if not timestamp:
        return (b"{" + b",".join(orjson.dumps(name) + b":[" + body + b"]" for name in names) + b"}",)
    parts: list[bytes] = []
    before = b"{"
    for name in names:
        parts.append(before + orjson.dumps(name) + b':[{"ts":')
        before = b',"values":' + body + b"}],"
    parts.append(before[:-1] + b"}")
    return tuple(parts)


def gateway_payloads(
    prefix: str, gateway: int, subdevices: int, per_message: int, body: bytes, *, timestamp: bool
) -> list[tuple[bytes, ...]]:
    """The messages of one gateway in the order it sends them, round and round: message t
    names sub-devices ``t*K .. t*K+K-1`` modulo ``subdevices``, for ``K = per_message``."""
    if not 1 <= per_message <= subdevices:
        raise ValueError(f"sub-devices in a message must be 1..{subdevices} (the gateway's), not {per_message}")
    names = [subdevice_name(prefix, gateway, j) for j in range(subdevices)]
    return [
        payload_parts([names[(t * per_message + r) % subdevices] for r in range(per_message)], body,
                      timestamp=timestamp)
        for t in range(turns(subdevices, per_message))
    ]
