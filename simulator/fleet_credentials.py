"""How a simulated fleet gets its credentials: access tokens from a file, claim provisioning
(a provision key and secret, through the HTTP or the CoAP device API), or client certificates
minted from a local test CA (auto-registration on the gateway's first mTLS connection)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from fleetgate.simulator.errors import SimulatorError
from fleetgate.simulator.http11 import close_all, connect_all
from fleetgate.simulator.http_load import closed_loop
from fleetgate.simulator.workloads import ProvisionSpec, ProvisionWorkload

_PROVISION_CONNECTIONS = 50
_PROVISION_TIMEOUT = 600.0


class CredentialsError(SimulatorError):
    """The fleet could not get its credentials."""


@dataclass(frozen=True, slots=True)
class FleetCredentials:
    """One entry a device: an access token ("" for a certificate device), and for certificate
    devices their PEM files; how many were provisioned now, how long it took, what failed."""

    tokens: tuple[str, ...]
    certificates: tuple[str, ...] = ()
    provisioned: int = 0
    provision_s: float = 0.0
    errors: tuple[tuple[str, int], ...] = ()


def tokens_from_file(path: str, count: int) -> FleetCredentials:
    try:
        lines = [line.strip() for line in Path(path).read_text().splitlines()]
    except OSError as exc:
        raise CredentialsError(f"cannot read the tokens file {path}: {exc.strerror}") from None
    tokens = tuple(line for line in lines if line and not line.startswith("#"))
    if len(tokens) < count:
        raise CredentialsError(f"{path} holds {len(tokens)} tokens for {count} devices")
    return FleetCredentials(tokens[:count])


async def provision(url: str, key: str, secret: str, count: int, prefix: str | None = None) -> FleetCredentials:
    """``count`` new devices through POST {url}/api/v1/provision (ThingsBoard's claim
    provisioning, over HTTP or CoAP as the URL says), names ``{prefix}{n}``; their access tokens."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "coap") or not parts.hostname:
        raise CredentialsError(f"claim provisioning needs the device API's http:// or coap:// URL, not {url!r}")
    prefix = prefix or f"sim-{secrets.token_hex(3)}-"
    if parts.scheme == "coap":
        return await _provision_coap(url.rstrip("/"), key, secret, count, prefix)
    host, port = parts.hostname, parts.port or 80
    workload = ProvisionWorkload(ProvisionSpec(key, secret, prefix), f"{host}:{port}", keep_tokens=True)
    started = time.perf_counter()
    connections = await connect_all(host, port, min(_PROVISION_CONNECTIONS, count))
    try:
        result = await closed_loop(
            connections, workload, warmup=0, duration=_PROVISION_TIMEOUT, max_requests=count, drain_timeout=10,
        )
    finally:
        close_all(connections)
    elapsed = time.perf_counter() - started
    if not workload.tokens:
        raise CredentialsError(f"no device could be provisioned: {dict(result.errors)}")
    return FleetCredentials(
        tuple(workload.tokens), provisioned=len(workload.tokens), provision_s=elapsed,
        errors=tuple(result.errors.items()),
    )


async def _provision_coap(url: str, key: str, secret: str, count: int, prefix: str) -> FleetCredentials:
    """Claim provisioning over CoAP with aiocoap's client, ``_PROVISION_CONNECTIONS`` requests at a time."""
    import aiocoap  # the gateway's own dependency; imported here to keep other fleets' start-up light

    started = time.perf_counter()
    tokens: list[str] = []
    errors: Counter[str] = Counter()
    names = iter(range(count))
    context = await aiocoap.Context.create_client_context(transports=["udp6"])

    async def provision_next() -> None:
        for n in names:
            body = orjson.dumps({"deviceName": f"{prefix}{n}", "provisionDeviceKey": key,
                                 "provisionDeviceSecret": secret})
            request = aiocoap.Message(code=aiocoap.POST, uri=f"{url}/api/v1/provision", payload=body)
            try:
                response = await context.request(request).response
            except aiocoap.error.Error as exc:
                errors[f"coap {type(exc).__name__}"] += 1
                continue
            try:
                answer = orjson.loads(response.payload)
            except orjson.JSONDecodeError:
                answer = {}
            if not isinstance(answer, dict):
                answer = {}
            if response.code == aiocoap.CREATED and answer.get("credentialsType") == "ACCESS_TOKEN":
                tokens.append(answer["credentialsValue"])
            else:
                errors[f"coap {response.code.dotted} {answer.get('status', '')}".rstrip()] += 1

    try:
        async with asyncio.timeout(_PROVISION_TIMEOUT), asyncio.TaskGroup() as requests:
            for _ in range(min(_PROVISION_CONNECTIONS, count)):
                requests.create_task(provision_next())
    finally:
        await context.shutdown()
    if not tokens:
        raise CredentialsError(f"no device could be provisioned: {dict(errors)}")
    return FleetCredentials(tuple(tokens), provisioned=len(tokens), provision_s=time.perf_counter() - started,
                            errors=tuple(errors.items()))


def certificate_devices(paths: tuple[str, ...]) -> FleetCredentials:
    return FleetCredentials(tuple("" for _ in paths), certificates=paths)
