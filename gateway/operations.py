"""Everything a device can ask of the gateway, whatever its protocol.

Each operation is one method of :class:`fleetgate.core.device_service.DeviceService`
(its value names the method), and each front-end's route table maps its wire
addresses to these members. How an operation is answered decides the method's shape:

- ``STORED``: ``method(device, body, params, protocol, receipt) -> Future | None``;
  acknowledged once the rows are committed (the receipt is told, or the future
  completes; None with no receipt means "acknowledge now").
- ``ANSWER``: ``method(device, body, params) -> Awaitable[bytes]``; the answer's body. The
  request is checked before the awaitable is returned, so a malformed one is refused
  at once, as a stored message is.
- ``NONE``: ``method(device, body, params) -> None``; acknowledged at once.

``params`` holds what the address carried (a request id from the topic or path,
keys from a query string); ``body`` is the request's payload as it arrived.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from fleetgate.core.model import DeviceIdentity

Params = Mapping[str, Any]
NO_PARAMS: Params = MappingProxyType({})


class Reply(enum.Enum):
    STORED = "stored"
    ANSWER = "answer"
    NONE = "none"


class Caller(enum.Enum):
    ANYONE = "anyone"  # before credentials: provisioning
    DEVICE = "device"
    GATEWAY = "gateway"  # a device marked as a gateway


class Operation(enum.Enum):
    """What a device does, and who may ask for it (``caller``)."""

    TELEMETRY = ("telemetry", Reply.STORED)
    ATTRIBUTES = ("attributes", Reply.STORED)
    ATTRIBUTE_REQUEST = ("attribute_request", Reply.ANSWER)
    CLIENT_RPC = ("client_rpc", Reply.ANSWER)
    RPC_REPLY = ("rpc_reply", Reply.NONE)
    PROVISION = ("provision", Reply.ANSWER, Caller.ANYONE)
    CLAIM = ("claim", Reply.NONE)
    # OTA package downloads (fleetgate.core.ota_downloads): MQTT's v2/fw/request/{id}/chunk/{n},
    # and HTTP's and CoAP's ?title=&version=&size=&chunk=
    FIRMWARE_CHUNK = ("firmware_chunk", Reply.ANSWER)
    SOFTWARE_CHUNK = ("software_chunk", Reply.ANSWER)
    FIRMWARE = ("firmware", Reply.ANSWER)
    SOFTWARE = ("software", Reply.ANSWER)
    # ThingsBoard's gateway API: a gateway device acting for the sub-devices behind it.
    GATEWAY_CONNECT = ("gateway_connect", Reply.STORED, Caller.GATEWAY)
    GATEWAY_DISCONNECT = ("gateway_disconnect", Reply.NONE, Caller.GATEWAY)
    GATEWAY_TELEMETRY = ("gateway_telemetry", Reply.STORED, Caller.GATEWAY)
    GATEWAY_ATTRIBUTES = ("gateway_attributes", Reply.STORED, Caller.GATEWAY)
    GATEWAY_ATTRIBUTE_REQUEST = ("gateway_attribute_request", Reply.ANSWER, Caller.GATEWAY)
    GATEWAY_RPC_REPLY = ("gateway_rpc_reply", Reply.NONE, Caller.GATEWAY)
    GATEWAY_CLAIM = ("gateway_claim", Reply.NONE, Caller.GATEWAY)

    # IoTDA's device topics ($oc/devices/{device_id}/sys/...; fleetgate.core.iotda_uplink).
    IOTDA_PROPERTIES = ("iotda_properties", Reply.STORED)
    IOTDA_MESSAGE = ("iotda_message", Reply.STORED)
    IOTDA_EVENT = ("iotda_event", Reply.STORED)
    IOTDA_RESPONSE = ("iotda_response", Reply.NONE)
    IOTDA_SHADOW = ("iotda_shadow", Reply.ANSWER)

    def __init__(self, method: str, reply: Reply, caller: Caller = Caller.DEVICE) -> None:
        self.method = method
        self.reply = reply
        self.caller = caller

    @property
    def needs_device(self) -> bool:
        return self.caller is not Caller.ANYONE

    def allowed(self, device: DeviceIdentity) -> bool:
        """Whether ``device`` may ask for this (only gateway devices use the gateway API)."""
        return self.caller is not Caller.GATEWAY or device.gateway
