"""protocols.routing and the three front-ends' route tables: every wire address ThingsBoard's
device API defines reaches the operation it names, and nothing else does."""

from __future__ import annotations

import inspect

import pytest

from fleetgate.core.device_service import DeviceService
from fleetgate.core.operations import Operation, Reply
from fleetgate.protocols.coap.routes import ROUTES as COAP_ROUTES
from fleetgate.protocols.coap.routes import Stream
from fleetgate.protocols.http.device_api import ROUTES as HTTP_ROUTES
from fleetgate.protocols.http.device_api import Auth
from fleetgate.protocols.http.long_polls import Feed
from fleetgate.protocols.mqtt.routes import ROUTES as MQTT_ROUTES
from fleetgate.protocols.routing import RouteTable, render


def test_exact_addresses_win_over_patterns() -> None:
    table = RouteTable([("POST", "/api/v1/{token}/telemetry", "by token"), ("POST", "/api/v1/me/telemetry", "me")])
    me = table.match("/api/v1/me/telemetry")
    assert me is not None and me.targets == {"POST": "me"} and not me.params
    other = table.match("/api/v1/abc/telemetry")
    assert other is not None and other.targets == {"POST": "by token"} and other.params == {"token": "abc"}


@pytest.mark.parametrize(("segment", "expected"), [
    ("0", 0), ("7", 7), ("2147483647", 2**31 - 1), ("2147483648", None), ("12345678901", None), ("-1", None),
    ("1a", None), ("", None), ("\u0661", None),  # an Arabic-Indic digit: isdigit(), but not Integer.parseInt's
])
def test_an_int_placeholder_takes_what_integer_parse_int_takes(segment: str, expected: int | None) -> None:
    table = RouteTable([("", "rpc/{request_id:int}", "reply")])
    match = table.match(f"rpc/{segment}")
    assert (match.params["request_id"] if match else None) == expected


def test_segments_are_whole() -> None:
    table = RouteTable([("", "a/{x}/c", 1)])
    assert table.match("a/b/c") is not None
    assert table.match("a/b/c/d") is None and table.match("a/b") is None and table.match("a/b/x") is None
    assert table.match("a//c").params == {"x": ""}  # an empty token is refused as unknown, not routed elsewhere


def test_a_table_refuses_two_targets_for_one_method_and_address() -> None:
    with pytest.raises(ValueError, match="two routes"):
        RouteTable([("GET", "/a", 1), ("GET", "/a", 2)])
    with pytest.raises(ValueError, match="placeholder type"):
        RouteTable([("GET", "/a/{id:uuid}", 1)])


def test_render_fills_a_reply_address() -> None:
    assert render("v1/devices/me/rpc/response/{request_id}", {"request_id": 42}) == "v1/devices/me/rpc/response/42"


def _mqtt(topic: str) -> tuple[Operation, str | None, dict[str, object]] | None:
    match = MQTT_ROUTES.match(topic)
    if match is None:
        return None
    route = match.targets[""]
    return route.operation, route.reply and render(route.reply, match.params), dict(match.params)


def test_the_mqtt_table_is_thingsboards_topics() -> None:
    for topic in ("v1/devices/me/telemetry", "v2/t", "v2/t/j"):
        assert _mqtt(topic) == (Operation.TELEMETRY, None, {})
    for topic in ("v1/devices/me/attributes", "v2/a", "v2/a/j"):
        assert _mqtt(topic) == (Operation.ATTRIBUTES, None, {})
    assert _mqtt("v1/devices/me/attributes/request/5") == (
        Operation.ATTRIBUTE_REQUEST, "v1/devices/me/attributes/response/5", {"request_id": 5})
    assert _mqtt("v2/a/req/6") == (Operation.ATTRIBUTE_REQUEST, "v2/a/res/6", {"request_id": 6})
    assert _mqtt("v1/devices/me/rpc/request/7") == (
        Operation.CLIENT_RPC, "v1/devices/me/rpc/response/7", {"request_id": 7})
    assert _mqtt("v2/r/req/8") == (Operation.CLIENT_RPC, "v2/r/res/8", {"request_id": 8})
    assert _mqtt("v1/devices/me/rpc/response/9") == (Operation.RPC_REPLY, None, {"request_id": 9})
    assert _mqtt("v2/r/res/10") == (Operation.RPC_REPLY, None, {"request_id": 10})
    assert _mqtt("/provision/request") == (Operation.PROVISION, "/provision/response", {})
    assert _mqtt("v1/gateway/connect") == (Operation.GATEWAY_CONNECT, None, {})
    assert _mqtt("v1/gateway/disconnect") == (Operation.GATEWAY_DISCONNECT, None, {})
    assert _mqtt("v1/gateway/telemetry") == (Operation.GATEWAY_TELEMETRY, None, {})
    assert _mqtt("v1/gateway/attributes") == (Operation.GATEWAY_ATTRIBUTES, None, {})
    assert _mqtt("v1/gateway/attributes/request") == (
        Operation.GATEWAY_ATTRIBUTE_REQUEST, "v1/gateway/attributes/response", {})
    assert _mqtt("v1/gateway/rpc") == (Operation.GATEWAY_RPC_REPLY, None, {})
    assert _mqtt("v1/devices/me/claim") == (Operation.CLAIM, None, {})
    assert _mqtt("v1/gateway/claim") == (Operation.GATEWAY_CLAIM, None, {})
    for unknown in ("v1/devices/me/rpc/request/x", "v1/devices/me/telemetry/", "v1/devices/other/telemetry",
                    "v1/devices/me/attributes/response/1", "v2/r/req/", "v1/gateway/claim/1", "v1/gateway/rpc/1"):
        assert _mqtt(unknown) is None, unknown


def test_the_http_table_is_thingsboards_paths() -> None:
    def route(method: str, path: str) -> tuple[Operation, Auth, bool] | None:
        match = HTTP_ROUTES.match(path)
        target = match.targets.get(method) if match else None
        return (target.operation, target.auth, target.query) if target else None

    assert route("POST", "/api/v1/provision") == (Operation.PROVISION, Auth.NONE, False)
    assert route("POST", "/api/v1/T/telemetry") == (Operation.TELEMETRY, Auth.TOKEN, False)
    assert route("POST", "/api/v1/T/attributes") == (Operation.ATTRIBUTES, Auth.TOKEN, False)
    assert route("GET", "/api/v1/T/attributes") == (Operation.ATTRIBUTE_REQUEST, Auth.TOKEN, True)
    assert route("POST", "/api/v1/me/telemetry") == (Operation.TELEMETRY, Auth.CERTIFICATE, False)
    assert route("GET", "/api/v1/me/attributes") == (Operation.ATTRIBUTE_REQUEST, Auth.CERTIFICATE, True)
    assert route("POST", "/api/v1/T/claim") == (Operation.CLAIM, Auth.TOKEN, False)
    assert route("GET", "/api/v1/T/telemetry") is None and HTTP_ROUTES.match("/api/v1/T/telemetry") is not None
    # HTTP RPC: long polls (no operation: protocols.http.long_polls), client-side calls and replies.
    assert route("GET", "/api/v1/T/rpc") == route("GET", "/api/v1/T/attributes/updates") == (None, Auth.TOKEN, True)
    for path, feed in (("/api/v1/T/rpc", Feed.RPC), ("/api/v1/T/attributes/updates", Feed.ATTRIBUTES)):
        assert HTTP_ROUTES.match(path).targets["GET"].poll is feed  # type: ignore[union-attr]
    assert route("POST", "/api/v1/T/rpc") == (Operation.CLIENT_RPC, Auth.TOKEN, False)
    assert route("POST", "/api/v1/T/rpc/3") == (Operation.RPC_REPLY, Auth.TOKEN, False)
    assert HTTP_ROUTES.match("/api/v1/T/rpc/x") is None and route("POST", "/api/v1/T/attributes/updates") is None
    assert HTTP_ROUTES.match("/api/v1/T/nothing") is None


def test_the_coap_table_is_thingsboards_resources() -> None:
    def route(method: str, path: str) -> tuple[Operation | None, Stream | None, str | None] | None:
        match = COAP_ROUTES.match(path)
        target = match.targets.get(method) if match else None
        return (target.operation, target.observe, target.refusal) if target else None

    assert route("POST", "api/v1/provision") == (Operation.PROVISION, None, None)
    assert route("POST", "api/v1/T/telemetry") == (Operation.TELEMETRY, None, None)
    assert route("GET", "api/v1/T/telemetry") == (None, None, "Can't fetch/subscribe to timeseries updates")
    assert route("GET", "api/v1/T/attributes") == (Operation.ATTRIBUTE_REQUEST, Stream.ATTRIBUTES, None)
    assert route("POST", "api/v1/T/rpc") == (Operation.CLIENT_RPC, None, None)
    assert route("GET", "api/v1/T/rpc") == (None, Stream.RPC, None)
    assert route("POST", "api/v1/T/rpc/3") == (Operation.RPC_REPLY, None, None)
    assert route("POST", "api/v1/T/claim") == (Operation.CLAIM, None, None)
    assert COAP_ROUTES.match("api/v1/T/rpc/x") is None


def test_every_operation_is_a_device_service_method_of_its_reply_shape() -> None:
    for operation in Operation:
        method = getattr(DeviceService, operation.method)
        parameters = list(inspect.signature(method).parameters)
        if operation is Operation.PROVISION:
            assert parameters == ["self", "body", "source", "protocol"]
        elif operation.reply is Reply.STORED:
            assert parameters[2:] == ["body", "params", "protocol", "receipt"], operation
        else:
            assert parameters[2:] == ["body", "params"], operation
        if operation is not Operation.PROVISION:
            assert parameters[1] == ("gateway" if operation.method.startswith("gateway_") else "device")
            assert not inspect.iscoroutinefunction(method), f"{operation} must check its request before awaiting"


def test_every_route_names_an_operation_each_front_end_can_perform() -> None:
    for table in (MQTT_ROUTES, HTTP_ROUTES, COAP_ROUTES):
        for _, _, target in table.rows:
            assert target.operation is None or isinstance(target.operation, Operation)
