"""fleetgate.core.claiming, ThingsBoard's device claiming, against in-memory fakes of its port,
and the device service's two claim operations that hand requests to it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fleetgate.core.auth import DeviceAuthenticator
from fleetgate.core.claiming import (
    DEFAULT_DURATION_MS, ClaimRequest, Claiming, claim_request, gateway_claim_requests,
)
from fleetgate.core.codec import PayloadLimits
from fleetgate.core.credentials import verify_password
from fleetgate.core.device_service import DeviceService
from fleetgate.core.device_channel import SessionLimits
from fleetgate.core.downlink import Downlink
from fleetgate.core.errors import (
    ClaimExpired, ClaimingNotAllowed, ClaimSecretMismatch, DeviceAlreadyClaimed, InvalidInput, MalformedPayload,
    NotFound, PayloadTooLarge,
)
from fleetgate.core.ingest import IngestPipeline, IngestSettings
from fleetgate.core.model import DeviceIdentity
from fleetgate.core.operations import NO_PARAMS
from fleetgate.core.provisioning import ProvisioningService
from fleetgate.core.subdevices import SubDeviceLimits, SubDevices
from tests.fakes import (
    FakeAuditLog, FakeClaimStore, FakeProvisioningStore, FakeSubDeviceStore, MemoryWriter, SetClock, StoredAttributes,
    TokenDevices,
)

NOW = 1_700_000_000_000
DEVICE = DeviceIdentity("d1", "p1", "prod1", "meter")
GATEWAY = DeviceIdentity("g1", "p1", "prod1", "hub", gateway=True)


@pytest.fixture
def store() -> FakeClaimStore:
    store = FakeClaimStore()
    store.add(DEVICE)
    return store


@pytest.fixture
def clock() -> SetClock:
    return SetClock(NOW)


@pytest.fixture
async def claiming(store: FakeClaimStore, clock: SetClock) -> AsyncIterator[Claiming]:
    claiming = Claiming(store, clock=clock)
    yield claiming
    await claiming.close()


# the device's request

@pytest.mark.parametrize(("body", "expected"), [
    (b"", ClaimRequest("", 0)),
    (b"  ", ClaimRequest("", 0)),
    (b"{}", ClaimRequest("", 0)),
    (b'{"secretKey": "abc"}', ClaimRequest("abc", 0)),
    (b'{"secretKey": null, "durationMs": null}', ClaimRequest("", 0)),
    (b'{"secretKey": "abc", "durationMs": 60000}', ClaimRequest("abc", 60000)),
    (b'{"durationMs": "60000"}', ClaimRequest("", 60000)),  # Gson's getAsLong reads a numeric string
    (b'{"durationMs": -5}', ClaimRequest("", 0)),  # not positive: the default, as in ThingsBoard
    (b'{"secretKey": "s", "durationMs": 0, "other": 1}', ClaimRequest("s", 0)),
])
def test_a_request_takes_thingsboards_defaults_for_what_it_lacks(body: bytes, expected: ClaimRequest) -> None:
    assert claim_request(body) == expected


@pytest.mark.parametrize("body", [
    b"{", b"[]", b'"abc"', b"1", b'{"secretKey": 5}', b'{"secretKey": ["a"]}', b'{"durationMs": 1.5}',
    b'{"durationMs": true}', b'{"durationMs": "soon"}', b'{"durationMs": 9007199254740993}',
    b'{"secretKey": "' + b"x" * 1025 + b'"}',
])
def test_a_malformed_request_is_refused(body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        claim_request(body)


def test_a_gateway_request_is_one_per_sub_device_each_checked() -> None:
    assert gateway_claim_requests(b'{"A": {"secretKey": "a", "durationMs": 1000}, "B": {}}', 10) == {
        "A": ClaimRequest("a", 1000), "B": ClaimRequest("", 0)}
    for body in (b'{"A": {"secretKey": 1}}', b'{"A": 5}', b"[]", b'{"": {}}'):
        with pytest.raises(MalformedPayload):
            gateway_claim_requests(body, 10)
    with pytest.raises(PayloadTooLarge):
        gateway_claim_requests(b'{"A": {}, "B": {}}', 1)


async def test_a_claim_is_kept_with_its_secret_hashed_until_its_expiration(
    claiming: Claiming, store: FakeClaimStore
) -> None:
    assert await claiming.register(DEVICE, ClaimRequest("s3cret", 60_000))
    claim = store.devices["d1"].claim
    assert claim is not None and claim.expiration_time == NOW + 60_000
    assert "s3cret" not in claim.secret_hash and verify_password("s3cret", claim.secret_hash)
    assert store.devices["d1"].claim_ts == NOW
    # No duration: ThingsBoard's default; a new claim replaces the previous one.
    assert await claiming.register(DEVICE, ClaimRequest())
    claim = store.devices["d1"].claim
    assert claim is not None and claim.expiration_time == NOW + DEFAULT_DURATION_MS
    assert verify_password("", claim.secret_hash)


async def test_a_claim_is_dropped_for_a_device_claimed_or_whose_product_forbids_it(
    claiming: Claiming, store: FakeClaimStore
) -> None:
    store.devices["d1"].customer = "acme"
    assert not await claiming.register(DEVICE, ClaimRequest("s"))
    assert store.devices["d1"].claim is None
    forbidden = DeviceIdentity("d2", "p1", "prod2", "valve")
    store.add(forbidden, allow_claiming=False)
    assert not await claiming.register(forbidden, ClaimRequest("s"))
    assert store.devices["d2"].claim is None
    assert not await claiming.register(DeviceIdentity("gone", "p1", "prod1", "gone"), ClaimRequest("s"))


# the operator's completion

async def test_the_operator_completes_a_claim_with_the_secret(claiming: Claiming, store: FakeClaimStore) -> None:
    await claiming.register(DEVICE, ClaimRequest("s3cret", 60_000))
    assert await claiming.complete("p1", "meter", "s3cret", "acme") == "d1"
    assert store.devices["d1"].customer == "acme"
    assert store.devices["d1"].claim is None  # claimingData goes once the claim is done
    with pytest.raises(DeviceAlreadyClaimed):
        await claiming.complete("p1", "meter", "s3cret", "other")
    await claiming.release("p1", "d1")
    assert store.devices["d1"].customer is None
    # Released, the device must ask again: the completed claim is not reusable.
    with pytest.raises(ClaimExpired):
        await claiming.complete("p1", "meter", "s3cret", "other")


async def test_each_refusal_has_its_own_error(claiming: Claiming, store: FakeClaimStore, clock: SetClock) -> None:
    with pytest.raises(ClaimExpired):  # no claim at all
        await claiming.complete("p1", "meter", "", "acme")
    await claiming.register(DEVICE, ClaimRequest("s3cret", 60_000))
    with pytest.raises(ClaimSecretMismatch):
        await claiming.complete("p1", "meter", "wrong", "acme")
    with pytest.raises(NotFound):
        await claiming.complete("p1", "no-such-device", "s3cret", "acme")
    with pytest.raises(NotFound):  # another project's device is not found
        await claiming.complete("p2", "meter", "s3cret", "acme")
    for customer in ("", "a\nb", "x" * 256):
        with pytest.raises(InvalidInput):
            await claiming.complete("p1", "meter", "s3cret", customer)
    clock.now = NOW + 60_000  # expired the moment its time comes
    with pytest.raises(ClaimExpired):
        await claiming.complete("p1", "meter", "s3cret", "acme")
    assert store.devices["d1"].customer is None
    store.devices["d1"].allow_claiming = False
    with pytest.raises(ClaimingNotAllowed):
        await claiming.complete("p1", "meter", "s3cret", "acme")
    with pytest.raises(NotFound):
        await claiming.release("p1", "no-such-device")


async def test_a_device_claimed_meanwhile_is_refused(claiming: Claiming, store: FakeClaimStore) -> None:
    await claiming.register(DEVICE, ClaimRequest("s"))
    assign = store.assign_customer

    async def claimed_first(device_id: str, customer: str) -> bool:
        await assign(device_id, "first")
        return await assign(device_id, customer)

    store.assign_customer = claimed_first  # type: ignore[method-assign]
    with pytest.raises(DeviceAlreadyClaimed):
        await claiming.complete("p1", "meter", "s", "second")
    assert store.devices["d1"].customer == "first"


# the device service's operations

def service_of(claiming: Claiming, subdevices: SubDevices | None = None) -> DeviceService:
    audit = FakeAuditLog()
    return DeviceService(
        auth=DeviceAuthenticator(TokenDevices({"T1": DEVICE}), cache_seconds=30),
        provisioning=ProvisioningService(FakeProvisioningStore(audit), audit),
        pipeline=IngestPipeline(MemoryWriter(), IngestSettings(capacity_rows=10)),
        attributes=StoredAttributes(), limits=PayloadLimits(64, 64, 10), downlink=Downlink(SessionLimits(1024, 7)),
        ack_stored=True, clock=SetClock(NOW), claiming=claiming, subdevices=subdevices,
    )


async def test_the_claim_operation_answers_at_once_and_stores_the_claim(
    claiming: Claiming, store: FakeClaimStore
) -> None:
    service = service_of(claiming)
    assert service.claim(DEVICE, b'{"secretKey": "abc", "durationMs": 1000}', NO_PARAMS) is None
    await claiming.settled()
    claim = store.devices["d1"].claim
    assert claim is not None and claim.expiration_time == NOW + 1000
    with pytest.raises(MalformedPayload):  # refused before anything is done
        service.claim(DEVICE, b'{"secretKey": 1}', NO_PARAMS)


async def test_a_gateway_claims_for_its_sub_devices_found_or_created_by_name(
    claiming: Claiming, store: FakeClaimStore
) -> None:
    devices = FakeSubDeviceStore()
    known = devices.devices[("p1", "A")] = DeviceIdentity("sub-a", "p1", "prod1", "A")
    store.add(known)
    service = service_of(claiming, SubDevices(devices, SubDeviceLimits(max_per_message=2)))
    service.gateway_claim(GATEWAY, b'{"A": {"secretKey": "a", "durationMs": 5000}, "B": {}}', NO_PARAMS)
    await claiming.settled()
    claim = store.devices["sub-a"].claim
    assert claim is not None and verify_password("a", claim.secret_hash) and claim.expiration_time == NOW + 5000
    assert ("p1", "B") in devices.devices  # created in the gateway's project, as on connect
    assert devices.gateway_of["sub-a"] == "g1"
    with pytest.raises(MalformedPayload):
        service.gateway_claim(GATEWAY, b'{"A": {"durationMs": "x"}}', NO_PARAMS)
    with pytest.raises(PayloadTooLarge):
        service.gateway_claim(GATEWAY, b'{"A": {}, "B": {}, "C": {}}', NO_PARAMS)
