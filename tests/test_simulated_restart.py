"""A graceful restart under the project's own simulator: a fleet sends QoS 1 telemetry while the
gateway gets SIGTERM; the gateway is started again on the same ports and the fleet sends again.
Every data point the simulator counted as acknowledged is in PostgreSQL, and the restarted
gateway's /metrics count what the simulator sent it (tests/test_signals.py checks the restart
message by message with a client of its own)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import aiohttp

from fleetgate.simulator import fleet
from fleetgate.simulator.worker import run_load
from tests.process import GatewayProcess
from tests.support import free_port, new_tenant
from tests.metrics_support import scrape, value

DEVICES = 20
DATAPOINTS = 3


async def rows_of(gateway, product_id: str) -> int:
    return await gateway.services.pool.fetchval(
        "SELECT count(*) FROM ts_kv WHERE device_id IN (SELECT id FROM devices WHERE product_id = $1)", product_id)


async def test_a_simulated_fleet_across_a_graceful_restart(database_url, gateway, tmp_path: Path) -> None:
    tenant = await new_tenant(gateway.services)
    ports = {"management_port": free_port(), "mqtt_port": free_port(), "http_port": free_port()}
    options = fleet.FleetOptions(
        url=f"mqtt://127.0.0.1:{ports['mqtt_port']}", devices=DEVICES, provision_key=tenant.provision_key,
        provision_secret=tenant.provision_secret, provision_url=f"http://127.0.0.1:{ports['http_port']}",
        rate=20, duration=3, datapoints=DATAPOINTS, mqtt_version="5", processes=0)

    first = await GatewayProcess.start(database_url, str(tmp_path), shutdown_timeout_seconds=10, **ports)
    try:
        creds = await fleet.credentials(options, tmp_path, lambda message: None)
        assert len(creds.tokens) == DEVICES
        answered_some = asyncio.Event()

        def progress(count: int) -> None:
            if count >= 100:
                answered_some.set()

        sending = asyncio.create_task(run_load(fleet.load_spec(options, creds), 0, on_progress=progress))
        await answered_some.wait()
        assert await first.stop() == 0
        during = await sending
    finally:
        await first.kill()
    # Every connection was ended by the stop: DISCONNECT 0x8B, or closed under a message in flight.
    assert during.errors, "the restart went unnoticed"

    second = await GatewayProcess.start(database_url, str(tmp_path), shutdown_timeout_seconds=10, **ports)
    try:
        tokens = tmp_path / "tokens"
        tokens.write_text("".join(token + "\n" for token in creds.tokens))
        again = dataclasses.replace(options, tokens_file=str(tokens), credential_source="tokens",
                                    provision_key=None, provision_secret=None, duration=1)
        after = await run_load(fleet.load_spec(again, await fleet.credentials(again, tmp_path, print)), 0)
        async with aiohttp.ClientSession(f"http://127.0.0.1:{ports['management_port']}") as management:
            figures = await scrape(management)
        assert await second.stop() == 0
    finally:
        await second.kill()
    assert not after.errors and after.total_ok > 0
    # The restarted gateway's own figures are what the simulator sent it.
    assert value(figures, "gateway_messages_total", protocol="mqtt", kind="telemetry") == after.total_ok
    assert value(figures, "gateway_datapoints_total", protocol="mqtt") == after.total_ok * DATAPOINTS
    assert value(figures, "gateway_rows_stored_total") == after.total_ok * DATAPOINTS
    assert value(figures, "gateway_auth_failures_total", protocol="mqtt") == 0

    acknowledged = (during.total_ok + after.total_ok) * DATAPOINTS
    stored = await rows_of(gateway, tenant.product_id)
    # One message a device may have been in flight, stored but unanswered, when the connection ended.
    assert acknowledged <= stored <= acknowledged + DEVICES * DATAPOINTS, (acknowledged, stored, during.errors)
