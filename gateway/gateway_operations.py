"""ThingsBoard's gateway API: the operations a gateway device performs for the sub-devices
behind it (https://thingsboard.io/docs/reference/gateway-mqtt-api/). Part of
:class:`fleetgate.core.device_service.DeviceService`, which inherits them: each is one
operation of fleetgate.core.operations, as every other device operation is.

A gateway message names its sub-devices; those known already cost no lookup, and the
message is acknowledged at once when its rows are; a message naming a new one is checked
first, then stored once the device is found or created (fleetgate.core.subdevices).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from fleetgate.core import codec, gateway_requests, metrics
from fleetgate.core.claiming import Claiming, gateway_claim_requests
from fleetgate.core.clock import Clock
from fleetgate.core.codec import PayloadLimits
from fleetgate.core.device_channel import DeviceChannel
from fleetgate.core.downlink import Downlink
from fleetgate.core.errors import GatewayError, InvalidInput
from fleetgate.core.ingest import FutureReceipt, IngestPipeline, Receipt
from fleetgate.core.model import DeviceIdentity
from fleetgate.core.operations import Params
from fleetgate.core.ports import AttributeReader
from fleetgate.core.subdevices import GatewayChannel, SubDeviceChannel, SubDevices
from fleetgate.core.tasks import OwnedTasks
from fleetgate.core.telemetry_model import AttributeMessage, AttributeScope, TelemetryMessage

log = logging.getLogger(__name__)


class GatewayOperations:
    # What DeviceService provides.
    limits: PayloadLimits
    _ack_stored: bool
    _active: Callable[..., None]
    _attributes: AttributeReader
    _clock: Clock
    _downlink: Downlink
    _pipeline: IngestPipeline
    _subdevices: SubDevices | None
    _tasks: OwnedTasks
    _gateway_channels: dict[str, set[GatewayChannel]]
    _behind: dict[GatewayChannel, dict[str, SubDeviceChannel]]
    _subdevice_listeners: set[GatewayChannel]

    def attach(self, device: DeviceIdentity, channel: DeviceChannel, protocol: str = "mqtt") -> None:
        raise NotImplementedError

    def detach(self, device: DeviceIdentity, channel: DeviceChannel, protocol: str = "mqtt") -> None:
        raise NotImplementedError

    def _server_ts(self, device_id: str) -> int:
        raise NotImplementedError

    def _claims(self) -> Claiming:
        raise NotImplementedError

    # ThingsBoard's gateway API (fleetgate.core.gateway_requests): a gateway acting for its sub-devices

    def gateway_connect(
        self, gateway: DeviceIdentity, body: bytes, params: Params, protocol: str, receipt: Receipt | None = None
    ) -> asyncio.Future[None] | None:
        """Acknowledged once the sub-device exists (created in the gateway's project if new)."""
        request = gateway_requests.connect(body)
        return self._as_subdevices(gateway, {request.device: request.type}, lambda devices: None, receipt)

    def gateway_disconnect(self, gateway: DeviceIdentity, body: bytes, params: Params) -> None:
        name = gateway_requests.disconnect(body)
        device = self._subdevices_of(gateway).cached(gateway, name)
        if device is not None:
            for channel in self._gateway_channels.get(gateway.device_id, ()):
                wrapper = self._behind[channel].pop(device.device_id, None)
                if wrapper is not None:
                    self.detach(device, wrapper)

    def gateway_telemetry(
        self, gateway: DeviceIdentity, body: bytes, params: Params, protocol: str, receipt: Receipt | None = None
    ) -> asyncio.Future[None] | None:
        """``{"A": [{"ts": ..., "values": {...}}], "B": {...}}``: one acknowledgement once every
        row of every device is stored. A device first named here is created, as on connect."""
        payloads = gateway_requests.per_device(body, self._subdevices_of(gateway).limits.max_per_message)

        def messages(devices: dict[str, DeviceIdentity]) -> list[TelemetryMessage]:
            return [TelemetryMessage(device.device_id, codec.telemetry_from_json(
                payloads[name], self._server_ts(device.device_id), self.limits)) for name, device in devices.items()]

        def check(payload: Any) -> object:
            return codec.telemetry_from_json(payload, 0, self.limits)

        return self._store_for(gateway, payloads, check, messages, protocol, "gateway_telemetry", receipt)

    def gateway_attributes(
        self, gateway: DeviceIdentity, body: bytes, params: Params, protocol: str, receipt: Receipt | None = None
    ) -> asyncio.Future[None] | None:
        """``{"A": {"key": value}}``: the sub-devices' client attributes."""
        payloads = gateway_requests.per_device(body, self._subdevices_of(gateway).limits.max_per_message)
        now = self._clock.now_ms()

        def messages(devices: dict[str, DeviceIdentity]) -> list[AttributeMessage]:
            return [AttributeMessage(device.device_id, AttributeScope.CLIENT, now,
                                     codec.attributes_from_json(payloads[name], self.limits))
                    for name, device in devices.items()]

        def check(payload: Any) -> object:
            return codec.attributes_from_json(payload, self.limits)

        return self._store_for(gateway, payloads, check, messages, protocol, "gateway_attributes", receipt)

    def gateway_attribute_request(self, gateway: DeviceIdentity, body: bytes, params: Params) -> Awaitable[bytes]:
        """``{"id": 1, "device": "A", "client": false, "keys": [...]}``, answered as
        ``{"id": 1, "device": "A", "value": v}`` or ``"values": {...}``."""
        request = gateway_requests.attribute_request(body)
        return self._gateway_attributes(gateway, request)

    def gateway_rpc_reply(self, gateway: DeviceIdentity, body: bytes, params: Params) -> None:
        """``{"device": "A", "id": 1, "data": {...}}``: a sub-device's answer to a server-side call."""
        reply = gateway_requests.rpc_reply(body)
        device = self._subdevices_of(gateway).cached(gateway, reply.device)
        if device is not None:
            self._downlink.rpc_reply(device.device_id, reply.request_id, reply.data)

    def gateway_claim(self, gateway: DeviceIdentity, body: bytes, params: Params) -> None:
        """``{"A": {"secretKey": ..., "durationMs": ...}}``: claims for sub-devices, found or created by name."""
        subdevices = self._subdevices_of(gateway)
        requests = gateway_claim_requests(body, subdevices.limits.max_per_message)
        self._claims().request_for_subdevices(gateway, requests, subdevices)

    def subdevices_rpc_listening(self, gateway: DeviceIdentity, channel: GatewayChannel, listening: bool) -> None:
        """The gateway's ``channel`` takes its sub-devices' server-side RPC from now on (subscribed to
        ``v1/gateway/rpc``), or no more: the sub-devices it connects listen, or stop listening, with
        it, and their persistent calls go out through it as ThingsBoard's do."""
        if channel not in self._behind:
            return
        if listening:
            self._subdevice_listeners.add(channel)
        else:
            self._subdevice_listeners.discard(channel)
        for wrapper in list(self._behind[channel].values()):
            if listening:
                self._downlink.listen_rpc(wrapper.device.device_id, wrapper)
            else:
                self._downlink.unlisten_rpc(wrapper.device.device_id, wrapper)

    # internals

    def _subdevices_of(self, gateway: DeviceIdentity) -> SubDevices:
        if self._subdevices is None:
            raise InvalidInput("This gateway serves no sub-devices")
        return self._subdevices

    def _store_for(
        self, gateway: DeviceIdentity, payloads: dict[str, Any], check: Callable[[Any], object],
        messages: Callable[[dict[str, DeviceIdentity]], Sequence[TelemetryMessage | AttributeMessage]],
        protocol: str, kind: str, receipt: Receipt | None,
    ) -> asyncio.Future[None] | None:
        """Store one message per sub-device as one: at once when every device is known, else once
        they are found or created. Every payload is checked before anything is done."""
        subdevices = self._subdevices_of(gateway)
        known = {name: subdevices.cached(gateway, name) for name in payloads}
        if all(device is not None for device in known.values()):
            self._connect_subdevices(gateway, known.values())  # type: ignore[arg-type]
            return self._submit_all(messages(known), protocol, kind, receipt)  # type: ignore[arg-type]
        # Checked now, so that a malformed message is refused at once; stored once the devices exist.
        for payload in payloads.values():
            check(payload)
        return self._as_subdevices(
            gateway, dict.fromkeys(payloads), lambda devices: self._submit_all(messages(devices), protocol, kind, None),
            receipt, stored_by_then=True,
        )

    def _as_subdevices(
        self, gateway: DeviceIdentity, names: dict[str, str | None],
        then: Callable[[dict[str, DeviceIdentity]], asyncio.Future[None] | None], receipt: Receipt | None,
        *, stored_by_then: bool = False,
    ) -> asyncio.Future[None] | None:
        """Find (or create) the named sub-devices, connect them, then run ``then``; the receipt is
        told when that is done (and, with ``stored_by_then``, what it queued is stored)."""
        subdevices = self._subdevices_of(gateway)
        future = None
        if receipt is None:
            future = asyncio.get_running_loop().create_future()
            receipt = FutureReceipt(future)

        async def resolve() -> None:
            try:
                found = await asyncio.gather(*(subdevices.resolve(gateway, name, product)
                                               for name, product in names.items()))
                devices = dict(zip(names, found, strict=True))
                self._connect_subdevices(gateway, devices.values())
                stored = then(devices)
                if stored_by_then and stored is not None:
                    await stored
            except GatewayError as exc:
                log.info("a gateway's message for %s was refused: %s", ", ".join(names), exc.message,
                         extra={"device_id": gateway.device_id})
                receipt.failed(exc)
                return
            receipt.stored()

        self._tasks.spawn(resolve())
        if future is not None:
            # Nobody may wait for it (QoS 0): its outcome is logged above.
            future.add_done_callback(_retrieved)
        return future

    def _connect_subdevices(self, gateway: DeviceIdentity, devices: Iterable[DeviceIdentity]) -> None:
        """Reach each device through the gateway's connections here, from now on."""
        for channel in self._gateway_channels.get(gateway.device_id, ()):
            behind = self._behind[channel]
            for device in devices:
                if device.device_id not in behind:
                    wrapper = behind[device.device_id] = SubDeviceChannel(channel, device)
                    self.attach(device, wrapper)
                    if channel in self._subdevice_listeners:
                        self._downlink.listen_rpc(device.device_id, wrapper)

    async def _gateway_attributes(self, gateway: DeviceIdentity, request: gateway_requests.AttributeRequest) -> bytes:
        device = await self._subdevices_of(gateway).resolve(gateway, request.device)
        self._connect_subdevices(gateway, (device,))
        scope = AttributeScope.CLIENT if request.client else AttributeScope.SHARED
        values = await self._attributes.read_attributes(device.device_id, scope, request.keys)
        return gateway_requests.attribute_response(request, values)

    def _submit_all(
        self, messages: Sequence[TelemetryMessage | AttributeMessage], protocol: str, kind: str,
        receipt: Receipt | None,
    ) -> asyncio.Future[None] | None:
        if receipt is not None and not self._ack_stored:
            future = self._pipeline.submit_all(messages)
            receipt.stored()
        else:
            future = self._pipeline.submit_all(messages, wait_stored=self._ack_stored, receipt=receipt)
        metrics.MESSAGES.counts[(protocol, kind)] += 1
        metrics.DATAPOINTS.counts[(protocol,)] += sum(message.rows for message in messages)
        for message in messages:
            self._active(message.device_id, protocol)
        return future


def _retrieved(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
