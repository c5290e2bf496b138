"""An in-memory OTA store (fleetgate.core.ports.OtaStore) for the core's unit tests, and what they share:
a project's product with two devices, a package image, a device channel recording its updates."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fleetgate.core.errors import NotFound
from fleetgate.core.model import DeviceIdentity, Page
from fleetgate.core.ota_model import (
    Assignment, DeviceOtaState, OtaPackage, OtaType, PackageInUse, PackageTaken, Report,
)


PROJECT, PRODUCT = "p1", "prod1"
DEVICE = DeviceIdentity("d1", PROJECT, PRODUCT, "device-1")
OTHER = DeviceIdentity("d2", PROJECT, PRODUCT, "device-2")
IMAGE = bytes(range(256)) * 1000  # 256,000 bytes: four blocks, the last one short


class Recorder:
    """A device channel that keeps the attribute updates pushed to it."""

    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []

    def push_attributes(self, update: dict[str, Any]) -> None:
        self.updates.append(update)

    def push_rpc(self, request_id: int, method: str, params: Any) -> None:
        raise AssertionError("no RPC expected")


class Devices:
    async def device(self, project_id: str, device_id: str) -> object | None:
        return object() if device_id in ("d1", "d2") else None


async def stream(data: bytes, piece: int = 10_000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), piece):
        yield data[start:start + piece]


@dataclass
class _Writer:
    blocks: dict[int, bytes] = field(default_factory=dict)
    final: OtaPackage | None = None

    async def append(self, seq: int, data: bytes) -> None:
        self.blocks[seq] = data

    async def finish(self, package: OtaPackage) -> None:
        self.final = package


class FakeOtaStore:
    def __init__(self, devices: dict[str, str] | None = None) -> None:
        self.devices = dict(devices or {})  # device id -> product id
        self.packages: dict[str, OtaPackage] = {}
        self.blocks: dict[str, dict[int, bytes]] = {}
        self.product_packages: dict[tuple[str, OtaType], str] = {}
        self.device_packages: dict[tuple[str, OtaType], str] = {}
        self.states: dict[tuple[str, OtaType], DeviceOtaState] = {}
        self.block_reads = 0
        self.largest_block = 0

    @asynccontextmanager
    async def writing(self, package: OtaPackage) -> AsyncIterator[_Writer]:
        if any((p.project_id, p.type, p.title, p.version) == (package.project_id, package.type, package.title,
                                                               package.version) for p in self.packages.values()):
            raise PackageTaken()
        writer = _Writer()
        yield writer  # an exception in the block stores nothing
        assert writer.final is not None
        self.largest_block = max([self.largest_block, *map(len, writer.blocks.values())])
        self.packages[package.id] = writer.final
        self.blocks[package.id] = writer.blocks

    async def package(self, project_id: str, package_id: str) -> OtaPackage | None:
        package = self.packages.get(package_id)
        return package if package is not None and package.project_id == project_id else None

    async def list_packages(self, project_id: str, kind: OtaType | None, limit: int, marker: str,
                            offset: int) -> Page:
        items = tuple(p for p in self.packages.values() if p.project_id == project_id and kind in (None, p.type))
        return Page(items, len(items))

    async def delete_package(self, project_id: str, package_id: str) -> bool:
        if package_id in {*self.product_packages.values(), *self.device_packages.values()}:
            raise PackageInUse()
        return self.packages.pop(package_id, None) is not None

    async def read_blocks(self, package_id: str, first: int, last: int) -> list[bytes]:
        self.block_reads += 1
        stored = self.blocks.get(package_id, {})
        return [stored[seq] for seq in range(first, last + 1) if seq in stored]

    async def assign(self, project_id: str, target: str, target_id: str, package: OtaPackage, ts: int) -> list[str]:
        if target == "product":
            if target_id not in self.devices.values():
                raise NotFound()
            self.product_packages[(target_id, package.type)] = package.id
            return [d for d, p in self.devices.items() if p == target_id
                    and (d, package.type) not in self.device_packages]
        if target_id not in self.devices:
            raise NotFound()
        self.device_packages[(target_id, package.type)] = package.id
        return [target_id]

    async def unassign(self, project_id: str, target: str, target_id: str, kind: OtaType,
                       ts: int) -> tuple[list[str], OtaPackage | None]:
        if target == "product":
            if self.product_packages.pop((target_id, kind), None) is None:
                raise NotFound()
            return [d for d, p in self.devices.items() if p == target_id and (d, kind) not in self.device_packages], None
        if self.device_packages.pop((target_id, kind), None) is None:
            raise NotFound()
        now = await self.assigned(target_id, kind)
        return [target_id], now.package if now else None

    async def assigned(self, device_id: str, kind: OtaType) -> Assignment | None:
        own = self.device_packages.get((device_id, kind))
        if own is not None:
            return Assignment(self.packages[own], True)
        product = self.product_packages.get((self.devices.get(device_id, ""), kind))
        return Assignment(self.packages[product], False) if product is not None else None

    async def device_states(self, device_id: str) -> Sequence[DeviceOtaState]:
        return [s for (d, _), s in self.states.items() if d == device_id]

    async def save_report(self, device_id: str, kind: OtaType, report: Report) -> None:
        old = self.states.get((device_id, kind))
        assigned = await self.assigned(device_id, kind)
        self.states[(device_id, kind)] = DeviceOtaState(
            device_id, kind, assigned.package.id if assigned else None,
            report.state or (old.state if old else None),
            report.error if report.error is not None else (old.error if old else ""),
            report.current_title or (old.current_title if old else None),
            report.current_version or (old.current_version if old else None), report.ts,
        )

    async def state_totals(self) -> dict[tuple[OtaType, str], int]:
        totals: dict[tuple[OtaType, str], int] = {}
        for state in self.states.values():
            if state.state is not None:
                key = (state.type, state.state.value)
                totals[key] = totals.get(key, 0) + 1
        return totals

    async def state_counts(self, package_id: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for state in self.states.values():
            if state.package_id == package_id and state.state is not None:
                counts[state.state.value] = counts.get(state.state.value, 0) + 1
        return counts
