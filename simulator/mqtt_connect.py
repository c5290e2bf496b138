"""Many simulated devices' MQTT connections: opened on a timetable, closed together."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fleetgate.simulator.mqtt_connection import UNOWNED, MqttConnection
from fleetgate.simulator.mqtt_packets import MQTT_311, PublishTemplate, connack_error, encode_connect
from fleetgate.simulator.mqtt_tls import remember_session


@dataclass(frozen=True, slots=True)
class Device:
    """What a simulated device connects with."""

    client_id: str
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True, slots=True)
class ConnectOutcome:
    """Connections that got a CONNACK accepting them, and what happened to the others."""

    connections: list[MqttConnection]
    errors: dict[str, int]
    elapsed_s: float


async def connect_all(
    host: str,
    port: int,
    devices: Sequence[Device],
    template: PublishTemplate | Sequence[PublishTemplate],
    *,
    version: int = MQTT_311,
    window: int = 10,
    keepalive: int = 60,
    rate: float = 1_000.0,
    concurrency: int = 500,
    timeout: float = 30.0,
    source_hosts: Sequence[str] = (),
    tls: Callable[[int], ssl.SSLContext] | None = None,
    server_hostname: str | None = None,
) -> ConnectOutcome:
    """Connect every device on a timetable: device i starts at ``i / rate`` seconds
    (no CONNECT storm), with at most ``concurrency`` handshakes pending at once.

    Unlike HTTP's all-or-nothing, a refused or failed device is counted by kind
    and the others go on. ``source_hosts`` spreads the connections over several
    local addresses (127.0.0.2, ...): one address has about 28,000 ephemeral ports.
    ``tls``: device index -> its TLS context (mqtts), the handshake counted in the connect.
    ``template``: what every device publishes, or one for each device (a gateway's sub-devices are its own).
    """
    if rate <= 0:
        raise ValueError("the connect rate must be positive")
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)
    accepted: list[MqttConnection] = []
    errors: dict[str, int] = {}

    def count(kind: str) -> None:
        errors[kind] = errors.get(kind, 0) + 1

    async def one(index: int, device: Device) -> None:
        conn: MqttConnection | None = None
        try:
            connect = encode_connect(
                device.client_id, username=device.username, password=device.password, keepalive=keepalive,
                version=version,
            )
            local = (source_hosts[index % len(source_hosts)], 0) if source_hosts else None
            publishes = template if isinstance(template, PublishTemplate) else template[index]
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    lambda: MqttConnection(index, connect, publishes, window=window, version=version),
                    host, port, local_addr=local, ssl=tls(index) if tls else None,
                    server_hostname=(server_hostname or host) if tls else None,
                )
                code = await conn.connected
            if code < 0:
                count(conn.lost_reason or "connection closed before CONNACK")
            elif code:
                count(connack_error(version, code))
            else:
                if tls is not None:
                    remember_session(conn.transport)
                accepted.append(conn)
                conn = None
        except TimeoutError:
            count("no CONNACK before the deadline")
        except ssl.SSLError as exc:
            count(f"TLS handshake failed: {exc.reason or type(exc).__name__}")
        except OSError as exc:
            count(f"connect failed: {exc.strerror or type(exc).__name__}")
        finally:
            if conn is not None:
                conn.abort()
            gate.release()

    started = time.perf_counter()
    try:
        async with asyncio.TaskGroup() as group:
            for index, device in enumerate(devices):
                delay = started + index / rate - time.perf_counter()
                if delay > 0:  # the ramp's timetable
                    await asyncio.sleep(delay)
                await gate.acquire()
                group.create_task(one(index, device))
    except BaseException:
        disconnect_all(accepted)
        raise
    accepted.sort(key=lambda c: c.index)
    return ConnectOutcome(accepted, errors, time.perf_counter() - started)


def disconnect_all(connections: Sequence[MqttConnection]) -> None:
    for conn in connections:
        conn.owner = UNOWNED
        conn.disconnect()

