"""The downlink bus of a gateway alone (no replicas, no workers): no broker in between."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class LocalBus:
    """The bus of a gateway alone: every event comes straight back to this process."""

    def __init__(self) -> None:
        self.receiver: Callable[[dict[str, Any]], None] | None = None

    async def publish(self, event: dict[str, Any]) -> None:
        if self.receiver is not None:
            self.receiver(event)

    def subscribe(self, device_id: str) -> None:
        pass

    def unsubscribe(self, device_id: str) -> None:
        pass
