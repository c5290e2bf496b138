"""How a simulated fleet gets its credentials: access tokens from a file, claim provisioning
(a provision key and secret, through the HTTP device API), or client certificates minted
from a local test CA (auto-registration on the gateway's first mTLS connection)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from gateway.errors import GatewayError
from simulator.http11 import close_all, connect_all
from simulator.http_load import closed_loop
from simulator.workloads import ProvisionSpec, ProvisionWorkload

_PROVISION_CONNECTIONS = 50
_PROVISION_TIMEOUT = 600.0


class CredentialsError(GatewayError):
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
    provisioning), names ``{prefix}{n}``; their access tokens."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise CredentialsError(f"claim provisioning needs the device API's http:// URL, not {url!r}")
    host, port = parts.hostname, parts.port or 80
    workload = ProvisionWorkload(
        ProvisionSpec(key, secret, prefix or f"sim-{secrets.token_hex(3)}-"), f"{host}:{port}", keep_tokens=True
    )
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


def certificate_devices(paths: tuple[str, ...]) -> FleetCredentials:
    return FleetCredentials(tuple("" for _ in paths), certificates=paths)
