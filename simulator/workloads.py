"""What simulated devices send over HTTP: ThingsBoard telemetry and claim provisioning.

Each workload is described by a frozen spec (JSON-able, so a generator process
can be handed one) and built into the object the load drivers call per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from simulator.http11 import encode_post

# Three data points, one of each common type: double, long, boolean.
DEFAULT_TELEMETRY = b'{"temperature":21.5,"humidity":40,"active":true}'

_STATUS_ERRORS = {status: f"HTTP {status}" for status in range(100, 600)}


def status_error(status: int) -> str:
    return _STATUS_ERRORS.get(status) or f"HTTP {status}"


@dataclass(frozen=True, slots=True)
class TelemetrySpec:
    """One device per access token, each posting ``body`` to /api/v1/{token}/telemetry."""

    tokens: tuple[str, ...]
    body: bytes = DEFAULT_TELEMETRY

    @property
    def datapoints(self) -> int:
        root = orjson.loads(self.body)
        return len(root) if isinstance(root, dict) else sum(len(item.get("values", item)) for item in root)

    def to_json(self) -> dict[str, Any]:
        return {"kind": "telemetry", "tokens": list(self.tokens), "body": self.body.decode()}

    def split(self, parts: int) -> list[TelemetrySpec]:
        """Disjoint shares of the devices, for ``parts`` generator processes."""
        size = -(-len(self.tokens) // parts)
        return [TelemetrySpec(self.tokens[i : i + size], self.body) for i in range(0, len(self.tokens), size)]


@dataclass(frozen=True, slots=True)
class ProvisionSpec:
    """New devices named ``{prefix}{n}``, created through POST /api/v1/provision."""

    provision_key: str
    provision_secret: str
    prefix: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": "provision", "key": self.provision_key, "secret": self.provision_secret, "prefix": self.prefix}


WorkloadSpec = TelemetrySpec | ProvisionSpec


def spec_from_json(data: dict[str, Any]) -> WorkloadSpec:
    if data["kind"] == "telemetry":
        return TelemetrySpec(tuple(data["tokens"]), data["body"].encode())
    if data["kind"] == "provision":
        return ProvisionSpec(data["key"], data["secret"], data["prefix"])
    raise ValueError(f"unknown workload {data['kind']!r}")


class TelemetryWorkload:
    """Pre-encoded requests: writing one is the generator's whole cost per request."""

    def __init__(self, spec: TelemetrySpec, host: str) -> None:
        self._requests = [encode_post(host, f"/api/v1/{token}/telemetry", spec.body) for token in spec.tokens]
        self._datapoints = spec.datapoints

    @property
    def datapoints_per_request(self) -> int:
        return self._datapoints

    @property
    def devices(self) -> int:
        return len(self._requests)

    def request(self, index: int) -> bytes:
        return self._requests[index]

    def check(self, index: int, status: int, body: bytes) -> str | None:
        return None if status == 200 else status_error(status)


class ProvisionWorkload:
    """Every request names a new device; the access tokens handed back are kept."""

    def __init__(self, spec: ProvisionSpec, host: str, *, keep_tokens: bool = False) -> None:
        self._spec = spec
        self._host = host
        self._sent = 0
        self._keep = keep_tokens
        self.tokens: list[str] = []

    @property
    def datapoints_per_request(self) -> int:
        return 0

    def request(self, index: int) -> bytes:
        self._sent += 1
        body = orjson.dumps({
            "deviceName": f"{self._spec.prefix}{self._sent}",
            "provisionDeviceKey": self._spec.provision_key,
            "provisionDeviceSecret": self._spec.provision_secret,
        })
        return encode_post(self._host, "/api/v1/provision", body)

    def check(self, index: int, status: int, body: bytes) -> str | None:
        if status != 200:
            return status_error(status)
        try:
            reply = orjson.loads(body)
        except orjson.JSONDecodeError:
            return "provision: the answer is not JSON"
        if not isinstance(reply, dict) or reply.get("status") != "SUCCESS":
            return f"provision: {reply.get('status') if isinstance(reply, dict) else 'bad answer'}"
        if self._keep:
            self.tokens.append(str(reply["credentialsValue"]))
        return None
