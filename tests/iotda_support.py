"""A device speaking Huawei IoTDA's MQTT contract (../shared/spec/huawei-iotda-device.md) with
paho-mqtt, as Huawei's Python device SDK does: its client id and HMAC password, its topics, no
SUBSCRIBE. Written from the spec, not from the gateway's code."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import hmac
import ssl
from pathlib import Path
from typing import Any, Callable

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests import pki
from tests.autoregistration_support import url_of
from tests.management_client import Management
from tests.paho_async import AsyncPaho


def hour(offset_hours: int = 0) -> str:
    """The UTC hour as the SDK writes it (time.gmtime): YYYYMMDDHH."""
    now = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=offset_hours)
    return now.strftime("%Y%m%d%H")


def client_id(device_id: str, stamp: str, check_timestamp: int = 1) -> str:
    return f"{device_id}_0_{check_timestamp}_{stamp}"


def password(secret: str, stamp: str) -> str:
    """HMAC-SHA256, key = the hour string, message = the secret, lowercase hex."""
    return hmac.new(stamp.encode(), secret.encode(), hashlib.sha256).hexdigest()


async def add_secret_device(api: Management, node_id: str, secret: str = "AccSecret_0123") -> dict[str, Any]:
    reply = await api.call("POST", "/devices", json={
        "node_id": node_id, "device_name": node_id, "product_id": api.tenant.product_id,
        "auth_info": {"auth_type": "SECRET", "secret": secret, "secure_access": False}})
    assert reply.status == 201, reply
    return reply.body


async def connect(
    make: Callable[..., AsyncPaho], port: int, device_id: str, secret: str | None, *, stamp: str | None = None,
    check_timestamp: int = 1, version: int = mqtt.MQTTv311, tls: ssl.SSLContext | None = None,
) -> tuple[AsyncPaho, int]:
    """A connected (or refused) device: the client and the CONNACK's reason as a number."""
    stamp = stamp or hour()
    client = make(client_id(device_id, stamp, check_timestamp), version=version)
    if tls is not None:
        client.client.tls_set_context(tls)
        client.client.tls_insecure_set(True)
    reason, _ = await client.connect(port, device_id, password(secret, stamp) if secret is not None else None,
                                     keepalive=120)
    return client, reason.value if hasattr(reason, "value") else int(reason)


def topic(device_id: str, rest: str) -> str:
    return f"$oc/devices/{device_id}/sys/{rest}"


def report(service_id: str, properties: dict[str, Any], event_time: str | None = None) -> bytes:
    """The SDK's properties/report: event_time is always present, null when unset."""
    return orjson.dumps({"services": [{"service_id": service_id, "properties": properties,
                                       "event_time": event_time}]})


def log_report(device_id: str) -> bytes:
    """The event the SDK sends right after every connect."""
    return orjson.dumps({"object_device_id": device_id, "services": [{
        "service_id": "$log", "event_type": "log_report", "event_time": "2026-12-06T15:00:00Z", "event_id": None,
        "paras": {"timestamp": "1796569200000", "type": "DEVICE_STATUS", "content": "connect complete, bs mode"},
    }]})


def request_id_of(message_topic: str) -> str:
    """The SDK's way: the text after the last request_id=."""
    return message_topic.rsplit("request_id=", 1)[1]


class ThreadedPaho:
    """paho-mqtt on its own network thread, as Huawei's SDK runs it: needed over TLS, where paho's
    handshake blocks (the gateway under test shares the test's event loop)."""

    def __init__(self, client_id: str, version: int = mqtt.MQTTv311) -> None:
        self.loop = asyncio.get_running_loop()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=version)
        self.connected: asyncio.Future[Any] = self.loop.create_future()
        self.disconnected: asyncio.Future[Any] = self.loop.create_future()
        self.messages: asyncio.Queue[mqtt.MQTTMessage] = asyncio.Queue()
        self._acks: dict[int, asyncio.Future[Any]] = {}
        c = self.client
        c.on_connect = lambda _c, _u, flags, reason, props: self._later(self._settle, self.connected, reason)
        c.on_disconnect = lambda _c, _u, flags, reason, props: self._later(self._settle, self.disconnected, reason)
        c.on_message = lambda _c, _u, message: self._later(self.messages.put_nowait, message)
        c.on_publish = lambda _c, _u, mid, reason, props: self._later(self._acked, mid, reason)

    def _later(self, function: Callable[..., Any], *args: Any) -> None:
        self.loop.call_soon_threadsafe(function, *args)

    @staticmethod
    def _settle(future: asyncio.Future[Any], value: Any) -> None:
        if not future.done():
            future.set_result(value)

    def _acked(self, mid: int, reason: Any) -> None:
        self._settle(self._acks.setdefault(mid, self.loop.create_future()), reason)

    async def connect(self, port: int, username: str, password: str | None, tls: ssl.SSLContext) -> int:
        self.client.tls_set_context(tls)
        self.client.tls_insecure_set(True)
        self.client.username_pw_set(username, password)
        try:
            await asyncio.to_thread(self.client.connect, "127.0.0.1", port, 120)
        except (OSError, ssl.SSLError):
            return -1
        self.client.loop_start()
        async with asyncio.timeout(10):
            done, _ = await asyncio.wait([self.connected, self.disconnected], return_when=asyncio.FIRST_COMPLETED)
        reason = self.connected.result() if self.connected.done() else self.disconnected.result()
        return reason.value if hasattr(reason, "value") else int(reason)

    async def publish(self, topic_name: str, payload: bytes, qos: int = 1) -> Any:
        info = self.client.publish(topic_name, payload, qos=qos)
        async with asyncio.timeout(10):
            return await self._acks.setdefault(info.mid, self.loop.create_future())

    async def close(self) -> None:
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)


async def connect_tls(
    port: int, device_id: str, secret: str | None, tls: ssl.SSLContext, *, stamp: str | None = None,
    check_timestamp: int = 1, version: int = mqtt.MQTTv311,
) -> tuple[ThreadedPaho, int]:
    stamp = stamp or hour()
    client = ThreadedPaho(client_id(device_id, stamp, check_timestamp), version)
    reason = await client.connect(port, device_id, password(secret, stamp) if secret is not None else None, tls)
    return client, reason


def sdk_context(server_cert: str, device: pki.Issued | None = None, directory: Path | None = None) -> ssl.SSLContext:
    """The SDK's TLS: 1.2 only, the server verified against the operator's CA file, no host name check."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.load_verify_locations(server_cert)
    if device is not None:
        assert directory is not None
        cert, key = device.files(directory, f"iotda-{device.certificate.serial_number:x}")
        context.load_cert_chain(cert, key)
    return context


def mqtts_port(gw: Any) -> int:
    return int(url_of(gw, "mqtts").rsplit(":", 1)[1])
