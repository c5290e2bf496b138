"""aiocoap's duplicate detection, with a window sized for a gateway rather than RFC 7252's worst case.

aiocoap remembers every request it received (and the response it gave) for the
request's ``transport_tuning.EXCHANGE_LIFETIME``, 247 s by default: at thousands
of requests a second that is gigabytes. Each request arriving here is given a
shared tuning whose EXCHANGE_LIFETIME is ``dedup_seconds``: a retransmitted
confirmable request within that window is still answered from the cached
response (and its data stored once); a copy arriving later is taken as new.
"""

from __future__ import annotations

from typing import Any

from aiocoap import Context
from aiocoap.numbers.constants import TransportTuning


class DeviceTuning(TransportTuning):
    def __init__(self, dedup_seconds: float) -> None:
        self._dedup_seconds = dedup_seconds

    @property
    def EXCHANGE_LIFETIME(self) -> float:  # noqa: N802 - aiocoap's name
        return self._dedup_seconds


def tune_incoming(context: Context, tuning: TransportTuning) -> None:
    """Give every request the context receives ``tuning`` before aiocoap's message layer sees it.

    The hook is the message manager's ``dispatch_message`` (what the UDP transport
    calls for each datagram), overridden on this context's instances only."""
    for interface in context.request_interfaces:
        manager = getattr(interface, "token_interface", None)
        dispatch = getattr(manager, "dispatch_message", None)
        if dispatch is None:
            continue

        def tuned(message: Any, dispatch: Any = dispatch) -> None:
            message.transport_tuning = tuning
            dispatch(message)

        manager.dispatch_message = tuned  # type: ignore[union-attr]
