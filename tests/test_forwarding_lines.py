"""The outbox's lines form of property reports: what the telemetry writer stores is read back as
the same entries, and the delivery's spliced JSON is the JSON notification() builds."""

from __future__ import annotations

import orjson

from fleetgate.core.forwarding_delivery import CompiledRoute, LaneDelivery
from fleetgate.core.forwarding_model import ForwardingSettings
from fleetgate.core.forwarding_json import notification
from fleetgate.core.forwarding_lines import ReportLines, entries_of
from fleetgate.core.forwarding_model import Action, OutboxItem
from fleetgate.core.telemetry_model import KeyValue, Reading, TelemetryMessage, ValueType
from fleetgate.storage.forwarding_outbox import TelemetryOutbox

MESSAGES = [
    TelemetryMessage("dev-1", (Reading(1_700_000_000_123, (KeyValue("t", ValueType.DOUBLE, 21.5),
                                                            KeyValue("on", ValueType.BOOLEAN, True))),)),
    # A JSON value, and a string with the separators and a newline in it.
    TelemetryMessage("dev-2", (Reading(1_700_000_000_200, (KeyValue("cfg", ValueType.JSON, '{"a":[1,2]}'),
                                                            KeyValue("s", ValueType.STRING, "x\x1f\n\x1ey"))),)),
    # Several readings in one message.
    TelemetryMessage("dev-1", (Reading(1, (KeyValue("a", ValueType.LONG, 1),)),
                               Reading(2, (KeyValue("b", ValueType.LONG, 2),)))),
    # A device id that is not plain text, and an IoTDA device's services.
    TelemetryMessage("[odd\x1fid", (Reading(5, (KeyValue("level", ValueType.LONG, 80),)),)),
    TelemetryMessage("iotda-1", (Reading(7, (KeyValue("level", ValueType.LONG, 79),)),)),
]
SERVICES = {"iotda-1": {"level": 'bat"tery'}, "[odd\x1fid": {"level": "battery"}}
EXPECTED = [
    ["dev-1", [[1_700_000_000_123, {"t": 21.5, "on": True}]]],
    ["dev-2", [[1_700_000_000_200, {"cfg": {"a": [1, 2]}, "s": "x\x1f\n\x1ey"}]]],
    ["dev-1", [[1, {"a": 1}], [2, {"b": 2}]]],
    ["[odd\x1fid", [[5, {"level": 80}]], ["battery"]],
    ["iotda-1", [[7, {"level": 79}]], ['bat"tery']],
]


def stored() -> ReportLines:
    outbox = TelemetryOutbox()
    outbox.follow({1: ("a1",)})
    outbox.follow_services(SERVICES.get)
    # One lane for all, as if every device hashed alike: the entries of one row.
    outbox._lane = lambda device_id: 0  # type: ignore[method-assign]
    ((_, _, _, _, text, count, _),) = outbox.records(MESSAGES, {m.device_id: 1 for m in MESSAGES})
    entries = entries_of(text)
    assert isinstance(entries, ReportLines) and count == len(entries) == len(MESSAGES)
    return entries


def test_the_lines_read_back_as_the_entries() -> None:
    entries = stored()
    assert list(entries) == EXPECTED
    assert entries[1:3] == EXPECTED[1:3] and entries[3] == EXPECTED[3]
    assert entries.devices(2) == {"dev-1", "[odd\x1fid", "iotda-1"}
    assert entries_of('[["d", [[1, {"a": 1}]]]]') == [["d", [[1, {"a": 1}]]]]


def test_the_spliced_json_is_the_notification() -> None:
    item = OutboxItem(9, "a1", 0, "device.property", "report", stored(), 0, delivered=1)
    headers = {d: {"device_id": d, "product_id": "p", "node_id": "n", "gateway_id": d}
               for d in ("dev-1", "dev-2", "[odd\x1fid", "iotda-1")}
    route = CompiledRoute(Action("a1", "r1", "p1", "HTTP_FORWARDING", {}), None, None, None)  # type: ignore[arg-type]
    out: list = []
    LaneDelivery(None, ForwardingSettings(), None).render_lines(route, 0, item, headers, out)  # type: ignore[arg-type]
    assert [(position, index) for position, index, _ in out] == [(0, 1), (0, 2), (0, 3), (0, 4)]
    for (_, index, delivery), entry in zip(out, EXPECTED[1:]):
        assert orjson.loads(delivery.payload) == notification(item, entry, headers[entry[0]])
        assert delivery.message_id == f"a1-9-{index}" and delivery.device_id == entry[0]
    bodies = [orjson.loads(d.payload)["notify_data"]["body"]["services"] for _, _, d in out]
    assert [[s["service_id"] for s in b] for b in bodies] == [["telemetry"], ["telemetry"] * 2, ["battery"],
                                                              ['bat"tery']]
