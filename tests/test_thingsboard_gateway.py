"""ThingsBoard IoT Gateway, the real ``thingsboard-gateway`` package from PyPI, bridging a device
into the gateway through ThingsBoard's MQTT gateway API.

The bridge runs unchanged from its own virtual environment (tests/tb_gateway_venv.py), configured
by its own files in a temporary directory: our MQTT listener as its ThingsBoard, a gateway device's
access token, in-memory storage, and one of its built-in connectors, the MQTT connector, subscribed
to a local mosquitto. The device's reading is published to mosquitto as a retained message before
the bridge starts, so the connector gets it on subscribing, whenever that is: nothing is timed.

What the bridge would reach beyond loopback is off: remote configuration, remote shell, statistics,
gRPC, device inactivity checks are off in its configuration; its update check (an HTTPS request it
makes at every start, with no setting to turn it off) goes to a closed local port as its proxy and
fails at once. The bridge is run by a small script that imports it and watches its MQTT client
without changing it: each PUBACK our listener sends it is printed as a JSON line (topic, payload,
reason code), which is how the test knows, without polling, that a message was stored. The script
is killed by its PID at the end and ends itself after SCRIPT_LIMIT seconds whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import textwrap
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest

from fleetgate.simulator.mosquitto import mosquitto
from tests import tb_gateway_venv
from tests.paho_async import AsyncPaho
from tests.sdk_script import ScriptClient, running_script
from tests.support import Tenant, provision
from tests.telemetry_support import stored

SCRIPT_LIMIT = 120  # seconds
BRIDGED = 60  # seconds from the bridge's start to its telemetry stored, at most

SCRIPT = textwrap.dedent(
    """
    import faulthandler, json, os, sys, threading

    faulthandler.dump_traceback_later(float(sys.argv[1]), exit=True)
    # stdout carries this script's events only: whatever the bridge prints goes to stderr.
    events = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    lock = threading.Lock()


    def emit(event, **fields):
        with lock:
            events.write(json.dumps({"event": event, **fields}) + "\\n")
            events.flush()


    import paho.mqtt.client as paho

    PORT = int(os.environ["UNDER_TEST_MQTT_PORT"])
    original = paho.Client._do_on_publish


    def observed(self, mid, reason_code, properties):
        message = self._out_messages.get(mid)
        if message is not None and self._port == PORT:
            emit("puback", topic=message.topic, payload=message.payload.decode(errors="replace"),
                 reason=getattr(reason_code, "value", reason_code))
        return original(self, mid, reason_code, properties)


    paho.Client._do_on_publish = observed

    from thingsboard_gateway.tb_gateway import daemon

    daemon()
    """
)


@pytest.fixture(scope="session")
async def tbgw_python() -> Path:
    """The bridge's interpreter, its environment built once (and cached across runs)."""
    return await tb_gateway_venv.ensure()


def bridge_config(directory: Path, *, port: int, token: str, broker_port: int) -> Path:
    """The bridge's configuration directory: tb_gateway.json, logs.json and its MQTT connector's file."""
    directory.mkdir()
    gateway = {
        "thingsboard": {
            "host": "127.0.0.1", "port": port, "qos": 1,
            "security": {"type": "accessToken", "accessToken": token},
            "remoteShell": False, "remoteConfiguration": False, "latencyDebugMode": False,
            "statistics": {"enable": False, "enableCustom": False},
            "deviceFiltering": {"enable": False},
            "checkingDeviceActivity": {"checkDeviceInactivity": False},
            "handleDeviceRenaming": False,
            "reportStrategy": {"type": "ON_RECEIVED"},
            "minPackSendDelayMS": 50,
        },
        "storage": {"type": "memory", "read_records_count": 100, "max_records_count": 10_000},
        "grpc": {"enabled": False},
        "connectors": [{"type": "mqtt", "name": "Local broker", "configuration": "mqtt.json"}],
    }
    connector = {
        "broker": {
            "host": "127.0.0.1", "port": broker_port, "clientId": "tbgw-" + secrets.token_hex(4), "version": 5,
            "maxMessageNumberPerWorker": 10, "maxNumberOfWorkers": 4, "cleanSession": True, "cleanStart": True,
            "sessionExpiryInterval": 0, "security": {"type": "anonymous"},
        },
        "mapping": [{
            "topicFilter": "sensors/+",
            "subscriptionQos": 1,
            "converter": {
                "type": "json",
                "deviceInfo": {
                    "deviceNameExpressionSource": "message", "deviceNameExpression": "${serialNumber}",
                    "deviceProfileExpressionSource": "constant", "deviceProfileExpression": "thermometer",
                },
                "sendDataOnlyOnChange": False,
                "timeout": 60000,
                "attributes": [{"type": "string", "key": "model", "value": "${model}"}],
                "timeseries": [
                    {"type": "double", "key": "temperature", "value": "${temp}"},
                    {"type": "integer", "key": "humidity", "value": "${hum}"},
                ],
            },
        }],
    }
    handler = {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}
    logs = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(levelname)s %(name)s %(message)s"}},
        "handlers": {"stderr": handler},
        "loggers": {
            name: {"handlers": ["stderr"], "level": "INFO", "propagate": False}
            for name in ("service", "connector", "converter", "tb_connection", "storage", "database", "extension")
        },
        "root": {"level": "WARNING", "handlers": ["stderr"]},
    }
    for name, content in (("tb_gateway.json", gateway), ("mqtt.json", connector), ("logs.json", logs)):
        (directory / name).write_text(json.dumps(content, indent=2))
    return directory


@pytest.fixture
def bridge_script(tmp_path: Path) -> Path:
    script = tmp_path / "thingsboard_gateway_watched.py"
    script.write_text(SCRIPT)
    return script


async def acknowledged(bridge: ScriptClient, device: str, keys: set[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The PUBACK events of the bridge's connect, telemetry and client attributes (the
    device's own, not the connector's name the bridge adds) for ``device``, in whatever
    order they come, by topic; and the telemetry values they carried until every one of
    ``keys`` was acknowledged (the bridge may send a reading's keys in separate messages)."""
    wanted = {
        "v1/gateway/connect": lambda payload: payload.get("device") == device,
        "v1/gateway/telemetry": lambda payload: device in payload,
        "v1/gateway/attributes": lambda payload: "model" in payload.get(device, {}),
    }
    found: dict[str, dict[str, Any]] = {}
    values: dict[str, Any] = {}
    while len(found) < len(wanted) or not keys <= values.keys():
        event = await bridge.event("puback", timeout=BRIDGED)
        topic = event["topic"]
        matches = wanted.get(topic)
        payload = orjson.loads(event["payload"])
        if matches is None or not matches(payload):
            continue
        found.setdefault(topic, event)
        if topic == "v1/gateway/telemetry":
            for reading in payload[device]:
                values.update(reading.get("values", reading))
    return found, values


async def test_thingsboard_gateway_bridges_a_device_through_the_gateway_api(
    gateway, http, tenant: Tenant, mqtt_port, tbgw_python, bridge_script, tmp_path
) -> None:
    gateway_name, result = await provision(http, tenant, gateway=True)
    assert result["status"] == "SUCCESS", result
    sensor = "sensor-" + secrets.token_hex(3)
    async with mosquitto(tmp_path) as broker:
        _, broker_port = broker.endpoint("mqtt")
        publisher = AsyncPaho(version=mqtt.MQTTv311)
        try:
            await publisher.connect(broker_port)
            reading = {"serialNumber": sensor, "temp": 21.5, "hum": 40, "model": "T-1000"}
            await publisher.publish("sensors/hall", orjson.dumps(reading), qos=1, retain=True)
        finally:
            await publisher.close()

        config = bridge_config(tmp_path / "tbgw-config", port=mqtt_port, token=result["credentialsValue"],
                               broker_port=broker_port)
        environment = {
            "TB_GW_CONFIG_DIR": str(config),
            "UNDER_TEST_MQTT_PORT": str(mqtt_port),
            # Its update check goes nowhere: a closed local port as its proxy.
            "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
        }
        acks: dict[str, Any] = {}
        values: dict[str, Any] = {}
        async with running_script(tbgw_python, bridge_script, SCRIPT_LIMIT, env=environment,
                                  cwd=tmp_path) as bridge:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(BRIDGED):
                    acks, values = await acknowledged(bridge, sensor, {"temperature", "humidity"})
        log = bridge.log
    assert acks, f"the bridge's messages were not all acknowledged; events: {bridge.events}; its log:\n{log}"

    assert orjson.loads(acks["v1/gateway/connect"]["payload"]) == {"device": sensor, "type": "thermometer"}
    assert {topic: event["reason"] for topic, event in acks.items()} == dict.fromkeys(acks, 0), log
    assert values == {"temperature": 21.5, "humidity": 40}
    # Each PUBACK came after the commit: the sub-device, its telemetry and its attribute are there.
    assert await stored(gateway, tenant, sensor) == {"temperature": "21.5", "humidity": "40"}
    row = await gateway.services.pool.fetchrow(
        "SELECT p.name AS product, g.name AS parent FROM devices d JOIN products p ON p.id = d.product_id "
        "JOIN devices g ON g.id = d.gateway_id WHERE d.project_id = $1 AND d.name = $2", tenant.project_id, sensor)
    assert (row["product"], row["parent"]) == ("thermometer", gateway_name)
    model = await gateway.services.pool.fetchval(
        "SELECT a.str_v FROM attribute_kv a JOIN devices d ON d.id = a.device_id "
        "WHERE d.project_id = $1 AND d.name = $2 AND a.scope = 'CLIENT_SCOPE' AND a.key = 'model'",
        tenant.project_id, sensor)
    assert model == "T-1000"
    assert "Traceback" not in log, log
