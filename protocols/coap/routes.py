"""ThingsBoard's CoAP device API (spec 1.5, 3.5) as a route table: method and Uri-Path to the
device service's operation, or to an observation the site keeps.

Deviation from ThingsBoard: an unknown path is 4.04 (ThingsBoard: 4.00).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from fleetgate.core.operations import Operation
from fleetgate.protocols.routing import RouteTable


class Stream(enum.Enum):
    """What an observation (RFC 7641) delivers."""

    ATTRIBUTES = "attributes"
    RPC = "rpc"


@dataclass(frozen=True, slots=True)
class CoapRoute:
    operation: Operation | None  # None: the request only registers an observation
    observe: Stream | None = None  # a GET with Observe=0 then receives this stream
    query: bool = False  # the Uri-Query is the request, in the body's JSON form
    refusal: str | None = None  # ThingsBoard answers this method here with 4.00 and this reason


ROUTES: RouteTable[CoapRoute] = RouteTable([
    ("POST", "api/v1/provision", CoapRoute(Operation.PROVISION)),
    ("POST", "api/v1/{token}/telemetry", CoapRoute(Operation.TELEMETRY)),
    ("GET", "api/v1/{token}/telemetry", CoapRoute(None, refusal="Can't fetch/subscribe to timeseries updates")),
    ("POST", "api/v1/{token}/attributes", CoapRoute(Operation.ATTRIBUTES)),
    ("GET", "api/v1/{token}/attributes",
     CoapRoute(Operation.ATTRIBUTE_REQUEST, observe=Stream.ATTRIBUTES, query=True)),
    ("POST", "api/v1/{token}/rpc", CoapRoute(Operation.CLIENT_RPC)),
    ("GET", "api/v1/{token}/rpc", CoapRoute(None, observe=Stream.RPC)),
    ("POST", "api/v1/{token}/rpc/{request_id:int}", CoapRoute(Operation.RPC_REPLY)),
    ("POST", "api/v1/{token}/claim", CoapRoute(Operation.CLAIM)),
    # ThingsBoard's OTA resources: coap://host/fw/{token}?title=&version=&size=&chunk= (Block2 when large)
    ("GET", "fw/{token}", CoapRoute(Operation.FIRMWARE, query=True)),
    ("GET", "sw/{token}", CoapRoute(Operation.SOFTWARE, query=True)),
])
