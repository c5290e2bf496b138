"""OTA packages in the core (fleetgate.core.ota*), against the in-memory store of tests/fakes_ota.py."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest

from fleetgate.core.device_channel import SessionLimits
from fleetgate.core.downlink import Downlink
from fleetgate.core.errors import InvalidInput, NotFound, PayloadTooLarge, TooManyRequests
from fleetgate.core.model import DeviceIdentity
from fleetgate.core.ota import OtaService, UploadRequest
from fleetgate.core.ota_checksums import ChecksumAlgorithm, checksum
from fleetgate.core.ota_downloads import DownloadLimits, OtaDownloads, chunk_span, query_request
from fleetgate.core.ota_model import (
    BLOCK_BYTES, ChecksumMismatch, NoPackageAssigned, OtaState, OtaType, PackageInUse, PackageMismatch,
    PackageTaken, PackageTooLarge, WrongChunk,
)
from fleetgate.core.ota_progress import OtaProgress, mentions_ota, reports
from fleetgate.core.telemetry_model import KeyValue, Reading, ValueType
from tests.fakes_ota import DEVICE, IMAGE, OTHER, PRODUCT, PROJECT, Devices, FakeOtaStore, Recorder, stream

def setup(**limits: Any) -> tuple[FakeOtaStore, OtaService, Downlink, OtaDownloads]:
    store = FakeOtaStore({"d1": PRODUCT, "d2": PRODUCT})
    downlink = Downlink(SessionLimits(65536, 100))
    service = OtaService(store, Devices(), downlink, max_package_bytes=limits.pop("max_package_bytes", 1 << 20))
    return store, service, downlink, OtaDownloads(store, DownloadLimits(**limits))


def upload(title: str = "fw", version: str = "1.0", kind: str = "FIRMWARE", **more: Any) -> UploadRequest:
    return UploadRequest(PROJECT, kind, title, version, **more)


# checksums, as ThingsBoard writes them and its SDK checks them


def test_checksums_are_thingsboards_hex() -> None:
    data = b"abc"
    assert checksum(ChecksumAlgorithm.SHA256, data) == hashlib.sha256(data).hexdigest()
    assert checksum(ChecksumAlgorithm.MD5, data) == hashlib.md5(data).hexdigest()
    # Guava's HashCode.toString(): the hash's bytes, little-endian for the 32-bit ones.
    assert checksum(ChecksumAlgorithm.CRC32, data) == (0x352441C2).to_bytes(4, "little").hex() == "c2412435"
    assert checksum(ChecksumAlgorithm.MURMUR3_32, data) == (0xB3DD93FA).to_bytes(4, "little").hex()
    assert checksum(ChecksumAlgorithm.MURMUR3_128, b"") == "00000000000000000000000000000000"


async def test_a_streamed_checksum_equals_the_whole_ones() -> None:
    store, service, _, _ = setup()
    for algorithm in ChecksumAlgorithm:
        package = await service.upload(upload(version=algorithm.value, checksum_algorithm=algorithm.value),
                                       stream(IMAGE, 7_777))
        assert package.checksum == checksum(algorithm, IMAGE), algorithm


# uploads


async def test_an_upload_is_stored_in_blocks_with_its_checksum() -> None:
    store, service, _, _ = setup()
    package = await service.upload(upload(), stream(IMAGE))
    assert package.size == len(IMAGE) and package.checksum == hashlib.sha256(IMAGE).hexdigest()
    assert package.checksum_algorithm is ChecksumAlgorithm.SHA256
    assert store.largest_block == BLOCK_BYTES
    assert b"".join(store.blocks[package.id][i] for i in range(4)) == IMAGE


async def test_a_given_checksum_is_checked_and_a_mismatch_stores_nothing() -> None:
    store, service, _, _ = setup()
    with pytest.raises(ChecksumMismatch, match="nothing was stored"):
        await service.upload(upload(checksum="00" * 32), stream(IMAGE))
    assert not store.packages
    good = hashlib.sha256(IMAGE).hexdigest().upper()  # compared without regard to case
    assert (await service.upload(upload(checksum=good), stream(IMAGE))).checksum == good.lower()


async def test_an_oversize_upload_stores_nothing() -> None:
    store, service, _, _ = setup(max_package_bytes=100_000)
    with pytest.raises(PackageTooLarge):
        await service.upload(upload(), stream(IMAGE))
    with pytest.raises(PackageTooLarge):  # refused by its Content-Length before a byte is read
        await service.upload(upload(declared_size=100_001), stream(b"never read"))
    assert not store.packages


@pytest.mark.parametrize(("request_", "why"), [
    (upload(kind="BOOTLOADER"), "type"), (upload(title=""), "title"), (upload(version="a\nb"), "version"),
    (upload(checksum_algorithm="SHA1"), "checksum_algorithm"), (upload(checksum="xyz"), "hexadecimal"),
])
async def test_bad_upload_requests(request_: UploadRequest, why: str) -> None:
    _, service, _, _ = setup()
    with pytest.raises(InvalidInput, match=why):
        await service.upload(request_, stream(IMAGE))


async def test_one_type_title_and_version_per_project() -> None:
    _, service, _, _ = setup()
    await service.upload(upload(), stream(IMAGE))
    with pytest.raises(PackageTaken):
        await service.upload(upload(), stream(IMAGE))
    await service.upload(upload(kind="SOFTWARE"), stream(IMAGE))  # the same title and version as software


# assignment


async def test_assigning_pushes_the_five_attributes_in_one_update() -> None:
    _, service, downlink, _ = setup()
    channel = Recorder()
    downlink.attach("d1", channel)
    package = await service.upload(upload(), stream(IMAGE))
    await service.assign(PROJECT, "product", PRODUCT, package.id)
    assert channel.updates == [{
        "fw_title": "fw", "fw_version": "1.0", "fw_size": len(IMAGE), "fw_checksum": package.checksum,
        "fw_checksum_algorithm": "SHA256",
    }]


async def test_a_devices_own_package_wins_over_its_products() -> None:
    store, service, downlink, _ = setup()
    channels = {d: Recorder() for d in ("d1", "d2")}
    for device_id, channel in channels.items():
        downlink.attach(device_id, channel)
    v1 = await service.upload(upload(version="1"), stream(IMAGE))
    v2 = await service.upload(upload(version="2"), stream(IMAGE))
    await service.assign(PROJECT, "device", "d1", v2.id)
    await service.assign(PROJECT, "product", PRODUCT, v1.id)
    assert [u["fw_version"] for u in channels["d1"].updates] == ["2"]  # the product's does not reach d1
    assert [u["fw_version"] for u in channels["d2"].updates] == ["1"]
    assert (await store.assigned("d1", OtaType.FIRMWARE)).package.version == "2"
    await service.unassign(PROJECT, "device", "d1", "FIRMWARE")  # d1 falls back to its product's
    assert channels["d1"].updates[-1]["fw_version"] == "1"
    await service.unassign(PROJECT, "product", PRODUCT, "FIRMWARE")
    assert channels["d2"].updates[-1] == {"deleted": ["fw_title", "fw_version", "fw_size", "fw_checksum",
                                                      "fw_checksum_algorithm"]}


async def test_an_assigned_package_cannot_be_deleted() -> None:
    _, service, _, _ = setup()
    package = await service.upload(upload(), stream(IMAGE))
    await service.assign(PROJECT, "device", "d1", package.id)
    with pytest.raises(PackageInUse):
        await service.delete(PROJECT, package.id)
    await service.unassign(PROJECT, "device", "d1", "FIRMWARE")
    await service.delete(PROJECT, package.id)
    with pytest.raises(NotFound):
        await service.get(PROJECT, package.id)


# chunks


def test_chunk_spans() -> None:
    assert chunk_span(10, 4, 0, 100) == (0, 4)
    assert chunk_span(10, 4, 2, 100) == (8, 2)
    assert chunk_span(10, 4, 3, 100) == (12, 0)  # one past the end: empty, the HTTP SDK asks for it
    assert chunk_span(10, 0, 0, 100) == (0, 10)  # size 0: the whole package
    assert chunk_span(10, 0, 1, 100) == (10, 0)
    with pytest.raises(WrongChunk, match="3 chunks"):
        chunk_span(10, 4, 4, 100)
    with pytest.raises(PayloadTooLarge):
        chunk_span(10, 0, 0, 9)  # the whole package is one chunk over the limit


def test_query_requests() -> None:
    assert query_request(b'{"title":"fw","version":"1","size":"512","chunk":"3"}').chunk == 3
    assert query_request(b"{}").size == 0
    for bad in (b'{"chunk":"-1"}', b'{"size":"x"}', b'{"chunk":"99999999999"}'):
        with pytest.raises(WrongChunk):
            query_request(bad)


async def test_mqtt_chunks_reassemble_the_package() -> None:
    _, service, _, downloads = setup()
    package = await service.upload(upload(), stream(IMAGE))
    await service.assign(PROJECT, "product", PRODUCT, package.id)
    got = b""
    for chunk in range(-(-len(IMAGE) // 50_000)):
        # The size comes with the first request; later ones may leave it out (ThingsBoard remembers it).
        got += await downloads.mqtt_chunk(DEVICE, OtaType.FIRMWARE, 7, str(chunk), b"50000" if chunk == 0 else b"")
    assert got == IMAGE
    assert await downloads.mqtt_chunk(DEVICE, OtaType.FIRMWARE, 7, str(6), b"") == b""
    with pytest.raises(WrongChunk):
        await downloads.mqtt_chunk(DEVICE, OtaType.FIRMWARE, 7, "7", b"")
    with pytest.raises(WrongChunk):
        downloads.mqtt_chunk(DEVICE, OtaType.FIRMWARE, 7, "x", b"")
    with pytest.raises(WrongChunk):
        downloads.mqtt_chunk(DEVICE, OtaType.FIRMWARE, 7, "0", b"-5")


async def test_a_request_id_keeps_its_package_when_the_assignment_changes() -> None:
    _, service, _, downloads = setup()
    v1 = await service.upload(upload(version="1"), stream(IMAGE))
    v2 = await service.upload(upload(version="2"), stream(b"\xff" * 1000))
    await service.assign(PROJECT, "device", "d1", v1.id)
    first = await downloads.mqtt_chunk(DEVICE, OtaType.FIRMWARE, 1, "0", b"100")
    await service.assign(PROJECT, "device", "d1", v2.id)
    assert await downloads.mqtt_chunk(DEVICE, OtaType.FIRMWARE, 1, "1", b"") == IMAGE[100:200] != first
    assert await downloads.mqtt_chunk(DEVICE, OtaType.FIRMWARE, 2, "0", b"100") == b"\xff" * 100


async def test_http_and_coap_requests_name_the_package() -> None:
    _, service, _, downloads = setup()
    with pytest.raises(NoPackageAssigned):
        await downloads.query_chunk(DEVICE, OtaType.FIRMWARE, b'{"title":"fw","version":"1.0"}')
    package = await service.upload(upload(), stream(IMAGE))
    await service.assign(PROJECT, "device", "d1", package.id)
    assert await downloads.query_chunk(
        DEVICE, OtaType.FIRMWARE, b'{"title":"fw","version":"1.0","size":"1000","chunk":"2"}') == IMAGE[2000:3000]
    with pytest.raises(PackageMismatch, match="fw 1.0"):
        await downloads.query_chunk(DEVICE, OtaType.FIRMWARE, b'{"title":"other","version":"1.0"}')
    with pytest.raises(NoPackageAssigned):  # software is another assignment
        await downloads.query_chunk(DEVICE, OtaType.SOFTWARE, b"{}")


async def test_devices_fetching_at_once_read_each_block_once() -> None:
    store, service, _, downloads = setup(chunk_rate_per_device=10_000, chunk_burst_per_device=10_000)
    package = await service.upload(upload(), stream(IMAGE))
    await service.assign(PROJECT, "product", PRODUCT, package.id)
    devices = [DeviceIdentity(f"x{i}", PROJECT, PRODUCT, f"x{i}") for i in range(50)]
    store.devices.update({d.device_id: PRODUCT for d in devices})
    chunks = await asyncio.gather(*(downloads.mqtt_chunk(d, OtaType.FIRMWARE, 1, "0", b"0") for d in devices))
    assert set(chunks) == {IMAGE}
    assert store.block_reads == 1


async def test_the_cache_is_bounded() -> None:
    store, service, _, downloads = setup(cache_bytes=2 * BLOCK_BYTES)
    package = await service.upload(upload(), stream(IMAGE))
    await service.assign(PROJECT, "device", "d1", package.id)
    for _ in range(2):
        assert await downloads.mqtt_chunk(DEVICE, OtaType.FIRMWARE, 1, "0", b"0") == IMAGE
    assert downloads._blocks.size_bytes <= 2 * BLOCK_BYTES  # noqa: SLF001
    assert store.block_reads >= 2  # the package is larger than the cache: read again


async def test_chunk_requests_are_rate_limited_per_device() -> None:
    _, service, _, downloads = setup(chunk_rate_per_device=1, chunk_burst_per_device=3)
    package = await service.upload(upload(), stream(IMAGE))
    await service.assign(PROJECT, "product", PRODUCT, package.id)
    for chunk in range(3):
        await downloads.mqtt_chunk(DEVICE, OtaType.FIRMWARE, 1, str(chunk), b"100")
    with pytest.raises(TooManyRequests):
        downloads.mqtt_chunk(DEVICE, OtaType.FIRMWARE, 1, "3", b"100")
    await downloads.mqtt_chunk(OTHER, OtaType.FIRMWARE, 1, "0", b"100")  # another device has its own budget
    # CoAP's later Block2 blocks of a chunk already counted are not counted again
    await downloads.query_chunk(DEVICE, OtaType.FIRMWARE, b"{}", counted=False)


async def test_chunks_in_flight_are_bounded() -> None:
    store, service, _, _ = setup()
    package = await service.upload(upload(), stream(IMAGE))
    await service.assign(PROJECT, "product", PRODUCT, package.id)
    gate, two_reading = asyncio.Event(), asyncio.Event()
    reading = most = 0
    read = store.read_blocks

    async def slow_read(*args: Any) -> list[bytes]:
        nonlocal reading, most
        reading += 1
        most = max(most, reading)
        if reading == 2:
            two_reading.set()
        await gate.wait()
        reading -= 1
        return await read(*args)

    store.read_blocks = slow_read  # type: ignore[method-assign]
    downloads = OtaDownloads(store, DownloadLimits(max_in_flight=2, cache_bytes=0))
    # Four chunks in four different blocks: nothing to share, each needs its own read.
    tasks = [asyncio.ensure_future(downloads.mqtt_chunk(DEVICE, OtaType.FIRMWARE, 1, str(n), b"1000"))
             for n in (0, 70, 140, 200)]
    await two_reading.wait()
    gate.set()
    chunks = await asyncio.gather(*tasks)
    assert chunks == [IMAGE[o:o + 1000] for o in (0, 70_000, 140_000, 200_000)]
    assert most == 2 and downloads.in_flight == 0


# progress


def test_reports_from_the_sdks_telemetry() -> None:
    body = b'{"current_fw_title":"Initial","current_fw_version":"v0","fw_state":"DOWNLOADING","fw_error":""}'
    assert mentions_ota(body) and not mentions_ota(b'{"temperature":21}')
    values = tuple(KeyValue(k, ValueType.STRING, v) for k, v in (
        ("fw_state", "FAILED"), ("fw_error", "Checksum verification failed!"), ("sw_state", "UPDATED"),
        ("current_sw_version", "2")))
    found = reports((Reading(5, values),))
    assert found[OtaType.FIRMWARE].state is OtaState.FAILED
    assert found[OtaType.FIRMWARE].error == "Checksum verification failed!"
    assert found[OtaType.SOFTWARE].state is OtaState.UPDATED and found[OtaType.SOFTWARE].current_version == "2"
    odd = reports((Reading(5, (KeyValue("fw_state", ValueType.STRING, "SLEEPING"),)),))
    assert odd[OtaType.FIRMWARE].state is None  # not a state ThingsBoard knows: kept as nothing


async def test_progress_is_counted_per_package() -> None:
    store, service, _, _ = setup()
    package = await service.upload(upload(), stream(IMAGE))
    await service.assign(PROJECT, "product", PRODUCT, package.id)
    progress = OtaProgress(store)
    for ts, (device, state) in enumerate([(DEVICE, "DOWNLOADING"), (OTHER, "DOWNLOADING"), (DEVICE, "UPDATED")]):
        progress.reported(device, (Reading(ts, (KeyValue("fw_state", ValueType.STRING, state),)),))
        await progress.close()
    assert await service.state_counts(package.id) == {"DOWNLOADING": 1, "UPDATED": 1}
    status = dict((kind, (a, s)) for kind, a, s in await service.device_status(PROJECT, "d1"))
    assignment, state = status[OtaType.FIRMWARE]
    assert assignment.package.id == package.id and not assignment.from_device
    assert state.state is OtaState.UPDATED
    with pytest.raises(NotFound):
        await service.device_status(PROJECT, "nope")
