"""OTA packages in PostgreSQL (fleetgate.core.ports.OtaStore): packages in 64 KiB blocks,
assignments to products and devices, and each device's reported progress."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import asyncpg

from fleetgate.core.errors import NotFound
from fleetgate.core.model import Page
from fleetgate.core.ota_checksums import ChecksumAlgorithm
from fleetgate.core.ota_model import (
    Assignment, DeviceOtaState, OtaPackage, OtaState, OtaType, PackageInUse, PackageTaken, Report,
    attribute_keys,
)
from fleetgate.storage.errors import translated
from fleetgate.storage.pages import fetch_page
from fleetgate.storage.telemetry import typed_columns

_SET_ATTRIBUTES = """
    INSERT INTO attribute_kv (device_id, scope, key, last_update_ts, bool_v, long_v, dbl_v, str_v, json_v)
    SELECT d, 'SHARED_SCOPE', k.key, $2, k.bool_v, k.long_v, k.dbl_v, k.str_v, NULL
    FROM unnest($1::text[]) AS d
    CROSS JOIN unnest($3::text[], $4::boolean[], $5::bigint[], $6::double precision[], $7::text[])
        AS k(key, bool_v, long_v, dbl_v, str_v)
    ON CONFLICT (device_id, scope, key) DO UPDATE SET
        last_update_ts = EXCLUDED.last_update_ts, bool_v = EXCLUDED.bool_v, long_v = EXCLUDED.long_v,
        dbl_v = EXCLUDED.dbl_v, str_v = EXCLUDED.str_v, json_v = NULL"""
# A product's devices that take its package: those without their own of the type.
_PRODUCT_DEVICES = """
    SELECT d.id FROM devices d
    WHERE d.product_id = $1 AND NOT EXISTS (
        SELECT 1 FROM ota_device_packages dp WHERE dp.device_id = d.id AND dp.type = $2)"""
_ASSIGNED_ID = """
    SELECT COALESCE(dp.package_id, pp.package_id) AS package_id, dp.package_id IS NOT NULL AS from_device
    FROM devices d
    LEFT JOIN ota_device_packages dp ON dp.device_id = d.id AND dp.type = $2
    LEFT JOIN ota_product_packages pp ON pp.product_id = d.product_id AND pp.type = $2
    WHERE d.id = $1"""


def _package(r: asyncpg.Record) -> OtaPackage:
    return OtaPackage(
        r["id"], r["project_id"], OtaType(r["type"]), r["title"], r["version"], r["size"],
        ChecksumAlgorithm(r["checksum_algorithm"]), r["checksum"], r["content_type"], r["file_name"],
        r["created_at"],
    )


class _Writer:
    def __init__(self, conn: asyncpg.Connection, package_id: str) -> None:
        self._conn = conn
        self._id = package_id

    async def append(self, seq: int, data: bytes) -> None:
        with translated():
            await self._conn.execute(
                "INSERT INTO ota_package_blocks (package_id, seq, data) VALUES ($1, $2, $3)", self._id, seq, data
            )

    async def finish(self, package: OtaPackage) -> None:
        with translated():
            await self._conn.execute(
                "UPDATE ota_packages SET size = $2, checksum = $3 WHERE id = $1", self._id, package.size,
                package.checksum,
            )


class OtaStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # packages

    @asynccontextmanager
    async def writing(self, package: OtaPackage) -> AsyncIterator[_Writer]:
        with translated():
            async with self._pool.acquire() as conn, conn.transaction():
                try:
                    await conn.execute(
                        """INSERT INTO ota_packages (id, project_id, type, title, version, size, checksum_algorithm,
                                                     checksum, content_type, file_name, created_at)
                           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)""",
                        package.id, package.project_id, package.type.value, package.title, package.version,
                        package.size, package.checksum_algorithm.value, package.checksum, package.content_type,
                        package.file_name, package.created_at,
                    )
                except asyncpg.UniqueViolationError:
                    raise PackageTaken(
                        f"The project has a {package.type.value} package {package.title} {package.version} already"
                    ) from None
                except asyncpg.ForeignKeyViolationError:
                    raise NotFound(f"Project {package.project_id} does not exist") from None
                yield _Writer(conn, package.id)

    async def package(self, project_id: str, package_id: str) -> OtaPackage | None:
        with translated():
            r = await self._pool.fetchrow(
                "SELECT * FROM ota_packages WHERE project_id = $1 AND id = $2", project_id, package_id
            )
        return None if r is None else _package(r)

    async def list_packages(
        self, project_id: str, kind: OtaType | None, limit: int, marker: str, offset: int
    ) -> Page:
        where, args = "project_id = $1", [project_id]
        if kind is not None:
            where, args = where + " AND type = $2", [project_id, kind.value]
        with translated():
            return await fetch_page(self._pool, "ota_packages", where, args, limit, marker, offset, _package)

    async def delete_package(self, project_id: str, package_id: str) -> bool:
        with translated():
            try:
                status = await self._pool.execute(
                    "DELETE FROM ota_packages WHERE project_id = $1 AND id = $2", project_id, package_id
                )
            except (asyncpg.ForeignKeyViolationError, asyncpg.RestrictViolationError):
                raise PackageInUse() from None
        return status == "DELETE 1"

    async def read_blocks(self, package_id: str, first: int, last: int) -> list[bytes]:
        with translated():
            records = await self._pool.fetch(
                "SELECT data FROM ota_package_blocks WHERE package_id = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq",
                package_id, first, last,
            )
        return [r["data"] for r in records]

    # assignments

    async def assign(self, project_id: str, target: str, target_id: str, package: OtaPackage, ts: int) -> list[str]:
        kind = package.type.value
        with translated():
            async with self._pool.acquire() as conn, conn.transaction():
                if target == "product":
                    await _require(conn, "products", project_id, target_id, "Product")
                    await conn.execute(
                        """INSERT INTO ota_product_packages (product_id, type, package_id) VALUES ($1, $2, $3)
                           ON CONFLICT (product_id, type) DO UPDATE SET package_id = EXCLUDED.package_id""",
                        target_id, kind, package.id,
                    )
                    devices = [r["id"] for r in await conn.fetch(_PRODUCT_DEVICES, target_id, kind)]
                else:
                    await _require(conn, "devices", project_id, target_id, "Device")
                    await conn.execute(
                        """INSERT INTO ota_device_packages (device_id, type, package_id) VALUES ($1, $2, $3)
                           ON CONFLICT (device_id, type) DO UPDATE SET package_id = EXCLUDED.package_id""",
                        target_id, kind, package.id,
                    )
                    devices = [target_id]
                await _set_attributes(conn, devices, package, ts)
        return devices

    async def unassign(
        self, project_id: str, target: str, target_id: str, kind: OtaType, ts: int
    ) -> tuple[list[str], OtaPackage | None]:
        with translated():
            async with self._pool.acquire() as conn, conn.transaction():
                now: OtaPackage | None = None
                if target == "product":
                    await _require(conn, "products", project_id, target_id, "Product")
                    removed = await conn.execute(
                        "DELETE FROM ota_product_packages WHERE product_id = $1 AND type = $2", target_id, kind.value
                    )
                    devices = [r["id"] for r in await conn.fetch(_PRODUCT_DEVICES, target_id, kind.value)]
                else:
                    await _require(conn, "devices", project_id, target_id, "Device")
                    removed = await conn.execute(
                        "DELETE FROM ota_device_packages WHERE device_id = $1 AND type = $2", target_id, kind.value
                    )
                    devices = [target_id]
                    row = await conn.fetchrow(_ASSIGNED_ID, target_id, kind.value)
                    if row is not None and row["package_id"] is not None:
                        now = _package(await conn.fetchrow("SELECT * FROM ota_packages WHERE id = $1",
                                                           row["package_id"]))
                if removed == "DELETE 0":
                    raise NotFound(f"No {kind.value.lower()} is assigned to this {target}")
                if now is not None:
                    await _set_attributes(conn, devices, now, ts)
                else:
                    await conn.execute(
                        """DELETE FROM attribute_kv WHERE device_id = ANY($1::text[]) AND scope = 'SHARED_SCOPE'
                           AND key = ANY($2::text[])""",
                        devices, list(attribute_keys(kind)),
                    )
        return devices, now

    async def assigned(self, device_id: str, kind: OtaType) -> Assignment | None:
        with translated():
            r = await self._pool.fetchrow(
                f"""SELECT p.*, a.from_device FROM ({_ASSIGNED_ID}) a JOIN ota_packages p ON p.id = a.package_id""",
                device_id, kind.value,
            )
        return None if r is None else Assignment(_package(r), r["from_device"])

    # progress

    async def device_states(self, device_id: str) -> Sequence[DeviceOtaState]:
        with translated():
            records = await self._pool.fetch(
                "SELECT * FROM ota_device_states WHERE device_id = $1 ORDER BY type", device_id
            )
        return [
            DeviceOtaState(
                r["device_id"], OtaType(r["type"]), r["package_id"],
                OtaState(r["state"]) if r["state"] else None, r["error"], r["current_title"],
                r["current_version"], r["updated_at"],
            )
            for r in records
        ]

    async def save_report(self, device_id: str, kind: OtaType, report: Report) -> None:
        # Reports of one device may be saved out of order: an older one changes nothing.
        with translated():
            await self._pool.execute(
                f"""INSERT INTO ota_device_states AS s (device_id, type, package_id, state, error, current_title,
                                                        current_version, updated_at)
                    SELECT $1, $2, a.package_id, $3, COALESCE($4, ''), $5, $6, $7 FROM ({_ASSIGNED_ID}) a
                    ON CONFLICT (device_id, type) DO UPDATE SET
                        package_id = EXCLUDED.package_id, state = COALESCE($3, s.state),
                        error = COALESCE($4, s.error), current_title = COALESCE($5, s.current_title),
                        current_version = COALESCE($6, s.current_version), updated_at = EXCLUDED.updated_at
                    WHERE s.updated_at <= EXCLUDED.updated_at""",
                device_id, kind.value, report.state.value if report.state else None, report.error,
                report.current_title, report.current_version, report.ts,
            )

    async def state_counts(self, package_id: str) -> dict[str, int]:
        with translated():
            records = await self._pool.fetch(
                """SELECT state, count(*) AS n FROM ota_device_states
                   WHERE package_id = $1 AND state IS NOT NULL GROUP BY state""",
                package_id,
            )
        return {r["state"]: r["n"] for r in records}

    async def state_totals(self) -> dict[tuple[OtaType, str], int]:
        with translated():
            records = await self._pool.fetch(
                "SELECT type, state, count(*) AS n FROM ota_device_states WHERE state IS NOT NULL GROUP BY type, state")
        return {(OtaType(r["type"]), r["state"]): r["n"] for r in records}


async def _require(conn: asyncpg.Connection, table: str, project_id: str, target_id: str, what: str) -> None:
    if await conn.fetchval(f"SELECT 1 FROM {table} WHERE id = $1 AND project_id = $2", target_id, project_id) is None:
        raise NotFound(f"{what} {target_id} does not exist")


async def _set_attributes(conn: asyncpg.Connection, devices: list[str], package: OtaPackage, ts: int) -> None:
    if not devices:
        return
    values = package.shared_attributes()
    columns = [typed_columns(kv) for kv in values]
    await conn.execute(
        _SET_ATTRIBUTES, devices, ts, [kv.key for kv in values], [c[0] for c in columns], [c[1] for c in columns],
        [c[2] for c in columns], [c[3] for c in columns],
    )
