"""The one seam between the front-ends and the core: everything a device does.

HTTP, MQTT and CoAP hold only this service and their own settings. Each maps its
wire addresses to :class:`~fleetgate.core.operations.Operation` members in a route
table, and calls the method the operation names (:meth:`handler`); everything
else a connection needs (authentication, admission, provisioning, a downlink
channel, back-pressure) is a method here too.

Storing operations are synchronous: they return the future a stored
acknowledgement waits on (or None), so a front-end can answer from a callback
without a task per message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from fleetgate.core import codec, metrics
from fleetgate.core.admission import ConnectionGate
from fleetgate.core.auth import DeviceAuthenticator
from fleetgate.core.clock import SYSTEM_CLOCK, Clock
from fleetgate.core.codec import PayloadLimits
from fleetgate.core.downlink import DeviceChannel, Downlink
from fleetgate.core.errors import InvalidInput
from fleetgate.core.ingest import IngestPipeline, Receipt
from fleetgate.core.model import (
    AttributeMessage, AttributeScope, DeviceIdentity, ProvisionResult, TelemetryMessage,
)
from fleetgate.core.operations import Operation, Params
from fleetgate.core.ports import AttributeReader
from fleetgate.core.provision_json import request_from_json
from fleetgate.core.provisioning import ProvisioningService

# One entry per device sending server-stamped telemetry; cleared when this many, which
# costs at most one millisecond's uniqueness for devices then sending.
_MAX_TRACKED_DEVICES = 1_000_000


class DeviceService:
    def __init__(
        self, *, auth: DeviceAuthenticator, provisioning: ProvisioningService, pipeline: IngestPipeline,
        attributes: AttributeReader, downlink: Downlink, limits: PayloadLimits, ack_stored: bool,
        gate: ConnectionGate | None = None, clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._auth = auth
        self._provisioning = provisioning
        self._pipeline = pipeline
        self._attributes = attributes
        self._downlink = downlink
        self._gate = gate
        self._clock = clock
        self.limits = limits
        self._ack_stored = ack_stored
        self._last_server_ts: dict[str, int] = {}

    def handler(self, operation: Operation) -> Callable[..., Any]:
        """The method that performs ``operation``: what a front-end binds each route to."""
        return getattr(self, operation.method)  # type: ignore[no-any-return]

    # admission and authentication

    def open_connection(self, address: str) -> None:
        """Count a new connection from ``address``; TooManyRequests when its limits refuse it."""
        if self._gate is not None and address:
            self._gate.open(address)

    def close_connection(self, address: str) -> None:
        if self._gate is not None and address:
            self._gate.close(address)

    def check_source(self, address: str) -> None:
        """SourceBlocked while ``address`` is blocked for its authentication failures."""
        self._auth.check_source(address)

    def cached_token(self, token: str) -> DeviceIdentity | None:
        """The device of a token seen recently, without a lookup; None means "ask by_token"."""
        return self._auth.cached_token(token)

    async def by_token(self, token: str, address: str = "") -> DeviceIdentity:
        return await self._auth.by_token(token, address)

    async def by_mqtt(
        self, client_id: str, username: str | None, password: bytes | None, address: str = ""
    ) -> DeviceIdentity:
        return await self._auth.by_mqtt(client_id, username, password, address)

    async def by_certificate(
        self, der: bytes, source: str = "", address: str = "", *, resumed: bool = False
    ) -> DeviceIdentity:
        """The certificate's device (registered now when a device CA's template allows it);
        CertificateRefused otherwise."""
        return await self._auth.by_certificate(der, source, address, resumed=resumed)

    # provisioning

    async def provision(self, body: bytes, source: str, protocol: str) -> ProvisionResult:
        """ThingsBoard's claim provisioning; MalformedPayload for a body that is not a JSON
        object, InvalidProvisionRequest for one lacking what ThingsBoard requires."""
        request = request_from_json(codec.loads(body), source=source)
        result = await self._provisioning.provision(request)
        metrics.PROVISIONING.labels(protocol, result.status.value, result.code).inc()
        return result

    # operations (fleetgate.core.operations)

    def telemetry(
        self, device: DeviceIdentity, body: bytes, params: Params, protocol: str, receipt: Receipt | None = None
    ) -> asyncio.Future[None] | None:
        readings = codec.parse_telemetry(body, self._server_ts(device.device_id), self.limits)
        return self._submit(TelemetryMessage(device.device_id, readings), protocol, "telemetry", receipt)

    def attributes(
        self, device: DeviceIdentity, body: bytes, params: Params, protocol: str, receipt: Receipt | None = None
    ) -> asyncio.Future[None] | None:
        values = codec.parse_attributes(body, self.limits)
        message = AttributeMessage(device.device_id, AttributeScope.CLIENT, self._clock.now_ms(), values)
        return self._submit(message, protocol, "attributes", receipt)

    def attribute_request(self, device: DeviceIdentity, body: bytes, params: Params) -> Awaitable[bytes]:
        """ThingsBoard's attribute request ``{"clientKeys": "a,b", "sharedKeys": "c"}`` (HTTP and
        CoAP hand their query over in this form; ``client_keys`` is the Python SDK's spelling).
        No keys at all means every client and shared attribute; otherwise only the scopes
        whose keys were named. Empty sections are omitted."""
        root = codec.loads(body)
        keys = root if isinstance(root, dict) else {}
        client = split_keys(_joined(keys, "clientKeys", "client_keys"))
        shared = split_keys(_joined(keys, "sharedKeys", "shared_keys"))
        return self._read_attributes(device, client, shared)

    def client_rpc(self, device: DeviceIdentity, body: bytes, params: Params) -> Awaitable[bytes]:
        """A device's own call: the gateway answers the ones it knows and says so for the rest."""
        call = codec.loads(body)
        if not isinstance(call, dict):
            raise InvalidInput('A client-side RPC request is {"method": ..., "params": ...}')
        return _ready(orjson.dumps(self._downlink.client_rpc(call.get("method"), call.get("params"))))

    def rpc_reply(self, device: DeviceIdentity, body: bytes, params: Params) -> None:
        """A device's answer to a server-side call (``params["request_id"]``); one nobody waits
        for any more is dropped."""
        self._downlink.rpc_reply(device.device_id, params["request_id"], codec.loads(body))

    # the downlink and back-pressure

    def attach(self, device: DeviceIdentity, channel: DeviceChannel) -> None:
        """Deliver the device's shared-attribute updates and server-side RPC to ``channel``."""
        self._downlink.attach(device.device_id, channel)

    def detach(self, device: DeviceIdentity, channel: DeviceChannel) -> None:
        self._downlink.detach(device.device_id, channel)

    @property
    def saturated(self) -> bool:
        """Whether the ingest queue is full: streaming front-ends stop reading until there is room."""
        return self._pipeline.saturated

    async def wait_for_room(self) -> None:
        await self._pipeline.wait_for_room()

    # internals

    def _submit(
        self, message: TelemetryMessage | AttributeMessage, protocol: str, kind: str, receipt: Receipt | None
    ) -> asyncio.Future[None] | None:
        if receipt is not None and not self._ack_stored:
            future = self._pipeline.submit(message)
            receipt.stored()
        else:
            future = self._pipeline.submit(message, wait_stored=self._ack_stored, receipt=receipt)
        metrics.MESSAGES.counts[(protocol, kind)] += 1
        metrics.DATAPOINTS.counts[(protocol,)] += message.rows
        return future

    def _server_ts(self, device_id: str) -> int:
        """The time for readings that carry none: strictly increasing per device, so that two
        messages stored in the same millisecond do not overwrite each other ((device, key, ts)
        is the row's key), and each acknowledged value stays."""
        now = self._clock.now_ms()
        last = self._last_server_ts.get(device_id, 0)
        ts = now if now > last else last + 1
        if len(self._last_server_ts) >= _MAX_TRACKED_DEVICES:
            self._last_server_ts.clear()
        self._last_server_ts[device_id] = ts
        return ts

    async def _read_attributes(
        self, device: DeviceIdentity, client_keys: list[str] | None, shared_keys: list[str] | None
    ) -> bytes:
        if not client_keys and not shared_keys:
            client_keys = shared_keys = None
            wanted = {"client": True, "shared": True}
        else:
            wanted = {"client": bool(client_keys), "shared": bool(shared_keys)}
        result: dict[str, dict[str, Any]] = {}
        for section, scope, keys in (
            ("client", AttributeScope.CLIENT, client_keys),
            ("shared", AttributeScope.SHARED, shared_keys),
        ):
            if wanted[section]:
                values = await self._attributes.read_attributes(device.device_id, scope, keys)
                if values:
                    result[section] = {v.key: v.value for v in values}
        return orjson.dumps(result)


def split_keys(raw: str | None) -> list[str] | None:
    """ThingsBoard's comma-separated key lists: "a, b,,c" -> ["a", "b", "c"]."""
    if raw is None:
        return None
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    return keys or None


def _joined(keys: Params, *names: str) -> str | None:
    """The values given under any of ``names`` (strings only), joined with commas as Spring does."""
    values = [value for name in names if isinstance(value := keys.get(name), str)]
    return ",".join(values) if values else None


async def _ready(answer: bytes) -> bytes:
    return answer
