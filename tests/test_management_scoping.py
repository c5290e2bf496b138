"""Every management route: X-Auth-Token required, and one project's token opens no other project."""

from __future__ import annotations

import re

import pytest

from fleetgate.protocols.http.iotda import PREFIX
from fleetgate.protocols.http.openapi import MANAGEMENT, OPERATIONS_DESCRIBED
from tests.management_client import Management, assert_error
from tests.support import Tenant, new_tenant

ROUTES = [(op.method, op.path.removeprefix(PREFIX)) for op in OPERATIONS_DESCRIBED if op.tag == MANAGEMENT]


def concrete(path: str) -> str:
    return re.sub(r"\{\w+\}", "0" * 24, path)


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_without_token(management, tenant: Tenant, method: str, path: str) -> None:
    reply = await Management(management, tenant).call(method, concrete(path), token=None, json={})
    assert_error(reply, 401, "IOTDA.000002", "The X-Auth-Token header is missing")


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_with_unknown_token(management, tenant: Tenant, method: str, path: str) -> None:
    reply = await Management(management, tenant).call(method, concrete(path), token="not-a-token", json={})
    assert_error(reply, 401, "IOTDA.000002", "The token is invalid")


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_another_projects_path(management, tenant: Tenant, gateway, method: str, path: str) -> None:
    other = await new_tenant(gateway.services)
    reply = await Management(management, tenant).call(method, concrete(path), project_id=other.project_id, json={})
    assert_error(reply, 403, "IOTDA.000004", "The token does not grant access to this project")
