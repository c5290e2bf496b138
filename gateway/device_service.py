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
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from fleetgate.core import codec, metrics
from fleetgate.core import iotda_codec
from fleetgate.core.admission import ConnectionGate
from fleetgate.core.auth import DeviceAuthenticator
from fleetgate.core.claiming import Claiming, claim_request
from fleetgate.core.clock import SYSTEM_CLOCK, Clock
from fleetgate.core.codec import PayloadLimits
from fleetgate.core.device_channel import DeviceChannel
from fleetgate.core.downlink import Downlink
from fleetgate.core.errors import InvalidInput
from fleetgate.core.gateway_operations import GatewayOperations
from fleetgate.core.ingest import IngestPipeline, Receipt
from fleetgate.core.iotda_auth import IotdaConnect
from fleetgate.core.iotda_uplink import IotdaUplink, shadow_request
from fleetgate.core.model import DeviceIdentity
from fleetgate.core.operations import Operation, Params
from fleetgate.core.ota_downloads import OtaDownloads
from fleetgate.core.ota_model import OtaType
from fleetgate.core.ota_progress import OtaProgress, mentions_ota
from fleetgate.core.ports import AttributeReader
from fleetgate.core.presence import Presence
from fleetgate.core.provision_json import request_from_json
from fleetgate.core.provisioning import ProvisioningService
from fleetgate.core.provisioning_model import ProvisionResult
from fleetgate.core.subdevices import GatewayChannel, SubDeviceChannel, SubDevices
from fleetgate.core.tasks import OwnedTasks
from fleetgate.core.telemetry_model import AttributeMessage, AttributeScope, TelemetryMessage

log = logging.getLogger(__name__)

# One entry per device sending server-stamped telemetry; cleared when this many, which
# costs at most one millisecond's uniqueness for devices then sending.
_MAX_TRACKED_DEVICES = 1_000_000


class DeviceService(GatewayOperations):
    def __init__(
        self, *, auth: DeviceAuthenticator, provisioning: ProvisioningService, pipeline: IngestPipeline,
        attributes: AttributeReader, downlink: Downlink, limits: PayloadLimits, ack_stored: bool,
        subdevices: SubDevices | None = None, gate: ConnectionGate | None = None, clock: Clock = SYSTEM_CLOCK,
        presence: Presence | None = None, claiming: Claiming | None = None,
        ota: tuple[OtaDownloads, OtaProgress] | None = None, iotda: IotdaUplink | None = None,
    ) -> None:
        self._iotda = iotda
        self._ota = ota
        self._auth = auth
        self._claiming = claiming
        self._provisioning = provisioning
        self._pipeline = pipeline
        self._attributes = attributes
        self._downlink = downlink
        self._gate = gate
        self._clock = clock
        self._presence = presence
        # On every message: presence's own bound method (a set add), or nothing.
        self._active: Callable[..., None] = presence.active if presence is not None else _no_activity
        self.limits = limits
        self._ack_stored = ack_stored
        self._last_server_ts: dict[str, int] = {}
        self._subdevices = subdevices
        self._tasks = OwnedTasks()  # sub-devices being looked up before their gateway's message is done
        # A gateway's connections in this process, and the channels of the sub-devices behind each.
        self._gateway_channels: dict[str, set[GatewayChannel]] = {}
        self._behind: dict[GatewayChannel, dict[str, SubDeviceChannel]] = {}
        # Those of a gateway's connections that take its sub-devices' RPC (subscribed to v1/gateway/rpc).
        self._subdevice_listeners: set[GatewayChannel] = set()
        # HTTP and CoAP ask both on every request: the authenticator's own bound methods, with
        # no call of ours around them. check_source raises SourceBlocked while an address is
        # blocked for its authentication failures; cached_token is the device of a token seen
        # recently, or None (then ask by_token).
        self.check_source: Callable[[str], None] = auth.check_source
        # The TLS listeners tell it each certificate their handshakes refuse, with its address.
        self.certificate_refused: Callable[[str], None] = auth.certificate_refused
        self.cached_token: Callable[[str], DeviceIdentity | None] = auth.cached_token

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


    async def by_token(self, token: str, address: str = "") -> DeviceIdentity:
        return await self._auth.by_token(token, address)

    async def by_mqtt(
        self, client_id: str, username: str | None, password: bytes | None, address: str = "", *,
        tls: bool = False,
    ) -> DeviceIdentity:
        return await self._auth.by_mqtt(client_id, username, password, address, tls=tls)

    async def by_certificate(
        self, der: bytes, source: str = "", address: str = "", *, resumed: bool = False,
        iotda: IotdaConnect | None = None,
    ) -> DeviceIdentity:
        """The certificate's device (registered now when a device CA's template allows it);
        CertificateRefused otherwise, or when an IoTDA CONNECT names another device."""
        return await self._auth.by_certificate(der, source, address, resumed=resumed, iotda=iotda)

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
        if self._ota is not None and mentions_ota(body):
            self._ota[1].reported(device, readings)  # fw_state and the like (fleetgate.core.ota_progress)
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
        self._active(device.device_id)
        root = codec.loads(body)
        keys = root if isinstance(root, dict) else {}
        client = split_keys(_joined(keys, "clientKeys", "client_keys"))
        shared = split_keys(_joined(keys, "sharedKeys", "shared_keys"))
        return self._read_attributes(device, client, shared)

    def client_rpc(self, device: DeviceIdentity, body: bytes, params: Params) -> Awaitable[bytes]:
        """A device's own call: the gateway answers the ones it knows and says so for the rest."""
        self._active(device.device_id)
        call = codec.loads(body)
        if not isinstance(call, dict):
            raise InvalidInput('A client-side RPC request is {"method": ..., "params": ...}')
        return _ready(orjson.dumps(self._downlink.client_rpc(call.get("method"), call.get("params"))))

    def rpc_reply(self, device: DeviceIdentity, body: bytes, params: Params) -> None:
        """A device's answer to a server-side call (``params["request_id"]``); one nobody waits
        for any more is dropped."""
        self._active(device.device_id)
        self._downlink.rpc_reply(device.device_id, params["request_id"], codec.loads(body))

    def claim(self, device: DeviceIdentity, body: bytes, params: Params) -> None:
        """ThingsBoard's claiming (fleetgate.core.claiming): ``{"secretKey": ..., "durationMs": ...}``."""
        self._active(device.device_id)
        self._claims().request(device, claim_request(body))

    def firmware_chunk(self, device: DeviceIdentity, body: bytes, params: Params) -> Awaitable[bytes]:
        """MQTT's ``v2/fw/request/{request_id}/chunk/{chunk}``, the chunk size in the body."""
        self._active(device.device_id)
        return self._downloads().mqtt_chunk(device, OtaType.FIRMWARE, params["request_id"], params["chunk"], body)

    def software_chunk(self, device: DeviceIdentity, body: bytes, params: Params) -> Awaitable[bytes]:
        self._active(device.device_id)
        return self._downloads().mqtt_chunk(device, OtaType.SOFTWARE, params["request_id"], params["chunk"], body)

    def firmware(self, device: DeviceIdentity, body: bytes, params: Params) -> Awaitable[bytes]:
        """HTTP's and CoAP's firmware download: ``?title=&version=&size=&chunk=`` as the body."""
        self._active(device.device_id)
        return self._downloads().query_chunk(device, OtaType.FIRMWARE, body, counted="continuation" not in params)

    def software(self, device: DeviceIdentity, body: bytes, params: Params) -> Awaitable[bytes]:
        self._active(device.device_id)
        return self._downloads().query_chunk(device, OtaType.SOFTWARE, body, counted="continuation" not in params)

    # IoTDA's $oc topics: the dialect lives in fleetgate.core.iotda_codec and iotda_uplink

    def iotda_properties(
        self, device: DeviceIdentity, body: bytes, params: Params, protocol: str, receipt: Receipt | None = None
    ) -> asyncio.Future[None] | None:
        """``properties/report``: telemetry keyed by property name, each property's service remembered."""
        report = iotda_codec.properties_report(body, self._server_ts(device.device_id), self.limits)
        if self._iotda is not None:
            self._iotda.remember(device.device_id, report.services)
        return self._submit(TelemetryMessage(device.device_id, report.readings), protocol, "iotda_properties",
                            receipt)

    def iotda_message(
        self, device: DeviceIdentity, body: bytes, params: Params, protocol: str, receipt: Receipt | None = None
    ) -> None:
        """``messages/up``, into the device message log."""
        self._active(device.device_id, protocol)
        self._iotda_uplink().message_up(device, body, receipt)
        metrics.MESSAGES.counts[(protocol, "iotda_message")] += 1

    def iotda_event(
        self, device: DeviceIdentity, body: bytes, params: Params, protocol: str, receipt: Receipt | None = None
    ) -> None:
        """``events/up``: recorded whatever its type (``$time_sync`` answered)."""
        self._active(device.device_id, protocol)
        self._iotda_uplink().event_up(device, body, receipt, protocol)

    def iotda_response(self, device: DeviceIdentity, body: bytes, params: Params) -> None:
        """A device's answer to a command or a properties set or get; one nobody waits for is dropped."""
        self._active(device.device_id)
        request_id = params["request_id"]
        answer = codec.loads(body)
        if isinstance(request_id, str) and request_id.isdigit() and len(request_id) <= 10:
            self._downlink.rpc_reply(device.device_id, int(request_id), answer)

    def iotda_shadow(self, device: DeviceIdentity, body: bytes, params: Params) -> Awaitable[bytes]:
        """``shadow/get``: the desired and reported properties, of one service or all."""
        self._active(device.device_id)
        return self._iotda_uplink().shadow_answer(device, shadow_request(body))

    # the downlink and back-pressure

    def attach(self, device: DeviceIdentity, channel: DeviceChannel, protocol: str = "mqtt") -> None:
        """Deliver the device's shared-attribute updates and server-side RPC to ``channel``; a
        gateway's channel (a GatewayChannel) also reaches the sub-devices it connects."""
        self._downlink.attach(device.device_id, channel)
        if self._presence is not None:  # online while attached (fleetgate.core.presence)
            self._presence.connected(device.device_id, protocol)
        if device.gateway and isinstance(channel, GatewayChannel):
            self._gateway_channels.setdefault(device.device_id, set()).add(channel)
            self._behind[channel] = {}

    def rpc_listening(self, device: DeviceIdentity, channel: DeviceChannel) -> None:
        """The attached ``channel`` takes server-side RPC from now on (an MQTT subscription to RPC
        requests, an RPC long poll or observation): the device's persistent calls go out to it."""
        self._downlink.listen_rpc(device.device_id, channel)

    def rpc_not_listening(self, device: DeviceIdentity, channel: DeviceChannel) -> None:
        """The attached ``channel`` takes server-side RPC no more (an MQTT UNSUBSCRIBE from the RPC
        topic): persistent calls wait until the device listens again."""
        self._downlink.unlisten_rpc(device.device_id, channel)

    def detach(self, device: DeviceIdentity, channel: DeviceChannel, protocol: str = "mqtt", *,
               linger: float = 0.0) -> None:
        """``linger``: seconds the device is expected back on a new channel (an HTTP device between
        two RPC polls): a lightweight call made meanwhile waits for it (fleetgate.core.lingering)."""
        self._downlink.detach(device.device_id, channel, linger)
        if self._presence is not None:
            self._presence.disconnected(device.device_id, protocol)
        behind = self._behind.pop(channel, None) if isinstance(channel, GatewayChannel) else None
        if behind is None:
            return
        self._subdevice_listeners.discard(channel)  # type: ignore[arg-type]
        for wrapper in behind.values():
            self.detach(wrapper.device, wrapper)
        channels = self._gateway_channels.get(device.device_id)
        if channels is not None:
            channels.discard(channel)
            if not channels:
                del self._gateway_channels[device.device_id]
                if self._subdevices is not None:
                    self._subdevices.forget_gateway(device.device_id)

    async def close(self) -> None:
        """Finish the sub-device lookups under way (their messages are then answered), and the claims."""
        await self._tasks.finish()
        if self._claiming is not None:
            await self._claiming.close()
        if self._ota is not None:
            await self._ota[1].close()
        if self._iotda is not None:
            await self._iotda.close()

    @property
    def saturated(self) -> bool:
        """Whether the ingest queue is full: streaming front-ends stop reading until there is room."""
        return self._pipeline.saturated

    async def wait_for_room(self) -> None:
        await self._pipeline.wait_for_room()

    # internals

    def _downloads(self) -> OtaDownloads:
        if self._ota is None:
            raise InvalidInput("This gateway does not serve OTA packages")
        return self._ota[0]

    def _iotda_uplink(self) -> IotdaUplink:
        if self._iotda is None:
            raise InvalidInput("This gateway does not serve IoTDA's device topics")
        return self._iotda

    def _claims(self) -> Claiming:
        if self._claiming is None:
            raise InvalidInput("This gateway does not serve claiming")
        return self._claiming

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
        self._active(message.device_id, protocol)
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


def _no_activity(device_id: str, protocol: str | None = None) -> None:
    pass


async def _ready(answer: bytes) -> bytes:
    return answer

