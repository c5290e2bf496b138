"""Helpers of the HTTP RPC and long-poll tests: a provisioned device, a long poll, an operator's
call, and an event set when a device's long poll is attached to the downlink."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import pytest

from fleetgate.app import Gateway
from fleetgate.core.device_channel import DeviceChannel
from fleetgate.core.model import DeviceIdentity
from tests.support import Tenant


def watch_polls(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> defaultdict[str, asyncio.Event]:
    """By device id: set once one of the device's HTTP long polls is attached to the downlink."""
    events: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
    service = gateway._device_service
    attach: Callable[..., None] = service.attach

    def watched(device: DeviceIdentity, channel: DeviceChannel, protocol: str = "mqtt") -> None:
        attach(device, channel, protocol)
        if protocol == "http":
            events[device.device_id].set()

    monkeypatch.setattr(service, "attach", watched)
    return events


async def poll(http: aiohttp.ClientSession, path: str, **params: str) -> tuple[int, bytes]:
    async with http.get(path, params=params) as resp:
        return resp.status, await resp.read()


async def command(management: aiohttp.ClientSession, tenant: Tenant, device_id: str,
                  body: dict[str, Any]) -> tuple[int, Any]:
    """An operator's server-side call through the management API: its status and JSON answer."""
    async with management.post(f"/v5/iot/{tenant.project_id}/devices/{device_id}/commands", json=body,
                               headers={"X-Auth-Token": tenant.token}) as resp:
        return resp.status, orjson.loads(await resp.read())
