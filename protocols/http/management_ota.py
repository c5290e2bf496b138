"""OTA packages under /v5/iot/{project_id}/ (ThingsBoard's OTA updates, in the management API's shapes).

An upload is the package's bytes as the body (any Content-Type), its title, version and type in
the query; it streams into storage, so its size is bounded by ota_max_package_bytes, not by the
management API's body limit. Packages are assigned to a product or to a device, per type.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from fleetgate.core.errors import InvalidInput
from fleetgate.core.ota import OtaService, UploadRequest, ota_type
from fleetgate.core.ota_model import Assignment, DeviceOtaState, OtaPackage, OtaType
from fleetgate.protocols.http.iotda import (
    ScopedRoute, body_field, iotda_time, json_body, json_response, page_json, page_params,
)

_PACKAGES = "/ota-upgrades/packages"
_READ_BYTES = 64 * 1024


def package_json(p: OtaPackage) -> dict[str, Any]:
    return {
        "package_id": p.id,
        "type": p.type.value,
        "title": p.title,
        "version": p.version,
        "size": p.size,
        "checksum_algorithm": p.checksum_algorithm.value,
        "checksum": p.checksum,
        "content_type": p.content_type,
        "file_name": p.file_name,
        "create_time": iotda_time(p.created_at),
    }


def _status_json(kind: OtaType, assignment: Assignment | None, state: DeviceOtaState | None) -> dict[str, Any]:
    return {
        "package": package_json(assignment.package) if assignment else None,
        "assigned_to": None if assignment is None else ("device" if assignment.from_device else "product"),
        "state": state.state.value if state and state.state else None,
        "error": state.error if state else "",
        f"current_{kind.prefix}_title": state.current_title if state else None,
        f"current_{kind.prefix}_version": state.current_version if state else None,
        "reported_package_id": state.package_id if state else None,
        "update_time": iotda_time(state.updated_at) if state else None,
    }


class OtaRoutes:
    def __init__(self, ota: OtaService) -> None:
        self._ota = ota

    def routes(self) -> list[ScopedRoute]:
        return [
            ("POST", _PACKAGES, self.upload),
            ("GET", _PACKAGES, self.list),
            ("GET", _PACKAGES + "/{package_id}", self.show),
            ("GET", _PACKAGES + "/{package_id}/content", self.download),
            ("DELETE", _PACKAGES + "/{package_id}", self.delete),
            *((method, f"/{target}s/{{{target}_id}}/ota-packages/{{type}}", handler)
              for target in ("product", "device")
              for method, handler in (("PUT", self.assign), ("DELETE", self.unassign))),
            ("GET", "/devices/{device_id}/ota", self.device_status),
        ]

    async def upload(self, request: web.Request, project_id: str) -> web.Response:
        q = request.query
        package = await self._ota.upload(
            UploadRequest(
                project_id, q.get("type", ""), q.get("title", ""), q.get("version", ""),
                checksum_algorithm=q.get("checksum_algorithm"), checksum=q.get("checksum"),
                content_type=request.content_type, file_name=q.get("file_name", ""),
                declared_size=request.content_length,
            ),
            _body(request),
        )
        return json_response(package_json(package), status=201)

    async def list(self, request: web.Request, project_id: str) -> web.Response:
        limit, marker, offset = page_params(request)
        page = await self._ota.list(project_id, request.query.get("type"), limit, marker, offset)
        return json_response(page_json("packages", page, package_json))

    async def show(self, request: web.Request, project_id: str) -> web.Response:
        package = await self._ota.get(project_id, request.match_info["package_id"])
        return json_response({**package_json(package), "device_states": await self._ota.state_counts(package.id)})

    async def download(self, request: web.Request, project_id: str) -> web.StreamResponse:
        package = await self._ota.get(project_id, request.match_info["package_id"])
        response = web.StreamResponse(headers={"Content-Type": package.content_type})
        response.content_length = package.size
        await response.prepare(request)
        async for block in self._ota.content(project_id, package.id):
            await response.write(block)
        await response.write_eof()
        return response

    async def delete(self, request: web.Request, project_id: str) -> web.Response:
        await self._ota.delete(project_id, request.match_info["package_id"])
        return web.Response(status=204)

    async def assign(self, request: web.Request, project_id: str) -> web.Response:
        target, target_id = _target(request)
        body = await json_body(request)
        kind = ota_type(request.match_info["type"])
        package = await self._ota.get(project_id, body_field(body, "package_id", str, required=True))
        if package.type is not kind:
            raise InvalidInput(f"Package {package.id} is {package.type.value}, not {kind.value}")
        await self._ota.assign(project_id, target, target_id, package.id)
        return json_response(package_json(package))

    async def unassign(self, request: web.Request, project_id: str) -> web.Response:
        target, target_id = _target(request)
        await self._ota.unassign(project_id, target, target_id, request.match_info["type"])
        return web.Response(status=204)

    async def device_status(self, request: web.Request, project_id: str) -> web.Response:
        status = await self._ota.device_status(project_id, request.match_info["device_id"])
        return json_response({kind.value.lower(): _status_json(kind, a, s) for kind, a, s in status})


def _target(request: web.Request) -> tuple[str, str]:
    if "product_id" in request.match_info:
        return "product", request.match_info["product_id"]
    return "device", request.match_info["device_id"]


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    async for data in request.content.iter_chunked(_READ_BYTES):
        yield data
