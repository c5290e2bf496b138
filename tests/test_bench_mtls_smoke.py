"""``iot-gateway bench mtls`` end to end with a handful of devices: CA registered through the
management API, every device registered on its first mutual-TLS connection, then reconnected
with a full handshake, then with its TLS session resumed (the gateway counts the resumptions)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent


def test_bench_mtls_registers_then_reconnects_every_device() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "fleetgate", "bench", "mtls", "--devices", "20", "--json"], cwd=ROOT,
        capture_output=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    report = orjson.loads(run.stdout)
    checks = report["checks"]
    assert (checks["devices registered"], checks["devices verified"]) == (21, True)
    # The baseline measured in the same run: a handshake alone, in memory.
    assert checks["server CPU a handshake, ms (in memory, no gateway)"] > 0
    assert checks["client CPU a handshake, ms (in memory, no gateway)"] > 0
    assert (checks["handshakes the gateway resumed"], checks["resumptions verified"]) == (20, True)
    for name in ("first_connections", "reconnections", "reconnections_resumed"):
        assert report["runs"][name]["requests"] == 20 and report["runs"][name]["error_count"] == 0
        assert report["runs"][name]["requests_per_s"] > 0
