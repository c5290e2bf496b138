"""/openapi.json: a valid OpenAPI 3.1 document describing exactly the routes the application serves."""

from __future__ import annotations

import re

import orjson
import pytest

from fleetgate.app import Gateway
from fleetgate.protocols.http.device_api import ROUTES as DEVICE_ROUTES

IGNORED_METHODS = {"HEAD", "OPTIONS"}


@pytest.fixture
async def document(management) -> dict:
    async with management.get("/openapi.json") as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        return orjson.loads(await resp.read())


def routed(gateway: Gateway) -> set[tuple[str, str]]:
    """The management application's router, plus the device API's own routes."""
    management = {
        (route.method, resource.canonical)
        for resource in gateway.http_app.router.resources()
        for route in resource
        if route.method not in IGNORED_METHODS
    }
    # A typed placeholder ({request_id:int}) is documented as OpenAPI spells it: {request_id}.
    return management | {(method, re.sub(r"\{(\w+):\w+\}", r"{\1}", path)) for method, path, _ in DEVICE_ROUTES.rows}


def documented(document: dict) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item}


async def test_every_route_is_documented(gateway: Gateway, document: dict) -> None:
    missing = routed(gateway) - documented(document)
    assert not missing, f"routes missing from /openapi.json: {sorted(missing)}"


async def test_nothing_documented_is_unrouted(gateway: Gateway, document: dict) -> None:
    unrouted = documented(document) - routed(gateway)
    assert not unrouted, f"documented but not routed: {sorted(unrouted)}"


async def test_the_document_is_valid_openapi_3_1(document: dict) -> None:
    from openapi_spec_validator import validate

    assert document["openapi"].startswith("3.1")
    validate(document)


async def test_management_routes_need_the_token_and_answer_iotda_errors(document: dict) -> None:
    assert document["components"]["securitySchemes"]["XAuthToken"] == \
        {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["error_code", "error_msg"]
    for path, item in document["paths"].items():
        if not path.startswith("/v5/iot/{project_id}/"):
            continue
        for method, operation in item.items():
            assert operation["security"] == [{"XAuthToken": []}], (method, path)
            for status in ("400", "401", "403", "503"):
                ref = operation["responses"][status]["$ref"].rsplit("/", 1)[1]
                schema = document["components"]["responses"][ref]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)


async def test_path_parameters_are_declared(document: dict) -> None:
    parameters = document["components"]["parameters"]
    for path, item in document["paths"].items():
        names = set(re.findall(r"\{(\w+)\}", path))
        for method, operation in item.items():
            declared = {parameters[p["$ref"].rsplit("/", 1)[1]]["name"] for p in operation["parameters"]
                        if parameters[p["$ref"].rsplit("/", 1)[1]]["in"] == "path"}
            assert declared == names, (method, path)
