"""What an IoTDA device sends besides its properties: messages, events, answers to the gateway's
requests, and its shadow request.

Messages and events go to the device message log, each acknowledged once stored. Every event
is accepted, whatever its type: the Python SDK sends ``$log``/``log_report`` after each
connect, and closing a connection over an event type would make it reconnect for ever. A
``$time_sync``/``time_sync_request`` is answered on ``events/down``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

import orjson

from fleetgate.core import metrics
from fleetgate.core.clock import SYSTEM_CLOCK, Clock
from fleetgate.core.codec import loads
from fleetgate.core.errors import GatewayError, InvalidInput, MalformedPayload
from fleetgate.core.ids import new_id
from fleetgate.core.ingest import Receipt
from fleetgate.core.iotda_codec import format_time, object_of
from fleetgate.core.iotda_ports import DeviceMessage, Direction, IotdaStore, MessageStatus
from fleetgate.core.model import DeviceIdentity
from fleetgate.core.tasks import OwnedTasks
from fleetgate.core.telemetry_model import LatestTelemetry

log = logging.getLogger(__name__)

# The event services IoTDA defines; others are the device's own, accepted and counted apart.
KNOWN_EVENT_SERVICES = frozenset({
    "$log", "$time_sync", "$ota", "$sub_device_manager", "$file_manager", "$device_info", "$remote_config",
    "$tunnel_manager", "$sdk_info", "$device_rule",
})
# Properties whose service is remembered, per device in this process: a report whose
# (property, service) pairs are all known writes nothing more than its telemetry.
_MAX_REMEMBERED_DEVICES = 100_000


class LatestValues(Protocol):
    async def latest(self, device_id: str, keys: Sequence[str] | None) -> list[LatestTelemetry]: ...


class Pusher(Protocol):
    """Sends an IoTDA message to the device's connections in this process (fleetgate.core.downlink)."""

    def push_iotda(self, device_id: str, kind: str, body: dict[str, Any]) -> None: ...


class IotdaUplink:
    def __init__(
        self, store: IotdaStore, latest: LatestValues, pusher: Pusher, *, clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._store = store
        self._latest = latest
        self._pusher = pusher
        self._clock = clock
        self._services: dict[str, dict[str, str]] = {}
        self._last: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {}
        self._tasks = OwnedTasks()

    # properties

    def remember(self, device_id: str, services: tuple[tuple[str, tuple[str, ...]], ...]) -> None:
        """Which service each reported property came under (``(service_id, property names)``):
        written only when it changes. A device mostly reports the same services as last time,
        which one comparison of tuples tells."""
        if self._last.get(device_id) == services:
            return
        if len(self._last) >= _MAX_REMEMBERED_DEVICES:
            self._last.clear()
            self._services.clear()
        self._last[device_id] = services
        known = self._services.setdefault(device_id, {})
        fresh = [(key, service) for service, keys in services for key in keys if known.get(key) != service]
        if not fresh:
            return
        known.update(fresh)
        self._tasks.spawn(self._remember(device_id, fresh))

    def services_of(self, device_id: str) -> dict[str, str] | None:
        """The service each of the device's properties was last reported under, as this process
        saw it (None: the device reported none here, as a ThingsBoard device never does)."""
        return self._services.get(device_id)

    async def _remember(self, device_id: str, pairs: list[tuple[str, str]]) -> None:
        try:
            await self._store.remember_services(device_id, pairs)
        except GatewayError as exc:
            # Written again at the next report naming them.
            self._services.pop(device_id, None)
            self._last.pop(device_id, None)
            log.warning("the services of %s's properties were not stored: %s", device_id, exc.message)

    # messages and events

    def message_up(self, device: DeviceIdentity, body: bytes, receipt: Receipt | None) -> None:
        """``{"object_device_id", "id", "name", "content"}``; any other payload is kept whole as
        the content (IoTDA lets a device send messages in its own format)."""
        try:
            root = orjson.loads(body)
        except orjson.JSONDecodeError:
            root = None
        if isinstance(root, dict) and "content" in root:
            name, content = _text(root.get("name")), root["content"]
            message_id = _text(root.get("id")) or new_id()
        else:
            name, message_id = None, new_id()
            content = root if root is not None else body.decode("utf-8", "replace")
        message = DeviceMessage(message_id, device.device_id, Direction.UP, name, content, MessageStatus.RECEIVED,
                                self._clock.now_ms())
        self._record(message, receipt)

    def event_up(self, device: DeviceIdentity, body: bytes, receipt: Receipt | None, protocol: str) -> None:
        """``{"object_device_id", "services": [{"service_id", "event_type", "event_time", "paras"}]}``."""
        services = object_of(body, "An event").get("services")
        if not isinstance(services, list) or not all(isinstance(s, dict) for s in services):
            raise MalformedPayload('An event is {"services": [{"service_id", "event_type", "paras"}]}')
        now = self._clock.now_ms()
        for index, service in enumerate(services):
            service_id, event_type = _text(service.get("service_id")), _text(service.get("event_type"))
            metrics.MESSAGES.counts[(protocol, "iotda_event")] += 1
            if service_id not in KNOWN_EVENT_SERVICES:
                metrics.MESSAGES.counts[(protocol, "iotda_event_unknown")] += 1
            if service_id == "$time_sync" and event_type == "time_sync_request":
                self._time_sync(device, service.get("paras"), now)
            event = DeviceMessage(
                _text(service.get("event_id")) or new_id(), device.device_id, Direction.EVENT, event_type,
                service.get("paras"), MessageStatus.RECEIVED, now, kind=f"{service_id}/{event_type}")
            self._record(event, receipt if index == len(services) - 1 else None)
        if not services and receipt is not None:
            receipt.stored()

    def _time_sync(self, device: DeviceIdentity, paras: Any, now: int) -> None:
        sent = paras.get("device_send_time") if isinstance(paras, dict) else None
        self._pusher.push_iotda(device.device_id, "events_down", {
            "object_device_id": device.device_id,
            "services": [{"service_id": "$time_sync", "event_type": "time_sync_response",
                          "event_time": format_time(now),
                          "paras": {"device_send_time": sent, "server_recv_time": now,
                                    "server_send_time": self._clock.now_ms()}}],
        })

    def _record(self, message: DeviceMessage, receipt: Receipt | None) -> None:
        self._tasks.spawn(self._store_message(message, receipt))

    async def _store_message(self, message: DeviceMessage, receipt: Receipt | None) -> None:
        try:
            await self._store.add_message(message)
        except GatewayError as exc:
            log.warning("a message of %s was not stored: %s", message.device_id, exc.message)
            if receipt is not None:
                receipt.failed(exc)
            return
        if receipt is not None:
            receipt.stored()

    # the shadow

    async def shadow(self, device_id: str, service_id: str | None = None) -> list[dict[str, Any]]:
        """IoTDA's shadow: per service, the desired properties and the latest reported ones."""
        services = await self._store.property_services(device_id)
        reported: dict[str, dict[str, Any]] = {}
        times: dict[str, int] = {}
        latest = await self._latest.latest(device_id, list(services)) if services else []
        for value in latest:
            service = services[value.key]
            reported.setdefault(service, {})[value.key] = value.value
            times[service] = max(times.get(service, 0), value.ts)
        desired = {d.service_id: d for d in await self._store.desired(device_id)}
        shown = []
        for service in sorted(set(reported) | set(desired)):
            if service_id is not None and service != service_id:
                continue
            wanted = desired.get(service)
            shown.append({
                "service_id": service,
                "desired": {"properties": wanted.properties if wanted else None,
                            "event_time": format_time(wanted.event_time) if wanted else None},
                "reported": {"properties": reported.get(service),
                             "event_time": format_time(times[service]) if service in times else None},
                "version": wanted.version if wanted else 0,
            })
        return shown

    async def shadow_answer(self, device: DeviceIdentity, service_id: str | None) -> bytes:
        return orjson.dumps({"object_device_id": device.device_id,
                             "shadow": await self.shadow(device.device_id, service_id)})

    async def close(self) -> None:
        await self._tasks.finish(1.0)


def shadow_request(body: bytes) -> str | None:
    """The service a ``shadow/get`` asks for: ``{"service_id": ...}``, or ``{}`` for all of them."""
    if not body:
        return None
    root = loads(body)
    if not isinstance(root, dict):
        raise MalformedPayload("A shadow request is a JSON object")
    service_id = root.get("service_id")
    if service_id is not None and not isinstance(service_id, str):
        raise InvalidInput("service_id must be a string")
    return service_id or None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
