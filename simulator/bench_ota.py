"""The bench's OTA scenario: one package downloaded by many MQTT devices at once.

ota
    The gateway with its MQTT and management listeners on; --devices devices
    provisioned over HTTP; one package of --package-bytes random bytes uploaded
    through the management API and assigned to their product. Every device
    connects, then all start at once and fetch the package in --chunk-bytes
    chunks as ThingsBoard's SDK does (simulator.ota_download): the next chunk is
    asked for when the last one came. The figures are chunks and megabytes a
    second from the start until the last device has its package, each device's
    SHA-256 of what it got checked against the package's, and the gateway's
    VmRSS before, at its highest while the devices download (read every 0.2 s)
    and after. The bound: the package's blocks are read once into a shared cache
    and a device holds one chunk at a time, so the RSS must grow by far less than
    the package size times the devices. The baseline, run the same way in the
    same run: a bare asyncio MQTT responder in the bench process serving the same
    package from memory (no database, no authentication, no limits).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from fleetgate.simulator.bench_options import BenchOptions
from fleetgate.simulator.bench_workspace import (
    BenchError, Workspace, admin, context, gateway_server, new_tenant, progress, provision_devices,
)
from fleetgate.simulator.ota_download import DownloadResult, download, responder
from fleetgate.simulator.processes import free_port, resident_kib
from fleetgate.simulator.report import BenchReport, Ratio, Target

_SAMPLE_SECONDS = 0.2
# The gateway may grow by this share of package size x devices at most while they download.
TARGET_RSS_SHARE = 0.10


async def ota(options: BenchOptions, space: Workspace) -> BenchReport:
    package = secrets.token_bytes(options.package_bytes)
    tenant = await new_tenant(space)
    token = await admin(space, "create-token", "--project", tenant.project_id)
    rate = options.package_bytes / options.chunk_bytes * 10 + 100  # no device should meet the per-device limit
    async with gateway_server(space, mqtt=True, listeners=("management",), management_port=free_port(),
                              ota_max_package_bytes=max(options.package_bytes, 64 * 1024 * 1024),
                              ota_chunk_rate_per_device=rate) as server:
        tokens = await provision_devices(server, tenant, options.devices)
        await _publish_package(server.urls["management"], tenant.project_id, tenant.product_id, token, package)
        host, port = server.endpoint("mqtt")
        before = resident_kib(server.pid)
        progress(f"{options.devices} devices download {options.package_bytes:,} bytes in {options.chunk_bytes:,}-byte "
                 f"chunks; gateway RSS {before / 1024:.0f} MB")
        async with _highest_rss(server.pid) as highest:
            gateway = await download(host, port, tokens, package, options.chunk_bytes, options.duration)
        after = resident_kib(server.pid)
        progress(f"gateway: {gateway.chunks_per_s:,.0f} chunks/s, {gateway.mb_per_s:,.1f} MB/s, "
                 f"RSS {before / 1024:.0f} -> {highest[0] / 1024:.0f} (highest) -> {after / 1024:.0f} MB")
    server_ = await responder(package)
    try:
        port = server_.sockets[0].getsockname()[1]
        baseline = await download("127.0.0.1", port, tuple(f"b{i}" for i in range(options.devices)), package,
                                  options.chunk_bytes, options.duration)
    finally:
        server_.close()
        await server_.wait_closed()
    progress(f"baseline: {baseline.chunks_per_s:,.0f} chunks/s, {baseline.mb_per_s:,.1f} MB/s")
    return _report(options, space, gateway, baseline, (before, highest[0], after))


async def _publish_package(url: str, project_id: str, product_id: str, token: str, package: bytes) -> None:
    headers = {"X-Auth-Token": token}
    async with aiohttp.ClientSession(url, headers=headers) as session:
        async with session.post(f"/v5/iot/{project_id}/ota-upgrades/packages", data=package,
                                params={"type": "FIRMWARE", "title": "bench", "version": "1"}) as resp:
            body: dict[str, Any] = await resp.json()
            if resp.status != 201:
                raise BenchError(f"the package upload was refused: {body}")
        async with session.put(f"/v5/iot/{project_id}/products/{product_id}/ota-packages/FIRMWARE",
                               json={"package_id": body["package_id"]}) as resp:
            if resp.status != 200:
                raise BenchError(f"the package assignment was refused: {await resp.text()}")


@contextlib.asynccontextmanager
async def _highest_rss(pid: int) -> AsyncIterator[list[int]]:
    """The process's highest VmRSS (KiB) while the block runs, read every _SAMPLE_SECONDS."""
    highest = [resident_kib(pid)]

    async def sample() -> None:
        while True:
            await asyncio.sleep(_SAMPLE_SECONDS)
            highest[0] = max(highest[0], resident_kib(pid))

    task = asyncio.ensure_future(sample())
    try:
        yield highest
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        highest[0] = max(highest[0], resident_kib(pid))


def _report(options: BenchOptions, space: Workspace, gateway: DownloadResult, baseline: DownloadResult,
            rss: tuple[int, int, int]) -> BenchReport:
    before, highest, after = rss
    naive_kib = options.package_bytes * options.devices / 1024  # every device's package held at once
    growth = max(0, highest - before)
    share = gateway.chunks_per_s / baseline.chunks_per_s if baseline.chunks_per_s else 0.0
    checks: dict[str, object] = {
        "gateway: chunks/s": round(gateway.chunks_per_s),
        "gateway: MB/s": round(gateway.mb_per_s, 1),
        "gateway: seconds until the last device had its package": round(gateway.seconds, 2),
        "baseline: chunks/s": round(baseline.chunks_per_s),
        "baseline: MB/s": round(baseline.mb_per_s, 1),
        "gateway RSS before (MB)": round(before / 1024, 1),
        "gateway RSS highest while downloading (MB)": round(highest / 1024, 1),
        "gateway RSS after (MB)": round(after / 1024, 1),
        "gateway errors": dict(gateway.errors),
        "baseline errors": dict(baseline.errors),
        "downloads verified": gateway.verified == options.devices and not gateway.errors,
        "baseline downloads verified": baseline.verified == options.devices,
    }
    return BenchReport(
        scenario="ota",
        title=(f"iot-gateway bench ota: {options.devices} MQTT devices download one {options.package_bytes:,}-byte "
               f"package at once in {options.chunk_bytes:,}-byte chunks (time cap {options.duration:g} s)"),
        context=context(options, space, package_bytes=options.package_bytes, chunk_bytes=options.chunk_bytes),
        runs=(),
        ratios=(Ratio("gateway / bare asyncio responder, chunks/s", share),),
        targets=(Target(
            "bounded memory", f"RSS growth < {TARGET_RSS_SHARE:.0%} of package size x devices "
                              f"({naive_kib / 1024:,.0f} MB)",
            f"{growth / 1024:,.1f} MB", growth < TARGET_RSS_SHARE * naive_kib,
        ),),
        checks=checks,
        notes=("the baseline runs in the bench process, beside the load generator: it shares its core",),
        unit="chunks",
    )
