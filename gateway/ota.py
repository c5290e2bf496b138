"""OTA packages as operators handle them: upload, list, show, delete, assign (ThingsBoard's OTA updates).

An upload streams: its bytes are hashed and stored block by block as they arrive, in one
transaction that commits only when the whole package is in, within the size limit, and its
checksum is the one given (or computed, when none is). Assigning a package to a product or a
device sets the five ``fw_*`` (``sw_*``) shared attributes of the devices that get it in one
write, and each connected device hears of them in one attribute update: ThingsBoard's SDKs
start downloading as soon as they see a new version, so the keys must not come one at a time.
The processes are told in bulk (Downlink.attributes_changed_many), so that assigning a package to
a product of 100,000 devices is a hundred bus events, not 100,000.
A device's own assignment wins over its product's.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace

from fleetgate.core.clock import SYSTEM_CLOCK, Clock
from fleetgate.core.devices import require_device
from fleetgate.core.downlink import Downlink
from fleetgate.core.errors import InvalidInput
from fleetgate.core.ids import new_id
from fleetgate.core.model import Page
from fleetgate.core.ports import DeviceLookup, OtaStore
from fleetgate.core.ota_checksums import ChecksumAlgorithm, hasher
from fleetgate.core.ota_model import (
    BLOCK_BYTES, Assignment, ChecksumMismatch, DeviceOtaState, OtaPackage, OtaType, PackageNotFound,
    PackageTooLarge, attribute_keys,
)

DEFAULT_MAX_PACKAGE_BYTES = 64 * 1024 * 1024
TARGETS = ("product", "device")
_BLOCKS_PER_READ = 16
_TEXT = re.compile(r"[^\x00-\x1f\x7f]{1,255}")
_HEX = re.compile(r"[0-9a-fA-F]+")


@dataclass(frozen=True, slots=True)
class UploadRequest:
    project_id: str
    type: str
    title: str
    version: str
    checksum_algorithm: str | None = None  # SHA256 when absent
    checksum: str | None = None  # computed when absent, checked when given
    content_type: str = "application/octet-stream"
    file_name: str = ""
    declared_size: int | None = None  # the body's Content-Length, when the client sent one


def ota_type(raw: object) -> OtaType:
    if isinstance(raw, str) and raw.upper() in OtaType.__members__:
        return OtaType[raw.upper()]
    raise InvalidInput("type must be FIRMWARE or SOFTWARE")


def algorithm(raw: object) -> ChecksumAlgorithm:
    if raw is None or raw == "":
        return ChecksumAlgorithm.SHA256
    if isinstance(raw, str) and raw.upper() in ChecksumAlgorithm.__members__:
        return ChecksumAlgorithm[raw.upper()]
    raise InvalidInput(f"checksum_algorithm must be one of {', '.join(a.value for a in ChecksumAlgorithm)}")


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or not _TEXT.fullmatch(value):
        raise InvalidInput(f"{name} is required: 1 to 255 characters without control characters")
    return value


class OtaService:
    def __init__(
        self, store: OtaStore, devices: DeviceLookup, downlink: Downlink, *,
        max_package_bytes: int = DEFAULT_MAX_PACKAGE_BYTES, clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._store = store
        self._devices = devices
        self._downlink = downlink
        self.max_package_bytes = max_package_bytes
        self._clock = clock

    async def upload(self, request: UploadRequest, body: AsyncIterator[bytes]) -> OtaPackage:
        """Store a package from its bytes as they arrive. Refused, storing nothing: InvalidInput
        (before any byte is read), PackageTaken, PackageTooLarge, ChecksumMismatch."""
        kind = ota_type(request.type)
        algo = algorithm(request.checksum_algorithm)
        expected = request.checksum.strip().lower() if request.checksum else None
        if expected is not None and not _HEX.fullmatch(expected):
            raise InvalidInput("checksum must be hexadecimal, as ThingsBoard writes it")
        if request.declared_size is not None and request.declared_size > self.max_package_bytes:
            raise PackageTooLarge(self._too_large())
        package = OtaPackage(
            new_id(), request.project_id, kind, _text("title", request.title), _text("version", request.version),
            0, algo, "", request.content_type or "application/octet-stream", request.file_name,
            self._clock.now_ms(),
        )
        digest = hasher(algo)
        size, seq, pending = 0, 0, bytearray()
        async with self._store.writing(package) as writer:
            async for data in body:
                size += len(data)
                if size > self.max_package_bytes:
                    raise PackageTooLarge(self._too_large())
                digest.update(data)
                pending += data
                while len(pending) >= BLOCK_BYTES:
                    await writer.append(seq, bytes(pending[:BLOCK_BYTES]))
                    del pending[:BLOCK_BYTES]
                    seq += 1
            if size == 0:
                raise InvalidInput("The package is empty")
            if pending:
                await writer.append(seq, bytes(pending))
            computed = digest.hexdigest()
            if expected is not None and expected != computed:
                raise ChecksumMismatch(
                    f"The package's {algo.value} checksum is {computed}, not the {expected} given: nothing was stored"
                )
            package = replace(package, size=size, checksum=computed)
            await writer.finish(package)
        return package

    async def get(self, project_id: str, package_id: str) -> OtaPackage:
        package = await self._store.package(project_id, package_id)
        if package is None:
            raise PackageNotFound(f"The project has no OTA package {package_id}")
        return package

    async def list(self, project_id: str, kind: str | None, limit: int, marker: str, offset: int) -> Page:
        return await self._store.list_packages(project_id, ota_type(kind) if kind else None, limit, marker, offset)

    async def delete(self, project_id: str, package_id: str) -> None:
        """PackageInUse while it is assigned to a product or a device."""
        if not await self._store.delete_package(project_id, package_id):
            raise PackageNotFound(f"The project has no OTA package {package_id}")

    async def state_counts(self, package_id: str) -> dict[str, int]:
        return await self._store.state_counts(package_id)

    # assignment

    async def assign(self, project_id: str, target: str, target_id: str, package_id: str) -> OtaPackage:
        """Assign the package to a product or a device; the devices that now get it have its
        shared attributes, and those connected are told in one update each."""
        _target(target)
        package = await self.get(project_id, package_id)
        devices = await self._store.assign(project_id, target, target_id, package, self._clock.now_ms())
        await self._push(devices, package, package.type)
        return package

    async def unassign(self, project_id: str, target: str, target_id: str, kind: str) -> None:
        _target(target)
        ota = ota_type(kind)
        devices, now = await self._store.unassign(project_id, target, target_id, ota, self._clock.now_ms())
        await self._push(devices, now, ota)

    async def device_status(
        self, project_id: str, device_id: str
    ) -> list[tuple[OtaType, Assignment | None, DeviceOtaState | None]]:
        """Per type: the package the device gets (and whether its own), and its reported progress."""
        await require_device(self._devices, project_id, device_id)
        states = {state.type: state for state in await self._store.device_states(device_id)}
        return [(kind, await self._store.assigned(device_id, kind), states.get(kind)) for kind in OtaType]

    async def content(self, project_id: str, package_id: str) -> AsyncIterator[bytes]:
        """The package's bytes, a few blocks at a time (an operator's download)."""
        package = await self.get(project_id, package_id)
        last = (package.size - 1) // BLOCK_BYTES
        for first in range(0, last + 1, _BLOCKS_PER_READ):
            for block in await self._store.read_blocks(package.id, first, min(first + _BLOCKS_PER_READ - 1, last)):
                yield block

    async def _push(self, device_ids: Sequence[str], package: OtaPackage | None, kind: OtaType) -> None:
        if package is not None:
            updated, deleted = package.shared_attributes(), ()
        else:
            updated, deleted = (), attribute_keys(kind)
        if device_ids:  # a product's devices in a few bulk events, not one event each
            await self._downlink.attributes_changed_many(device_ids, updated, deleted)

    def _too_large(self) -> str:
        return f"The package is larger than {self.max_package_bytes} bytes (ota_max_package_bytes): nothing was stored"


def _target(target: str) -> None:
    if target not in TARGETS:
        raise InvalidInput("An OTA package is assigned to a product or a device")
