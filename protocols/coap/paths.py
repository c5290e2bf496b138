"""The device API's resources, from a request's Uri-Path (spec 3.5): ``/api/v1/provision`` and
``/api/v1/{token}/{feature}[/{requestId}]``."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from fleetgate.protocols.coap.errors import UnknownPath


class Feature(enum.Enum):
    PROVISION = "provision"
    TELEMETRY = "telemetry"
    ATTRIBUTES = "attributes"
    RPC = "rpc"
    RPC_REPLY = "rpc reply"


@dataclass(frozen=True, slots=True)
class Route:
    feature: Feature
    token: str = ""
    request_id: int | None = None


_FEATURES = {"telemetry": Feature.TELEMETRY, "attributes": Feature.ATTRIBUTES, "rpc": Feature.RPC}


def route_of(path: tuple[str, ...]) -> Route:
    """The resource a Uri-Path names; UnknownPath for anything else."""
    if len(path) < 3 or path[0] != "api" or path[1] != "v1":
        raise UnknownPath(f"No resource at /{'/'.join(path)}")
    if len(path) == 3 and path[2] == "provision":
        return Route(Feature.PROVISION)
    feature = _FEATURES.get(path[3]) if len(path) in (4, 5) else None
    if feature is None:
        raise UnknownPath(f"No resource at /{'/'.join(path)}")
    if len(path) == 4:
        return Route(feature, path[2])
    if feature is Feature.RPC and path[4].isascii() and path[4].isdigit():
        return Route(Feature.RPC_REPLY, path[2], int(path[4]))
    raise UnknownPath(f"No resource at /{'/'.join(path)}")
