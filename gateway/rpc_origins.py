"""What a process remembers of server-side calls made elsewhere and delivered by it.

On a routing bus the process holding the device is not the caller's: it keeps the caller's
address until the call's timeout, for the device's reply, and the requests it pushed lately,
because a caller publishes a request once more when the first may have been lost
(fleetgate.core.downlink). Both are bounded in count and in time.
"""

from __future__ import annotations

import time
from collections import OrderedDict

# Reply addresses of calls delivered here and awaiting the device's answer: each is kept for its
# call's timeout, and no more than this many at once.
MAX_ORIGINS = 100_000

Key = tuple[str, int]  # (device id, request id)


class RpcOrigins:
    """Calls made in other processes, as the one holding their device keeps them: where to send
    each reply, and which requests it has pushed already."""

    def __init__(self, delivery_timeout: float, max_wait: float) -> None:
        self._delivery_timeout = delivery_timeout
        self._max_wait = max_wait
        # (device, request id) -> (the caller's address, when to forget it), oldest first
        self._origins: OrderedDict[Key, tuple[str, float]] = OrderedDict()
        # requests pushed here lately -> when to forget them (a request published twice is pushed once)
        self._pushed: OrderedDict[Key, float] = OrderedDict()

    def seen(self, device_id: str, request_id: int) -> bool:
        """Whether this request was pushed here within the delivery timeout; it is from now on."""
        now, pushed = time.monotonic(), self._pushed
        while pushed and (len(pushed) >= MAX_ORIGINS or next(iter(pushed.values())) <= now):
            pushed.popitem(last=False)
        if (device_id, request_id) in pushed:
            return True
        pushed[(device_id, request_id)] = now + self._delivery_timeout
        return False

    def unseen(self, device_id: str, request_id: int) -> None:
        """The request was not pushed after all (no connection speaks its dialect)."""
        del self._pushed[(device_id, request_id)]

    def remember(self, device_id: str, request_id: int, origin: str, wait: float) -> None:
        """Keep the caller's address until the call's timeout, for the device's reply."""
        now = time.monotonic()
        origins = self._origins
        while origins and (len(origins) >= MAX_ORIGINS or next(iter(origins.values()))[1] <= now):
            origins.popitem(last=False)
        origins[(device_id, request_id)] = (origin, now + min(wait, self._max_wait))

    def pop(self, device_id: str, request_id: int) -> str | None:
        """The caller's address for the device's reply, if it was remembered; forgotten now."""
        origin = self._origins.pop((device_id, request_id), None)
        return None if origin is None else origin[0]
