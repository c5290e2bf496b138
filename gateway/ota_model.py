"""OTA packages (ThingsBoard's firmware and software updates): the data and the refusals (the
store is a port: fleetgate.core.ports.OtaStore).

https://thingsboard.io/docs/user-guide/ota-updates/
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from fleetgate.core.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge
from fleetgate.core.ota_checksums import ChecksumAlgorithm
from fleetgate.core.telemetry_model import KeyValue, ValueType

# Packages are stored in blocks of this many bytes: an upload holds at most one block, a
# device's chunk reads only the blocks it covers, and the cache keeps blocks.
BLOCK_BYTES = 64 * 1024


class OtaType(enum.Enum):
    FIRMWARE = "FIRMWARE"
    SOFTWARE = "SOFTWARE"

    @property
    def prefix(self) -> str:
        """ThingsBoard's attribute and topic prefix: fw_title, v2/fw/request/..."""
        return "fw" if self is OtaType.FIRMWARE else "sw"


class OtaState(enum.Enum):
    """What a device reports in ``fw_state`` (``sw_state``). IDLE is the SDK's state before any update."""

    IDLE = "IDLE"
    QUEUED = "QUEUED"
    INITIATED = "INITIATED"
    DOWNLOADING = "DOWNLOADING"
    DOWNLOADED = "DOWNLOADED"
    VERIFIED = "VERIFIED"
    UPDATING = "UPDATING"
    UPDATED = "UPDATED"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class OtaPackage:
    id: str
    project_id: str
    type: OtaType
    title: str
    version: str
    size: int
    checksum_algorithm: ChecksumAlgorithm
    checksum: str
    content_type: str
    file_name: str
    created_at: int

    def shared_attributes(self) -> tuple[KeyValue, ...]:
        """The five shared attributes an assignment sets, as ThingsBoard names and types them."""
        p = self.type.prefix
        return (
            KeyValue(f"{p}_title", ValueType.STRING, self.title),
            KeyValue(f"{p}_version", ValueType.STRING, self.version),
            KeyValue(f"{p}_size", ValueType.LONG, self.size),
            KeyValue(f"{p}_checksum", ValueType.STRING, self.checksum),
            KeyValue(f"{p}_checksum_algorithm", ValueType.STRING, self.checksum_algorithm.value),
        )


def attribute_keys(kind: OtaType) -> tuple[str, ...]:
    p = kind.prefix
    return (f"{p}_title", f"{p}_version", f"{p}_size", f"{p}_checksum", f"{p}_checksum_algorithm")


@dataclass(frozen=True, slots=True)
class DeviceOtaState:
    """A device's progress with one type of package, from its own reports."""

    device_id: str
    type: OtaType
    package_id: str | None  # the package assigned when the device reported
    state: OtaState | None
    error: str
    current_title: str | None
    current_version: str | None
    updated_at: int


@dataclass(frozen=True, slots=True)
class Assignment:
    """What a device gets for one type: its own package, else its product's."""

    package: OtaPackage
    from_device: bool


@dataclass(frozen=True, slots=True)
class Report:
    """The OTA keys of one telemetry message, for one type."""

    state: OtaState | None
    error: str | None
    current_title: str | None
    current_version: str | None
    ts: int


# refusals: subclasses of the core's errors, so every front-end maps them already


class PackageTooLarge(PayloadTooLarge):
    """The package is larger than the configured limit."""


class ChecksumMismatch(InvalidInput):
    """The package's checksum is not the one given."""


class PackageNotFound(NotFound):
    """The project has no OTA package with this id."""


class NoPackageAssigned(NotFound):
    """No package of this type is assigned to the device or its product."""


class PackageMismatch(InvalidInput):
    """The title or version asked for is not the package assigned to the device."""


class WrongChunk(InvalidInput):
    """The chunk number or size is not one of the package's."""


class PackageInUse(Conflict):
    """The package is assigned to a product or device: unassign it first."""


class PackageTaken(Conflict):
    """The project has a package of this type, title and version already."""
