"""A small client for the management API in tests: calls scoped to a tenant, and IoTDA error checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from tests.support import Tenant

_OWN = object()


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any


@dataclass(frozen=True)
class Management:
    http: aiohttp.ClientSession
    tenant: Tenant

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        params: dict[str, Any] | None = None,
        token: Any = _OWN,
        project_id: str | None = None,
    ) -> Reply:
        """``path`` is relative to /v5/iot/{project_id}; ``token=None`` sends no X-Auth-Token."""
        token = self.tenant.token if token is _OWN else token
        headers = {"X-Auth-Token": token} if token is not None else {}
        url = f"/v5/iot/{project_id or self.tenant.project_id}{path}"
        body = orjson.dumps(json) if json is not None else data
        async with self.http.request(method, url, data=body, params=params, headers=headers) as resp:
            raw = await resp.read()
            return Reply(resp.status, orjson.loads(raw) if raw else None)

    async def create_device(self, name: str, product_id: str | None = None, **fields: Any) -> dict[str, Any]:
        reply = await self.call("POST", "/devices", json={"device_name": name,
                                                          "product_id": product_id or self.tenant.product_id,
                                                          **fields})
        assert reply.status == 201, reply
        return reply.body


def assert_error(reply: Reply, status: int, code: str, message: str | None = None) -> None:
    """The exact IoTDA error shape: these two keys and nothing else."""
    assert reply.status == status, reply
    assert set(reply.body) == {"error_code", "error_msg"}, reply.body
    assert reply.body["error_code"] == code, reply.body
    assert isinstance(reply.body["error_msg"], str) and reply.body["error_msg"]
    if message is not None:
        assert reply.body["error_msg"] == message, reply.body
