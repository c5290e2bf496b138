"""Retention of persistent RPC calls (ThingsBoard's rpcTtlDays): a call that is over, or expired,
is deleted once older than rpc_persistent_retention_days; a call still waiting for its device is
kept whatever its age."""

from __future__ import annotations

from fleetgate.core import metrics
from fleetgate.core.ids import new_id
from fleetgate.core.retention import Retention
from fleetgate.core.rpc_calls import PersistentCall, RpcStatus
from fleetgate.storage.persistent_rpc import PersistentRpcStore
from fleetgate.storage.retention import RetentionStore
from tests.retention_support import DAY, NOW, FixedClock, isolated, project_with_device  # noqa: F401 (a fixture)


async def call_of(store: PersistentRpcStore, device_id: str, status: RpcStatus, updated_at: int,
                  expiration_time: int = NOW + DAY) -> str:
    call = PersistentCall(new_id(), device_id, "m", None, False, 1000, expiration_time, 0, created_at=updated_at - DAY)
    await store.add_call(call)
    await store.settle(call.id, status, frozenset((RpcStatus.QUEUED,)), updated_at)
    return call.id


async def test_calls_over_and_older_than_their_time_to_live_are_deleted_and_counted(isolated) -> None:  # noqa: F811
    pool = isolated
    _, device_id = await project_with_device(pool, None)
    store = PersistentRpcStore(pool)
    old, recent = NOW - 8 * DAY, NOW - 6 * DAY
    gone = [await call_of(store, device_id, status, old)
            for status in (RpcStatus.SUCCESSFUL, RpcStatus.TIMEOUT, RpcStatus.EXPIRED, RpcStatus.FAILED)]
    # Still pending, but its expiration time passed longer ago than the time-to-live: nothing sends it.
    gone.append(await call_of(store, device_id, RpcStatus.QUEUED, old, expiration_time=old))
    kept = [
        await call_of(store, device_id, RpcStatus.SUCCESSFUL, recent),
        await call_of(store, device_id, RpcStatus.QUEUED, old, expiration_time=NOW + DAY),  # waits for its device
        await call_of(store, device_id, RpcStatus.DELIVERED, old, expiration_time=recent),
    ]
    before = metrics.RETENTION_DELETED.labels("rpc_calls")._value.get()

    retention = Retention(RetentionStore(pool, 0, 0, rpc_retention_days=7), interval=3600, clock=FixedClock(NOW))
    outcome = await retention.run_once()

    assert outcome.rpc_calls_deleted == len(gone)
    left = {r["id"] for r in await pool.fetch("SELECT id FROM rpc_calls WHERE device_id = $1", device_id)}
    assert left == set(kept)
    assert metrics.RETENTION_DELETED.labels("rpc_calls")._value.get() == before + len(gone)


async def test_a_time_to_live_of_0_keeps_every_call(isolated) -> None:  # noqa: F811
    _, device_id = await project_with_device(isolated, None)
    call_id = await call_of(PersistentRpcStore(isolated), device_id, RpcStatus.SUCCESSFUL, NOW - 3650 * DAY)
    outcome = await RetentionStore(isolated, 0, 0, rpc_retention_days=0).enforce(NOW)
    assert outcome.rpc_calls_deleted == 0
    assert await isolated.fetchval("SELECT count(*) FROM rpc_calls WHERE id = $1", call_id) == 1


def test_the_default_time_to_live_is_documented() -> None:
    from fleetgate.config import Settings

    assert Settings().rpc_persistent_retention_days == 30
