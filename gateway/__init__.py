"""Protocol-neutral core of the IoT gateway.

Nothing in this package imports aiohttp, aiocoap, asyncpg, the front-ends or
storage; what it needs from storage is declared in :mod:`gateway.ports`.
"""
