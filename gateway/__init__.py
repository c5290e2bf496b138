"""Protocol-neutral core of the IoT gateway.

Nothing in this package imports aiohttp, aiocoap, asyncpg, the front-ends or
storage; what it needs from fleetgate.storage is declared in :mod:`fleetgate.core.ports`.
"""
