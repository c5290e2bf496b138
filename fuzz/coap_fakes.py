"""In-memory fakes of the gateway's storage ports, for the CoAP fuzz harness (fuzz/coap_requests.py):
two access-token devices and one MQTT_BASIC device, a provisionable product, and an ingest pipeline
whose outcome each input chooses."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fleetgate.core import credentials as creds
from fleetgate.core.errors import NameTaken, Overloaded, Unavailable
from fleetgate.core.model import (
    CredentialsType,
    DeviceIdentity,
    Product,
    ProvisionStrategy,
    StoredCredentials,
)
from fleetgate.core.telemetry_model import AttributeValue

TOKENS = {"tokenA": "device-a", "tokenB": "device-b"}  # ACCESS_TOKEN devices
BASIC_TOKEN = "basicC"  # a device with MQTT_BASIC credentials under this lookup: not a CoAP token
PROVISION_KEY, PROVISION_SECRET = "pk", "ps"


async def _later(then: Callable[[], None]) -> None:
    await asyncio.sleep(0)
    then()


class AuthStore:
    """DeviceAuthStore: two token devices and one MQTT_BASIC device."""

    def __init__(self) -> None:
        self.found: dict[str, tuple[DeviceIdentity, StoredCredentials]] = {}
        for token, device_id in TOKENS.items():
            lookup = creds.token_lookup(token)
            self.found[lookup] = (DeviceIdentity(device_id, "project", "product", device_id),
                                  StoredCredentials(CredentialsType.ACCESS_TOKEN, lookup))
        lookup = creds.token_lookup(BASIC_TOKEN)
        self.found[lookup] = (DeviceIdentity("device-c", "project", "product", "device-c"),
                              StoredCredentials(CredentialsType.MQTT_BASIC, lookup, client_id="c"))

    async def authenticate(self, lookup: str) -> tuple[DeviceIdentity, StoredCredentials] | None:
        await asyncio.sleep(0)  # a lookup takes a turn of the loop, as a query would
        return self.found.get(lookup)


class Attributes:
    """AttributeReader: each device's own attributes, named after it."""

    async def read_attributes(self, device_id: str, scope: Any, keys: Any) -> list[AttributeValue]:
        values = [AttributeValue(f"{scope.value}-{device_id}", device_id, 1)]
        return [v for v in values if keys is None or v.key in keys]


class ProvisioningStore:
    def __init__(self) -> None:
        self.product = Product("product", "project", "p", "", ProvisionStrategy.ALLOW_CREATE_NEW_DEVICES,
                               PROVISION_KEY, PROVISION_SECRET, False, 0)
        self.names: set[str] = set()

    async def product_by_provision_key(self, key: str) -> Product | None:
        return self.product if key == PROVISION_KEY else None

    async def create_device(self, device: Any, credentials: Any, provisioned: Any = None) -> None:
        if device.name in self.names:
            raise NameTaken()
        if len(self.names) > 10_000:
            self.names.clear()
        self.names.add(device.name)

    async def device_with_credentials(self, project_id: str, name: str) -> None:
        return None

    async def mark_provisioned(self, device_id: str, ts: int, record: Any) -> bool:
        return False


class Audit:
    async def record(self, record: Any) -> None:
        pass


class Pipeline:
    """The ingest pipeline's submit, with the outcome the input chose: stored at once, stored a
    turn later, refused for a full queue (5.03), or failed (the database unreachable: 5.03)."""

    def __init__(self, spawn: Callable[[Coroutine[Any, Any, None]], object]) -> None:
        self._spawn = spawn
        self.mode = "now"
        self.stored: list[str] = []  # device ids, per message

    def submit(self, message: Any, *, wait_stored: bool = False, receipt: Any = None) -> None:
        if self.mode == "full":
            raise Overloaded("The ingest queue is full", retry_after=1.0)
        self.stored.append(message.device_id)
        if receipt is None:
            return
        if self.mode == "now":
            receipt.stored()
        elif self.mode == "later":
            self._spawn(_later(receipt.stored))
        else:
            receipt.failed(Unavailable("The database cannot be reached"))
        return


@dataclass(frozen=True)
class Remote:
    """What the site reads of aiocoap's UDP address: hashable, with hostinfo and sockaddr."""

    host: str
    port: int

    @property
    def hostinfo(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def sockaddr(self) -> tuple[str, int]:
        return (self.host, self.port)


REMOTES = [Remote("127.0.0.1", 40000), Remote("127.0.0.2", 40000), Remote("::1", 40001)]
