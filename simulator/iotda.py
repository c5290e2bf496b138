"""Simulated Huawei IoTDA devices: how they connect and what they report.

IoTDA's MQTT contract, as Huawei's device SDK keeps it: the client id
``{device_id}_0_1_{YYYYMMDDHH}`` (the UTC hour, checked by the server), the device id as user
name, and as password the lowercase hex HMAC-SHA256 of the secret keyed by that hour. A
device reports on ``$oc/devices/{device_id}/sys/properties/report``:
``{"services": [{"service_id", "properties", "event_time": null}]}``.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import orjson

SERVICE_ID = "bench"


def hour() -> str:
    return time.strftime("%Y%m%d%H", time.gmtime())


def client_id(device_id: str, stamp: str) -> str:
    return f"{device_id}_0_1_{stamp}"


def password(secret: str, stamp: str) -> str:
    return hmac.new(stamp.encode(), secret.encode(), hashlib.sha256).hexdigest()


def report_topic(device_id: str) -> str:
    return f"$oc/devices/{device_id}/sys/properties/report"


def report_body(properties: bytes) -> bytes:
    """A ThingsBoard telemetry object (its data points) as IoTDA's properties/report."""
    return orjson.dumps({"services": [{"service_id": SERVICE_ID, "properties": orjson.loads(properties),
                                       "event_time": None}]})
