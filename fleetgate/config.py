"""Settings: defaults, then a TOML file, then ``GATEWAY_*`` variables, then CLI flags.

Every setting is one field of :class:`Settings`; its metadata carries the help
text that the CLI and the table in docs/configuration.md show. Values are validated once, at
start, and a bad one is reported by its key.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from fleetgate.core.errors import GatewayError

ENV_PREFIX = "GATEWAY_"
# postgresql.conf of the embedded server (serve's default, and the bench's); docs/performance.md's
# stall table has the measurements. WAL segments are recycled rather than made anew (a new 16 MB
# segment is zero-filled while every commit waits), so up to min_wal_size of them are kept. A
# checkpoint comes after max_wal_size / 1.9 of WAL: with 1 GB, every minute at 10,000 messages/s.
# Backends start the writeback of the data pages they write at once, 256 kB at a time, instead
# of leaving the kernel to write hundreds of megabytes in one burst 30 s later, under the commits.
EMBEDDED_POSTGRES: Mapping[str, str] = types.MappingProxyType(
    {"min_wal_size": "2GB", "max_wal_size": "4GB", "backend_flush_after": "256kB"}
)
# Kubernetes injects {SERVICE}_SERVICE_HOST, {SERVICE}_PORT_1883_TCP... for a
# Service named "gateway"; those are not settings and must not stop the start.
_SERVICE_LINK = re.compile(r"(SERVICE_|PORT$|PORT_)")


class ConfigError(GatewayError):
    """The configuration is invalid."""


def _setting(default: Any, help: str, **checks: Any) -> Any:
    return field(default=default, metadata={"help": help, **checks})


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: str = _setting("./gateway-data", "Directory for the embedded PostgreSQL and other local state.")
    database_url: str | None = _setting(
        None, "PostgreSQL URL (postgresql://user:pass@host/db). Unset: an embedded server in data_dir."
    )
    secrets_key_file: str | None = _setting(
        None, "File with the key (64 hex digits) that seals provision secrets, AK/SK secret keys and "
        "pre-provisioned credentials at rest. Unset: secrets.key in data_dir, made at the first start. "
        "Every process and replica on one database must use the same key.",
    )
    host: str = _setting("0.0.0.0", "Address the listeners bind to.")
    http_port: int = _setting(8080, "HTTP device API port; 0 disables it.", min=0, max=65535)
    https_port: int = _setting(
        8443, "HTTPS device API port; 0 disables it. Starts only when tls_cert_file and tls_key_file are set.",
        min=0, max=65535,
    )
    management_port: int = _setting(
        8081, "Management API, /metrics, /healthz and /openapi.json port; 0 disables it.", min=0, max=65535
    )
    mqtt_port: int = _setting(1883, "MQTT port; 0 disables it.", min=0, max=65535)
    mqtts_port: int = _setting(8883, "MQTT over TLS port; 0 disables it.", min=0, max=65535)
    coap_port: int = _setting(5683, "CoAP (UDP) port; 0 disables it.", min=0, max=65535)
    coap_dedup_seconds: float = _setting(
        30.0, "How long a CoAP request is remembered to answer its retransmissions from the cache "
        "(RFC 7252's EXCHANGE_LIFETIME: 247 s).", min=1, max=247,
    )
    tls_cert_file: str | None = _setting(None, "PEM server certificate (chain) for the TLS listeners.")
    tls_key_file: str | None = _setting(None, "PEM private key of tls_cert_file.")
    ack: Literal["stored", "accepted"] = _setting(
        "stored", "When a message is acknowledged: 'stored' after its commit, 'accepted' once queued."
    )
    mqtt_max_connections: int = _setting(100_000, "Most MQTT connections at once; more are refused.", min=1)
    mqtt_max_inflight: int = _setting(
        100, "QoS 1 and 2 messages a connection may have awaiting storage (MQTT 5 Receive Maximum).", min=1,
        max=65_535,
    )
    mqtt_topic_alias_maximum: int = _setting(
        16, "Topic aliases a client may use per connection (MQTT 5); 0 disables them.", min=0, max=65_535
    )
    mqtt_connect_timeout_seconds: float = _setting(
        10.0, "A connection that sends no CONNECT within this long is closed.", min=0.1
    )
    mqtt_provision_close_seconds: float = _setting(
        60.0, "A provisioning session is closed this long after its answer (ThingsBoard: 60 s).", min=0
    )
    http_idle_seconds: float = _setting(75.0, "An idle device HTTP connection is closed after this long.", min=0)
    http_request_timeout_seconds: float = _setting(
        30.0, "A device HTTP request must arrive whole (head and body) within this long of its first byte; "
        "else 408 and the connection is closed.", min=0.1,
    )
    http_max_long_polls: int = _setting(
        10_000, "Most device HTTP long polls (GET .../rpc and .../attributes/updates) waiting at once, per "
        "process; more: 429 with Retry-After.", min=1,
    )
    http_rpc_poll_grace_seconds: float = _setting(
        5.0, "How long a device whose HTTP RPC long poll was answered is waited for: an operator's "
        "lightweight call made before its next poll answers that poll, instead of 409 (ThingsBoard "
        "keeps such a call pending for the next poll). 0: no wait, such a call is 409.", min=0, max=60,
    )
    http_max_head_bytes: int = _setting(
        8_192, "Largest device HTTP request line plus headers; larger: 431 and the connection is closed.",
        min=1_024, max=1_048_576,
    )
    tls_handshake_timeout_seconds: float = _setting(
        10.0, "A TLS handshake (HTTPS, MQTTS) not finished within this long is abandoned and the socket closed.",
        min=0.1,
    )
    mqtt_max_client_id_length: int = _setting(
        256, "Longest MQTT client id, in characters; longer: CONNACK 0x85 (3.1.1: 2).", min=23, max=65_535
    )
    mqtt_max_topic_length: int = _setting(
        256, "Longest MQTT topic name, in characters; longer is an unknown topic (PUBACK 0x90 on MQTT 5).",
        min=16, max=65_535,
    )
    max_connections_per_address: int = _setting(
        1_000, "Most device connections (HTTP, HTTPS, MQTT, MQTTS together) from one IP address at once; "
        "0: no limit.", min=0,
    )
    connection_rate_per_address: float = _setting(
        50.0, "New device connections a second from one IP address, sustained; 0: no limit.", min=0
    )
    connection_burst_per_address: int = _setting(
        500, "New device connections one IP address may open at once before the rate applies.", min=1
    )
    auth_failures_per_address: int = _setting(
        20, "Device authentication failures from one IP address that block it for auth_block_seconds; "
        "0: never block.", min=0,
    )
    auth_block_seconds: float = _setting(
        60.0, "How long an address is refused after auth_failures_per_address failures (counted over "
        "the same time).", min=0.1,
    )
    provision_rate_per_key: float = _setting(
        10.0, "Provisioning attempts a second with one provision key, sustained; 0: no limit.", min=0
    )
    provision_burst_per_key: int = _setting(
        100, "Provisioning attempts one provision key may make at once before the rate applies.", min=1
    )
    max_payload_bytes: int = _setting(65_536, "Largest accepted message body, in bytes.", min=2, max=52_428_800)
    max_key_length: int = _setting(255, "Longest telemetry or attribute key.", min=1, max=255)
    max_string_length: int = _setting(65_536, "Longest string or JSON value.", min=1)
    max_datapoints_per_message: int = _setting(1_000, "Most data points in one message.", min=1)
    ingest_queue_rows: int = _setting(
        200_000, "Ingest queue bound, in rows; when full, devices are pushed back (HTTP 503).", min=1
    )
    batch_max_rows: int = _setting(5_000, "A batch is written when it holds this many rows...", min=1)
    batch_max_age_ms: int = _setting(5, "...or when its oldest row is this old (milliseconds).", min=0)
    batch_min_age_ms: int = _setting(
        1, "...or, while no other batch is being written, when its oldest row is this old (milliseconds, at most "
        "batch_max_age_ms): an idle pipeline commits almost at once.", min=0
    )
    writers: int = _setting(4, "Batches written concurrently, each on its own connection.", min=1, max=64)
    workers: int = _setting(
        1, "Gateway processes sharing the listening ports (SO_REUSEPORT), each with its own loop, batcher and "
        "pool (db_pool_size each).", min=1, max=256,
    )
    ota_max_package_bytes: int = _setting(
        64 * 1024 * 1024, "Largest OTA package an upload may store; a larger one stores nothing (413).", min=1
    )
    ota_max_chunk_bytes: int = _setting(
        1024 * 1024, "Largest OTA chunk a device may ask for (a whole package counts as one chunk); larger: "
        "PAYLOAD_TOO_LARGE on v2/fw/error, HTTP 413, CoAP 4.13.", min=1,
    )
    ota_max_downloads_in_flight: int = _setting(
        64, "OTA chunks read at once per process; more wait their turn (up to 10,000, then refused).", min=1
    )
    ota_chunk_rate_per_device: float = _setting(
        200.0, "OTA chunk requests a second each device may make (with a burst of twice as many); more are "
        "refused (TOO_MANY_REQUESTS, HTTP 429, CoAP 4.29).", min=0.01,
    )
    ota_cache_bytes: int = _setting(
        32 * 1024 * 1024, "Memory for OTA package blocks shared by the devices downloading them, per process.",
        min=0,
    )
    ota_metrics_interval_seconds: float = _setting(
        30.0, "How often /metrics' gateway_ota_devices (devices per OTA type and reported state) is counted "
        "from the stored progress, one GROUP BY per process; 0 disables it.", min=0,
    )
    db_pool_size: int = _setting(8, "PostgreSQL connections per process (writers included).", min=2, max=200)
    db_retry_max_seconds: float = _setting(5.0, "Longest back-off between retries while PostgreSQL is down.", min=0.01)
    nats_url: str | None = _setting(
        None, "NATS servers for the downlink bus, comma-separated (nats://host:4222,tls://host:4222); each "
        "downlink message then goes only to the process holding its device. Unset: PostgreSQL NOTIFY, "
        "heard by every process. Needs the nats extra.",
    )
    nats_user: str | None = _setting(None, "NATS user name (with nats_password).")
    nats_password: str | None = _setting(None, "NATS password of nats_user.")
    nats_token: str | None = _setting(None, "NATS authentication token.")
    nats_credentials_file: str | None = _setting(None, "NATS credentials file (.creds: user JWT and NKey seed).")
    nats_tls_ca_file: str | None = _setting(
        None, "PEM CA certificates the NATS servers' certificates are checked against (TLS to NATS is on with "
        "this, a client certificate or a tls:// URL; the system's CAs when unset)."
    )
    nats_tls_cert_file: str | None = _setting(None, "PEM client certificate for NATS (mutual TLS).")
    nats_tls_key_file: str | None = _setting(None, "PEM private key of nats_tls_cert_file.")
    nats_subject_prefix: str = _setting(
        "fleetgate", "First token of the bus's NATS subjects: gateways sharing one NATS each need their own.",
        pattern=r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", pattern_help="must be subject tokens (letters, digits, - "
        "and _) separated by dots",
    )
    device_inactivity_timeout_seconds: float = _setting(
        600.0, "A device that makes requests (HTTP, CoAP) rather than holding a connection is ONLINE for this "
        "long after its last one.", min=0.01,
    )
    presence_flush_seconds: float = _setting(
        2.0, "How often each process writes devices' activity and connections (one batch) and renews its lease; "
        "the devices of a process that dies turn OFFLINE within 5 times this.", min=0.01, max=60,
    )
    auth_cache_seconds: float = _setting(
        30.0, "How long a device's credentials are cached after a lookup; 0 disables the cache.", min=0
    )
    max_templates_per_project: int = _setting(
        10, "Most provisioning templates a project may have (IoTDA: 10).", min=1, max=10_000
    )
    max_device_cas_per_project: int = _setting(
        100, "Most device CA certificates a project may have (IoTDA: 100).", min=1, max=10_000
    )
    gateway_max_subdevices: int = _setting(
        10_000, "Most sub-devices one gateway device may create and use (ThingsBoard's gateway API).", min=1,
        max=10_000_000,
    )
    gateway_max_devices_per_message: int = _setting(
        100, "Most sub-devices one gateway message may name.", min=1, max=100_000
    )
    gateway_default_product: str = _setting(
        "default", "Product (created on first use, provisioning disabled) of a sub-device connected without a type."
    )
    device_message_retention_days: int = _setting(
        30, "Days the device message log (IoTDA's messages up and down, and events) is kept; 0 keeps it "
        "forever.", min=0,
    )
    iotda_command_timeout_seconds: float = _setting(
        20.0, "How long IoTDA's CreateCommand, UpdateProperties and ListProperties wait for the device's "
        "answer (IoTDA waits 20 s).", min=0.1, max=600,
    )
    rpc_persistent_ttl_seconds: float = _setting(
        86_400.0, "How long a persistent RPC call waits for its device to take it (then EXPIRED), when the "
        "operator gives no expiration_time.", min=1, max=31_536_000,
    )
    rpc_persistent_retries: int = _setting(
        5, "Times a persistent RPC call is sent again when the device does not answer it in time (then "
        "TIMEOUT), when the operator gives no retries (ThingsBoard's actors.rpc.max_retries).", min=0, max=100,
    )
    rpc_persistent_retention_days: int = _setting(
        30, "Days a finished persistent RPC call (SUCCESSFUL, TIMEOUT, EXPIRED, FAILED) is kept after its last "
        "change before retention deletes it (ThingsBoard's rpcTtlDays); 0 keeps them forever.", min=0,
    )
    forwarding_workers_per_action: int = _setting(
        4, "Forwarding: workers per action in each process, each delivering one lane (a sixteenth of the "
        "devices) at a time; 0 delivers nothing from this process (another replica does).", min=0, max=16,
    )
    forwarding_lease_seconds: float = _setting(
        15.0, "Forwarding: how long a worker holds a lane without renewing it; a replica that dies leaves its "
        "lanes to others after this, and what it sent without recording is sent again.", min=1,
    )
    forwarding_retry_max_seconds: float = _setting(
        60.0, "Forwarding: longest back-off between attempts of a failed delivery (from 1 s, doubling).", min=1
    )
    forwarding_max_attempts: int = _setting(
        10, "Forwarding: attempts before a notification is dead-lettered.", min=1, max=1_000_000
    )
    forwarding_max_age_seconds: float = _setting(
        86_400.0, "Forwarding: age at which a notification that still fails is dead-lettered.", min=1
    )
    forwarding_backlog_max: int = _setting(
        1_000_000, "Forwarding: undelivered notifications kept per action; beyond, the oldest are "
        "dead-lettered (a warning at 80 %).", min=1,
    )
    forwarding_gather_ms: int = _setting(
        100, "Forwarding: a worker woken by new rows waits this long before it claims them, so that one claim "
        "and one request carry many batches (forwarding's cost yields to ingestion); 0 claims at once.",
        min=0, max=10_000,
    )
    forwarding_process: bool = _setting(
        False, "Forwarding: serve delivers in a forwarder process of its own (iot-gateway forward, supervised and "
        "restarted like a worker), its gateway processes none; they tell it of new rows at most once per "
        "forwarding_gather_ms.",
    )
    forwarding_nice: int = _setting(
        0, "iot-gateway forward (and serve's forwarder with forwarding_process): niceness added to its own, so "
        "that when the CPU is short the gateway and PostgreSQL come first and the backlog waits (the lag grows "
        "then); 0 keeps it equal.", min=0, max=19,
    )
    forward_port: int = _setting(
        8082, "iot-gateway forward: its /healthz, /readyz and /metrics port; 0 disables it (the forwarder "
        "that serve runs with forwarding_process has none: the gateway's /metrics shows its figures).",
        min=0, max=65535,
    )
    live_max_connections_per_token: int = _setting(
        10, "Live feed: WebSocket connections one management token may hold open at once, per process.", min=1
    )
    live_max_subscriptions_per_connection: int = _setting(
        1_000, "Live feed: subscriptions (tsSubCmds, attrSubCmds) one WebSocket connection may hold.", min=1
    )
    live_buffer_updates: int = _setting(
        10_000, "Live feed: updates waiting for a slow WebSocket subscriber; beyond, the oldest are dropped "
        "(and counted in gateway_live_updates_dropped_total).", min=1,
    )
    shutdown_timeout_seconds: float = _setting(
        30.0, "Deadline for stopping on SIGTERM: the ingest queue drained, connections and pool closed.", min=0
    )
    telemetry_ttl_days: int = _setting(
        0, "Days telemetry is kept, for projects without their own time-to-live; 0 keeps it forever.", min=0
    )
    telemetry_layout: Literal["project-month", "month"] = _setting(
        "project-month", "Partitioning of stored telemetry chosen at a fresh installation's first start: by project "
        "then month, or by month only (for Citus or TimescaleDB; docs/scaling.md). A database with telemetry keeps "
        "its own layout; `iot-gateway admin telemetry-layout` converts it."
    )
    audit_retention_days: int = _setting(365, "Days audit records are kept; 0 keeps them forever.", min=0)
    retention_interval_seconds: float = _setting(
        3600.0, "How often retention runs (expired telemetry partitions dropped; old audit records, device "
        "messages and finished persistent RPC calls deleted); 0 disables it.", min=0
    )
    event_loop: Literal["uvloop", "asyncio"] = _setting(
        "uvloop", "Event loop: uvloop (when installed) or the standard library's asyncio."
    )
    log_level: Literal["debug", "info", "warning", "error"] = _setting("info", "Log level.")
    log_format: Literal["text", "json"] = _setting(
        "text", "Log records as text lines or as one JSON object a line (with device and request ids)."
    )

    @property
    def embedded_database(self) -> bool:
        return not self.database_url


def describe() -> list[tuple[str, str, Any, str]]:
    """(key, environment variable, default, help) for every setting, in order."""
    return [(f.name, ENV_PREFIX + f.name.upper(), f.default, f.metadata["help"]) for f in fields(Settings)]


def load(
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_file = config_file or environ.get(ENV_PREFIX + "CONFIG")
    if config_file:
        values.update(_read_toml(Path(config_file)))
    known = {f.name for f in fields(Settings)}
    for name, raw in environ.items():
        if name.startswith(ENV_PREFIX) and name != ENV_PREFIX + "CONFIG":
            suffix = name[len(ENV_PREFIX) :]
            key = suffix.lower()
            if key not in known and _SERVICE_LINK.match(suffix):
                continue
            if key not in known:
                raise ConfigError(f"unknown setting {name}")
            values[key] = raw
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return build(values)


def build(values: Mapping[str, Any]) -> Settings:
    hints = get_type_hints(Settings)
    known = {f.name: f for f in fields(Settings)}
    converted = {}
    for key, raw in values.items():
        if key not in known:
            raise ConfigError(f"unknown setting {key!r}")
        converted[key] = _convert(key, raw, hints[key], known[key].metadata)
    return dataclasses.replace(Settings(), **converted)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None
    # A [gateway] table is accepted as well as top-level keys.
    return data.get("gateway", data) if isinstance(data.get("gateway"), dict) else data


def _convert(key: str, raw: Any, hint: Any, meta: Mapping[str, Any]) -> Any:
    optional = get_origin(hint) in (types.UnionType,) and type(None) in get_args(hint)
    base = next(a for a in get_args(hint) if a is not type(None)) if optional else hint
    if optional and (raw is None or raw == ""):
        return None
    try:
        if get_origin(base) is Literal:
            if raw not in get_args(base):
                choices = ", ".join(repr(c) for c in get_args(base))
                raise ValueError(f"must be one of {choices}")
            value = raw
        elif base is bool:
            value = _bool(raw)
        elif base in (int, float):
            if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
                raise ValueError("must be a number")
            value = base(raw)
        elif base is str:
            if not isinstance(raw, str):
                raise ValueError("must be a string")
            value = raw
        else:  # pragma: no cover - every field type is handled above
            raise ValueError(f"unsupported type {base}")
    except ValueError as exc:
        raise ConfigError(f"setting {key!r}: {exc} (got {raw!r})") from None
    if "min" in meta and value < meta["min"]:
        raise ConfigError(f"setting {key!r}: must be at least {meta['min']} (got {raw!r})")
    if "max" in meta and value > meta["max"]:
        raise ConfigError(f"setting {key!r}: must be at most {meta['max']} (got {raw!r})")
    if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
        raise ConfigError(f"setting {key!r}: {meta['pattern_help']} (got {raw!r})")
    return value


def _bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if str(raw).lower() in ("1", "true", "yes", "on"):
        return True
    if str(raw).lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def markdown_table() -> str:
    """The settings table of docs/configuration.md, kept equal to it by a test."""
    rows = ["| Setting | Environment variable | Default | Meaning |", "|---|---|---|---|"]
    for key, env, default, help_text in describe():
        shown = "unset" if default is None else f"`{default}`"
        rows.append(f"| `{key}` | `{env}` | {shown} | {help_text} |")
    return "\n".join(rows)
