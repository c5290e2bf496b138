"""The ingest writer: each batch COPYed straight into ts_kv, one statement, one transaction.

Rows are keyed like ThingsBoard's ts_kv (device, key, ts) and the last write
wins, so a batch retried after an ambiguous commit leaves the same rows. Client
attributes of the batch are upserted in the same transaction. Latest values are
not kept apart: they are read from ts_kv (migration 0003 says why).

Fast path: a batch is almost always made of new rows, so it is COPYed into ts_kv
with no conflict handling: no staging table, no ON CONFLICT (which searches the
index twice a row and writes one more WAL record), no de-duplication here, and no
transaction block (the COPY commits on its own). If a row is there already (a
batch retried after an ambiguous commit, a device sending a timestamp again), the
COPY fails as a whole and the batch is written again by the upsert path, which
stages the rows and merges them; that path is then kept for a while, so that a
device that keeps repeating itself costs one failed COPY a period, not one a
batch. Measured on the project's 2-core machine (5,000-row batches, one
connection): 3.2 microseconds of PostgreSQL time a row; and one round trip a
batch instead of five (BEGIN, COPY, upserts, COMMIT), each of which waits for a
turn of a busy event loop.

Each row carries its device's project number (ts_kv is partitioned by project, then
by month: migration 0006; or by month only in the ``month`` layout, storage/telemetry_layout.py,
where the number is a column like any other): one dict lookup a message, in a per-process cache of device
id -> project number. A message of a device no longer registered has its rows left
out: deleting a device deletes its telemetry, and its project is not known any more.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import asyncpg

from fleetgate.core.errors import Unavailable
from fleetgate.core.telemetry_model import AttributeMessage, KeyValue, TelemetryMessage, ValueType
from fleetgate.storage.database import discard
from fleetgate.storage.errors import translated
from fleetgate.storage.forwarding_outbox import COLUMNS as _OUTBOX_COLUMNS, TelemetryOutbox
from fleetgate.storage.kept_connections import KeptConnections
from fleetgate.storage.month_partitions import MonthPartitions
from fleetgate.storage.partitions import Partitions
from fleetgate.storage.telemetry_layout import Layout

_COLUMNS = ("device_id", "key", "ts", "project_no", "bool_v", "long_v", "dbl_v", "str_v", "json_v")
# After a batch met rows already stored, the upsert path is used this long.
_UPSERT_PERIOD = 1.0
# How long a device's project number is trusted: a deleted device's id may be
# registered again in another project (a template's device_id), and the cache should
# not keep every device ever deleted. Looking them up again costs a query a batch for
# the first batches after.
_DEVICE_PROJECT_SECONDS = 3600.0

_UPSERT_TS = """
INSERT INTO ts_kv (device_id, key, ts, project_no, bool_v, long_v, dbl_v, str_v, json_v)
SELECT device_id, key, ts, project_no, bool_v, long_v, dbl_v, str_v, json_v::jsonb FROM ts_kv_stage
ON CONFLICT (device_id, key, ts, project_no) DO UPDATE SET
    bool_v = EXCLUDED.bool_v, long_v = EXCLUDED.long_v, dbl_v = EXCLUDED.dbl_v,
    str_v = EXCLUDED.str_v, json_v = EXCLUDED.json_v"""

_UPSERT_ATTRIBUTES = """
INSERT INTO attribute_kv (device_id, scope, key, last_update_ts, bool_v, long_v, dbl_v, str_v, json_v)
SELECT d, s, k, t, b, l, f, v, j::jsonb
FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::boolean[], $6::bigint[],
            $7::double precision[], $8::text[], $9::text[]) AS u(d, s, k, t, b, l, f, v, j)
ON CONFLICT (device_id, scope, key) DO UPDATE SET
    last_update_ts = EXCLUDED.last_update_ts, bool_v = EXCLUDED.bool_v, long_v = EXCLUDED.long_v,
    dbl_v = EXCLUDED.dbl_v, str_v = EXCLUDED.str_v, json_v = EXCLUDED.json_v
WHERE EXCLUDED.last_update_ts >= attribute_kv.last_update_ts"""


def typed_columns(kv: KeyValue) -> tuple[object, object, object, object, object]:
    """(bool_v, long_v, dbl_v, str_v, json_v) with exactly one set."""
    match kv.type:
        case ValueType.BOOLEAN:
            return kv.value, None, None, None, None
        case ValueType.LONG:
            return None, kv.value, None, None, None
        case ValueType.DOUBLE:
            return None, None, kv.value, None, None
        case ValueType.STRING:
            return None, None, None, kv.value, None
        case _:
            return None, None, None, None, kv.value


def column_value(record: asyncpg.Record) -> object:
    """The one non-null value column of a row."""
    for column in ("bool_v", "long_v", "dbl_v", "str_v", "json_v"):
        if record[column] is not None:
            return record[column]
    return None


class KeyDictionary:
    """Key name -> key id, cached for the process's lifetime (keys are never removed)."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    @property
    def ids(self) -> Mapping[str, int]:
        """The keys resolved so far."""
        return self._ids

    async def resolve(self, pool: asyncpg.Pool | asyncpg.Connection, keys: set[str]) -> Mapping[str, int]:
        missing = [k for k in keys if k not in self._ids]
        if missing:
            await pool.execute(
                "INSERT INTO key_dictionary (key) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING", missing
            )
            for record in await pool.fetch(
                "SELECT key, key_id FROM key_dictionary WHERE key = ANY($1::text[])", missing
            ):
                self._ids[record["key"]] = record["key_id"]
        return self._ids


class DeviceProjects:
    """Device id -> its project's number (projects.no), cached a while (``_DEVICE_PROJECT_SECONDS``).

    Keyed by device rather than project because that is what a message carries. A device
    never changes project, and a project is never renumbered.
    """

    def __init__(self, max_age: float = _DEVICE_PROJECT_SECONDS) -> None:
        self._numbers: dict[str, int] = {}
        self._max_age = max_age
        self._until = time.monotonic() + max_age

    @property
    def numbers(self) -> Mapping[str, int]:
        """The devices resolved so far."""
        if time.monotonic() >= self._until:
            # A new dict, not clear(): a batch holding the old one keeps a consistent view.
            self._numbers = {}
            self._until = time.monotonic() + self._max_age
        return self._numbers

    async def resolve(self, pool: asyncpg.Pool | asyncpg.Connection, devices: set[str]) -> Mapping[str, int]:
        """Looks up the devices not known yet; one not registered stays unknown."""
        missing = [d for d in devices if d not in self._numbers]
        if missing:
            found = {r["id"]: r["no"] for r in await pool.fetch(
                "SELECT d.id, p.no FROM devices d JOIN projects p ON p.id = d.project_id WHERE d.id = ANY($1::text[])",
                missing,
            )}
            # Keyed by the messages' own strings, which the device's session holds anyway.
            self._numbers.update((d, found[d]) for d in missing if d in found)
        return self._numbers


class TelemetryWriter:
    def __init__(
        self, pool: asyncpg.Pool, keys: KeyDictionary, projects: DeviceProjects | None = None,
        outbox: TelemetryOutbox | None = None, layout: Layout = Layout.PROJECT_MONTH, kept: int = 0,
    ) -> None:
        """``kept``: connections kept between batches (storage/kept_connections.py), at most as
        many as batches are written at once; 0 hands each back to the pool."""
        self._pool = pool
        self._connections = KeptConnections(pool, kept)
        # Forwarding's outbox rows, when a rule wants the batch: written in its transaction.
        self._outbox = outbox
        self._keys = keys
        self._projects = projects or DeviceProjects()
        # The database's layout (storage/telemetry_layout.py), read once at start: converting
        # it needs every gateway stopped.
        self._partitions = MonthPartitions() if layout is Layout.MONTH else Partitions()
        self._upsert_until = 0.0  # time.monotonic() until which batches take the upsert path
        self._batch_projects: Mapping[str, int] = {}

    async def write(self, telemetry: Sequence[TelemetryMessage], attributes: Sequence[AttributeMessage]) -> None:
        with translated():
            rows: list[tuple[object, ...]] = []
            notes: list[tuple[object, ...]] = []
            if telemetry:
                rows = await self._rows(telemetry)
                if self._outbox is not None and self._outbox.active:
                    notes = self._outbox.records(telemetry, self._batch_projects)
            conn = await self._connections.take()
            try:
                await self._write_on(conn, rows, attributes, notes)
            except BaseException as exc:
                if isinstance(exc, (asyncpg.InterfaceError, asyncpg.InternalClientError)):
                    # The connection's protocol state is unknown (a COPY cut short by a
                    # terminated backend): close it, so that the pool never hands it out again.
                    discard(conn)
                await self._connections.give_back(conn)
                raise
            if not self._connections.keep(conn):
                await self._connections.give_back(conn)
            if notes:
                self._outbox.committed(notes)  # type: ignore[union-attr]

    async def close(self) -> None:
        """Hand the kept connections back to the pool: after the last write, before the pool closes."""
        await self._connections.close()

    async def _write_on(
        self, conn: asyncpg.Connection, rows: list[tuple[object, ...]], attributes: Sequence[AttributeMessage],
        notes: list[tuple[object, ...]],
    ) -> None:
        if rows and time.monotonic() >= self._upsert_until:
            try:
                await self._copy(conn, rows, attributes, notes)
                return
            except asyncpg.UniqueViolationError:
                self._upsert_until = time.monotonic() + _UPSERT_PERIOD
            except asyncpg.CheckViolationError:
                raise self._partition_dropped() from None
        try:
            await self._upsert(conn, rows, attributes, notes)
        except asyncpg.CheckViolationError:
            raise self._partition_dropped() from None

    def _partition_dropped(self) -> Unavailable:
        """A row fell in no partition: retention dropped one this process knew. Forget them
        all; the retry makes what it needs again."""
        self._partitions.forget()
        return Unavailable("a telemetry partition was dropped meanwhile")

    async def _rows(self, telemetry: Sequence[TelemetryMessage]) -> list[tuple[object, ...]]:
        """The batch's rows, in order, duplicates included; their keys and partitions made."""
        numbers = self._projects.numbers
        try:
            rows, projects, lowest, highest = _rows(telemetry, self._keys.ids, numbers)
        except KeyError:  # a key or device never seen by this process: rare, so looked up only then
            names = {kv.key for m in telemetry for r in m.readings for kv in r.values}
            ids = await self._keys.resolve(self._pool, names)
            numbers = await self._projects.resolve(self._pool, {m.device_id for m in telemetry})
            rows, projects, lowest, highest = _rows(telemetry, ids, numbers, strict=False)
        if rows and not self._partitions.cover(projects, lowest, highest):
            await self._partitions.ensure(self._pool, {
                (numbers[m.device_id], r.ts) for m in telemetry if m.device_id in numbers for r in m.readings})
        self._batch_projects = numbers  # what the outbox rows of this batch are matched with
        return rows

    async def _copy(
        self, conn: asyncpg.Connection, rows: list[tuple[object, ...]], attributes: Sequence[AttributeMessage],
        notes: list[tuple[object, ...]],
    ) -> None:
        if not attributes and not notes:
            # One statement outside a transaction block commits on its own, triggers
            # included: the batch is durable when the COPY returns.
            await conn.copy_records_to_table("ts_kv", records=rows, columns=_COLUMNS)
            return
        async with conn.transaction():
            await conn.copy_records_to_table("ts_kv", records=rows, columns=_COLUMNS)
            if notes:
                await conn.copy_records_to_table("forwarding_outbox", records=notes, columns=_OUTBOX_COLUMNS)
            if attributes:
                await conn.execute(_UPSERT_ATTRIBUTES, *_attribute_columns(attributes))

    async def _upsert(
        self, conn: asyncpg.Connection, rows: list[tuple[object, ...]], attributes: Sequence[AttributeMessage],
        notes: list[tuple[object, ...]] = (),  # type: ignore[assignment]
    ) -> None:
        """Stage the rows, then merge them: later rows win over earlier ones and over stored ones."""
        if not rows:
            if attributes:
                await conn.execute(_UPSERT_ATTRIBUTES, *_attribute_columns(attributes))
            return
        # One INSERT ... ON CONFLICT may not touch a row twice: the last of the batch's
        # rows for a (device, key, ts) is kept (a device is in one project).
        unique = list({row[:3]: row for row in rows}.values())
        async with conn.transaction():
            await conn.copy_records_to_table("ts_kv_stage", records=unique, columns=_COLUMNS)
            await conn.execute(_UPSERT_TS)
            if notes:
                await conn.copy_records_to_table("forwarding_outbox", records=notes, columns=_OUTBOX_COLUMNS)
            if attributes:
                await conn.execute(_UPSERT_ATTRIBUTES, *_attribute_columns(attributes))


def _rows(
    telemetry: Sequence[TelemetryMessage], ids: Mapping[str, int], projects: Mapping[str, int], *, strict: bool = True
) -> tuple[list[tuple[object, ...]], set[int], int, int]:
    """(rows, project numbers, lowest ts, highest ts). Raises KeyError for a key not in
    ``ids``, and, if ``strict``, for a device not in ``projects``; else leaves its rows out.

    This loop runs for every row the gateway stores: one tuple a row, typed_columns()
    inlined, the project looked up once a message and the timestamp range kept per reading.
    """
    rows: list[tuple[object, ...]] = []
    append = rows.append
    numbers: set[int] = set()
    lowest, highest = 1 << 63, -(1 << 63)
    double, long, boolean, string = ValueType.DOUBLE, ValueType.LONG, ValueType.BOOLEAN, ValueType.STRING
    for message in telemetry:
        device = message.device_id
        no = projects.get(device)
        if no is None:
            if strict:
                raise KeyError(device)
            continue
        numbers.add(no)
        for reading in message.readings:
            ts = reading.ts
            if ts < lowest:
                lowest = ts
            if ts > highest:
                highest = ts
            for kv in reading.values:
                kind = kv.type
                if kind is double:
                    append((device, ids[kv.key], ts, no, None, None, kv.value, None, None))
                elif kind is long:
                    append((device, ids[kv.key], ts, no, None, kv.value, None, None, None))
                elif kind is boolean:
                    append((device, ids[kv.key], ts, no, kv.value, None, None, None, None))
                elif kind is string:
                    append((device, ids[kv.key], ts, no, None, None, None, kv.value, None))
                else:
                    append((device, ids[kv.key], ts, no, None, None, None, None, kv.value))
    return rows, numbers, lowest, highest


def _attribute_columns(messages: Sequence[AttributeMessage]) -> list[list[object]]:
    unique: dict[tuple[str, str, str], tuple[object, ...]] = {}
    for message in messages:
        for kv in message.values:
            unique[(message.device_id, message.scope.value, kv.key)] = (
                message.device_id, message.scope.value, kv.key, message.ts, *typed_columns(kv),
            )
    return [list(column) for column in zip(*unique.values())]
