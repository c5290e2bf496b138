"""Admitting connections by source address: how many at once, and how fast they come.

Shared by every TCP front-end of a process, so the limits count a source's
connections over HTTP, HTTPS, MQTT and MQTTS together (UDP CoAP has no
connections: it would use the rate alone). The counts hold only addresses
with an open connection, so they are bounded by the connections themselves;
the rate is a :class:`~gateway.buckets.TokenBuckets`.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetgate.core.buckets import TokenBuckets
from fleetgate.core.errors import ConnectionRateExceeded, TooManyConnections


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    max_per_address: int = 0  # 0: no limit
    rate_per_address: float = 0.0  # new connections a second; 0: no limit
    burst_per_address: int = 1


class ConnectionGate:
    def __init__(self, limits: AdmissionLimits) -> None:
        self._max = limits.max_per_address
        self._rate = (
            TokenBuckets(limits.rate_per_address, limits.burst_per_address) if limits.rate_per_address > 0 else None
        )
        self._open: dict[str, int] = {}

    def open(self, address: str) -> None:
        """Count a new connection from ``address``; raise TooManyRequests (and count nothing) if refused."""
        count = self._open.get(address, 0)
        if self._max and count >= self._max:
            raise TooManyConnections(f"More than {self._max} connections from one address", retry_after=1.0)
        if self._rate is not None:
            wait = self._rate.take(address)
            if wait:
                raise ConnectionRateExceeded("Connections from this address come too fast", retry_after=wait)
        self._open[address] = count + 1

    def close(self, address: str) -> None:
        count = self._open.get(address, 0) - 1
        if count > 0:
            self._open[address] = count
        else:
            self._open.pop(address, None)

    def open_from(self, address: str) -> int:
        return self._open.get(address, 0)


def address_of(peer: object) -> str:
    """The host part of a transport's ``peername`` (a tuple for IP sockets); '' when unknown."""
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return ""
