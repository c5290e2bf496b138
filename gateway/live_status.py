"""Device status events for the live feed (fleetgate.core.live), as ThingsBoard shows status: the
server attributes ``active``, ``lastConnectTime`` and ``lastDisconnectTime``.

An event is sent when a device's first connection opens in a gateway process (an MQTT session, a
CoAP observation, a sub-device behind its connected gateway) and when its last one there closes:
the moments fleetgate.core.presence notes, sent at once rather than at its next write. A device
online only by its requests (HTTP, CoAP) has no such moments; its status is read, not sent
(GET .../devices/{id}, the iot.devices view).
"""

from __future__ import annotations

from fleetgate.core.clock import SYSTEM_CLOCK, Clock
from fleetgate.core.live import Feed, LiveHub
from fleetgate.core.ports import PresenceStore
from fleetgate.core.presence import REQUEST_PROTOCOLS, Presence, PresenceSettings


class ReportingPresence(Presence):
    """Presence that also tells the live hub when a device connects or disconnects here."""

    hub: LiveHub | None = None

    def __init__(
        self, store: PresenceStore, settings: PresenceSettings, *, clock: Clock = SYSTEM_CLOCK,
        process_id: str | None = None,
    ) -> None:
        super().__init__(store, settings, clock=clock, process_id=process_id)
        self._open_here: dict[str, int] = {}  # device -> channels open in this process, any protocol
        self._open_by: dict[tuple[str, str], int] = {}

    def connected(self, device_id: str, protocol: str) -> None:
        super().connected(device_id, protocol)
        key = (device_id, protocol)
        self._open_by[key] = self._open_by.get(key, 0) + 1
        total = self._open_here.get(device_id, 0)
        self._open_here[device_id] = total + 1
        if not total:
            self._report(device_id, True)

    def disconnected(self, device_id: str, protocol: str) -> None:
        super().disconnected(device_id, protocol)
        key = (device_id, protocol)
        count = self._open_by.get(key, 0)
        if not count:
            return
        if count > 1:
            self._open_by[key] = count - 1
        else:
            del self._open_by[key]
        total = self._open_here[device_id] - 1
        if total:
            self._open_here[device_id] = total
        else:
            del self._open_here[device_id]
            # A closed CoAP observation leaves the device online for the inactivity timeout.
            if protocol not in REQUEST_PROTOCOLS:
                self._report(device_id, False)

    def _report(self, device_id: str, active: bool) -> None:
        hub = self.hub
        if hub is None or not hub.watched(device_id):
            return
        now = self._clock.now_ms()
        since = "lastConnectTime" if active else "lastDisconnectTime"
        hub.publish([(device_id, Feed.SERVER_ATTRIBUTES.value, [
            ("active", now, "true" if active else "false"), (since, now, str(now))])], hub.now())
