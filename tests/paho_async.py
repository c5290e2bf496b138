"""paho-mqtt driven by the test's event loop (paho's external-loop hooks), not by its thread.

Every callback paho makes is turned into an awaitable: ``connected``, ``next_message``,
``published(mid)``, ``subscribed(mid)``, ``disconnected``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties


class AsyncPaho:
    def __init__(self, client_id: str = "", *, version: int = mqtt.MQTTv311, **kwargs: Any) -> None:
        self.loop = asyncio.get_running_loop()
        self.version = version
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=version, **kwargs)
        self.connected: asyncio.Future[Any] = self.loop.create_future()
        self.disconnected: asyncio.Future[Any] = self.loop.create_future()
        self.messages: asyncio.Queue[mqtt.MQTTMessage] = asyncio.Queue()
        self._acks: dict[int, asyncio.Future[Any]] = {}
        self._misc: asyncio.TimerHandle | None = None
        c = self.client
        c.on_socket_open = self._socket_open
        c.on_socket_close = self._socket_close
        c.on_socket_register_write = lambda _c, _u, sock: self.loop.add_writer(sock, c.loop_write)
        c.on_socket_unregister_write = lambda _c, _u, sock: self.loop.remove_writer(sock)
        c.on_connect = lambda _c, _u, flags, reason, props: _settle(self.connected, (reason, props))
        c.on_disconnect = lambda _c, _u, flags, reason, props: _settle(self.disconnected, reason)
        c.on_message = lambda _c, _u, message: self.messages.put_nowait(message)
        c.on_publish = lambda _c, _u, mid, reason, props: _settle(self._ack(mid), reason)
        c.on_subscribe = lambda _c, _u, mid, reasons, props: _settle(self._ack(mid), reasons)
        c.on_unsubscribe = lambda _c, _u, mid, reasons, props: _settle(self._ack(mid), reasons)

    def _socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self.loop.add_reader(sock, client.loop_read)
        self._misc = self.loop.call_later(1, self._tick)

    def _socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self.loop.remove_reader(sock)
        if self._misc is not None:
            self._misc.cancel()

    def _tick(self) -> None:
        # paho's keep-alive and retries: what its thread would do once a second.
        if self.client.loop_misc() == mqtt.MQTT_ERR_SUCCESS:
            self._misc = self.loop.call_later(1, self._tick)

    def _ack(self, mid: int) -> asyncio.Future[Any]:
        return self._acks.setdefault(mid, self.loop.create_future())

    async def connect(self, port: int, username: str | None = None, password: str | None = None,
                      keepalive: int = 60, properties: Properties | None = None, **kwargs: Any) -> Any:
        if username is not None:
            self.client.username_pw_set(username, password)
        if self.version == mqtt.MQTTv5:
            self.client.connect("127.0.0.1", port, keepalive, properties=properties, **kwargs)
        else:
            self.client.connect("127.0.0.1", port, keepalive, **kwargs)
        async with asyncio.timeout(10):
            return await self.connected

    async def publish(self, topic: str, payload: bytes | str, qos: int = 1, **kwargs: Any) -> Any:
        info = self.client.publish(topic, payload, qos=qos, **kwargs)
        if qos == 0:
            return None
        async with asyncio.timeout(10):
            return await self._ack(info.mid)

    async def subscribe(self, topic: str, qos: int = 1) -> Any:
        _, mid = self.client.subscribe(topic, qos)
        async with asyncio.timeout(10):
            return await self._ack(mid)

    async def next_message(self, timeout: float = 10) -> mqtt.MQTTMessage:
        async with asyncio.timeout(timeout):
            return await self.messages.get()

    async def wait_disconnected(self, timeout: float = 10) -> Any:
        async with asyncio.timeout(timeout):
            return await self.disconnected

    async def close(self) -> None:
        if not self.disconnected.done():
            self.client.disconnect()
            try:
                await self.wait_disconnected(5)
            except TimeoutError:
                pass


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def reason_value(reason: Any) -> int:
    """A paho reason code (or a SUBACK's list of one) as its number."""
    if isinstance(reason, list):
        (reason,) = reason
    return reason.value if hasattr(reason, "value") else int(reason)
