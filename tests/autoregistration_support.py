"""Certificate auto-registration seen from a device and from the database: a device publishing
over MQTTS with its certificate (mosquitto_pub), the devices of a project, the audit trail."""

from __future__ import annotations

import datetime
import functools
from pathlib import Path
from typing import Any

from tests import cli_clients, pki

# Every publish here carries the reading the tests look for in ts_kv.
mosquitto_pub = functools.partial(cli_clients.mosquitto_pub, message=b'{"temperature":21}')

SUBJECT = dict(C="CN", O="Acme", OU="Meters", dnQualifier="q1", ST="ZJ", serialNumber="s1")
DAY = datetime.timedelta(days=1)


def url_of(gw: Any, name: str) -> str:
    return next(listener.url for listener in gw.listeners if listener.name == name)


async def publish_as(gw: Any, server_cert: str, device: pki.Issued, tmp_path: Path, *chain: pki.Issued,
                     version: str = "mqttv311", attempts: int = 20) -> tuple[int, str]:
    """Publish with the certificate; a device retries, as real ones do, while the gateway's trust
    anchors catch up with a CA verified a moment ago (the reload follows a NOTIFY)."""
    cert, key = device.files(tmp_path, "device-" + device.certificate.serial_number.__format__("x"), *chain)
    for _ in range(attempts):
        code, out = await mosquitto_pub(gw, server_cert, "--cert", cert, "--key", key, "-V", version)
        if code == 0 or "not authori" in out.lower():
            break
    return code, out


async def devices_in(gw: Any, project_id: str) -> list[str]:
    return [r["id"] for r in await gw.services.pool.fetch("SELECT id FROM devices WHERE project_id = $1", project_id)]


async def audit_reasons(gw: Any, project_id: str) -> list[tuple[str, str]]:
    """(outcome, reason) of each auto-registration audit record of the project, oldest first."""
    return [(r["outcome"], r["reason"]) for r in await gw.services.pool.fetch(
        "SELECT outcome, reason FROM audit_log WHERE project_id = $1 AND action = 'AUTO_REGISTER' ORDER BY id",
        project_id)]
