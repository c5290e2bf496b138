"""What the persistent RPC tests share: a device never connected, an operator's persistent call, a
call as the management API shows it."""

from __future__ import annotations

from typing import Any

from tests.management_client import Management
from tests.support import Tenant, provision

RPC_REQUESTS = "v1/devices/me/rpc/request/+"


async def offline_device(http, api: Management, tenant: Tenant) -> tuple[str, str]:
    """A provisioned device, never connected: its id and access token."""
    name, result = await provision(http, tenant)
    listed = await api.call("GET", "/devices", params={"device_name": name})
    return listed.body["devices"][0]["device_id"], result["credentialsValue"]


async def persistent_call(api: Management, device_id: str, **fields: Any) -> dict[str, Any]:
    reply = await api.call("POST", f"/devices/{device_id}/commands",
                           json={"method": "setGpio", "params": {"pin": 4}, "persistent": True, **fields})
    assert reply.status == 202, reply
    return reply.body


async def shown(api: Management, device_id: str, command_id: str) -> dict[str, Any]:
    reply = await api.call("GET", f"/devices/{device_id}/commands/{command_id}")
    assert reply.status == 200, reply
    return reply.body
