"""The MQTT baseline: Eclipse Mosquitto (Debian's ``mosquitto`` package) as a child process.

A C broker on one thread, with no storage (``persistence false``) and no
authentication (anonymous allowed: any user name is accepted, so the gateway's
device tokens work unchanged). It answers every QoS 1 PUBLISH with a PUBACK
as soon as it has read it, so what the gateway adds on top (authentication,
decoding, the database commit before the PUBACK) is what a bench's ratio
gateway/mosquitto prices.

Configured through a file rather than ``-p PORT`` so that it listens on
127.0.0.1 only, writes its log to stderr (its "running" line is the ready
signal) and, like the gateway (uvloop sets TCP_NODELAY), sends small packets
at once: with Nagle's algorithm on, mosquitto's PUBACKs wait for the client's
delayed ACK and an open loop measures 40 ms stalls, not the broker.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from fleetgate.simulator.processes import RunningServer, free_port, server_process

# Debian installs the broker in /usr/sbin, which is not on every user's PATH.
_FALLBACK_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


class MosquittoMissing(Exception):
    """The mosquitto binary is not installed."""


def mosquitto_path() -> str | None:
    """The mosquitto binary, or None when it is not installed."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((p for p in _FALLBACK_PATHS if os.access(p, os.X_OK)), None)


def config_text(port: int, host: str = "127.0.0.1", extra: Sequence[str] = ()) -> str:
    return "\n".join((
        f"listener {port} {host}",
        "allow_anonymous true",
        "persistence false",
        "set_tcp_nodelay true",
        "max_keepalive 65535",
        "log_dest stderr",  # unbuffered, unlike its stdout on a pipe
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",  # the "running" line (and one per connection)
        *extra,
        "",
    ))


@contextlib.asynccontextmanager
async def mosquitto(
    work_dir: Path, *, port: int | None = None, extra_config: Sequence[str] = ()
) -> AsyncIterator[RunningServer]:
    """Run mosquitto on 127.0.0.1 until the block ends; the server's listener is named ``mqtt``.

    ``extra_config``: more lines for its configuration file (later lines win).
    """
    binary = mosquitto_path()
    if binary is None:
        raise MosquittoMissing(
            "mosquitto is not installed (Debian: apt-get install mosquitto; .ci/run installs it)"
        )
    port = port or free_port()
    config = work_dir / f"mosquitto-{port}.conf"
    config.write_text(config_text(port, extra=extra_config))
    url = f"mqtt://127.0.0.1:{port}"

    def ready(line: str) -> tuple[str, str] | None:
        return ("mqtt", url) if line.endswith(" running") and "mosquitto version" in line else None

    async with server_process(
        "mosquitto", [binary, "-c", str(config)], log_file=work_dir / "mosquitto.log", listeners=("mqtt",),
        ready_line=ready, stderr_too=True,
    ) as server:
        yield server
