"""The OpenAPI entries of OTA packages: the operator's packages and assignments, and the devices'
HTTP download (protocols.http.openapi merges them into /openapi.json)."""

from __future__ import annotations

from typing import Any

from fleetgate.core.ota_checksums import ChecksumAlgorithm
from fleetgate.core.ota_model import OtaState
from fleetgate.protocols.http.schema import obj as _object
from fleetgate.protocols.http.schema import ref as _ref

_PACKAGES = "/ota-upgrades/packages"
_ALGORITHMS = [a.value for a in ChecksumAlgorithm]
_TYPES = ["FIRMWARE", "SOFTWARE"]
OCTETS = "application/octet-stream"

# (method, path, summary, details for protocols.http.openapi._management)
OPERATIONS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("POST", _PACKAGES, "Upload an OTA package: its bytes are the body",
     {"query": ("package_type_required", "title", "version", "checksum_algorithm", "checksum", "file_name"),
      "status": 201, "returns": "OtaPackage", "errors": (409, 413),
      "description": "The body is the package itself, streamed into storage (any Content-Type, kept as the "
                     "package's). The checksum (SHA256 unless checksum_algorithm says otherwise) is computed, and "
                     "compared with checksum when one is given: a mismatch (400), a package over "
                     "ota_max_package_bytes (413) or a type, title and version the project has already (409) "
                     "stores nothing."}),
    ("GET", _PACKAGES, "List OTA packages, newest first", {"query": ("package_type", "limit", "marker", "offset"),
                                                           "returns": "OtaPackageList"}),
    ("GET", _PACKAGES + "/{package_id}", "Show an OTA package and how many devices report each state on it",
     {"returns": "OtaPackageDetails"}),
    ("GET", _PACKAGES + "/{package_id}/content", "Download an OTA package's bytes",
     {"returns": "OtaBytes", "media": OCTETS}),
    ("DELETE", _PACKAGES + "/{package_id}", "Delete an OTA package that is assigned to nothing",
     {"status": 204, "errors": (409,)}),
    *((method, f"/{target}s/{{{target}_id}}/ota-packages/{{type}}", summary, details)
      for target, whose in (("product", "all the product's devices that have none of their own"),
                            ("device", "the device, whatever its product's"))
      for method, summary, details in (
          ("PUT", f"Assign a {target} its firmware or software",
           {"body": "OtaAssignment", "returns": "OtaPackage",
            "description": f"The package goes to {whose}: their fw_title, fw_version, fw_size, fw_checksum and "
                           "fw_checksum_algorithm shared attributes (sw_* for software) are set at once, and each "
                           "connected device gets them in one attribute update."}),
          ("DELETE", f"Unassign a {target}'s firmware or software",
           {"status": 204, "description": "Its devices get the package they now fall back to (a device's "
                                          "product's), or lose the five shared attributes."}),
      )),
    ("GET", "/devices/{device_id}/ota", "A device's OTA packages and reported progress",
     {"returns": "DeviceOta"}),
)

_DOWNLOAD = ("Chunk number chunk of size bytes (size 0 or absent: the whole package), as raw bytes. The chunk just "
             "past the end is 200 with an empty body (ThingsBoard's SDK asks for one more); beyond it, 400. "
             "400 when title or version is not the device's assigned package, 404 when it has none, 413 for a "
             "chunk over ota_max_chunk_bytes, 429 past ota_chunk_rate_per_device.")

# (method, path, summary, details for protocols.http.openapi.Operation)
DEVICE_OPERATIONS: tuple[tuple[str, str, str, dict[str, Any]], ...] = tuple(
    ("GET", f"/api/v1/{{token}}/{kind}", f"Download the device's {kind} in chunks (ThingsBoard's OTA)",
     {"query": ("title", "version", "size", "chunk"), "returns": "OtaBytes", "media": OCTETS,
      "errors": (400, 401, 404, 413, 429, 503), "description": _DOWNLOAD})
    for kind in ("firmware", "software")
)

_PACKAGE = {
    "package_id": {"type": "string"},
    "type": {"type": "string", "enum": _TYPES},
    "title": {"type": "string"},
    "version": {"type": "string"},
    "size": {"type": "integer", "description": "Bytes"},
    "checksum_algorithm": {"type": "string", "enum": _ALGORITHMS},
    "checksum": {"type": "string", "description": "Lowercase hex, as ThingsBoard writes it"},
    "content_type": {"type": "string"},
    "file_name": {"type": "string"},
    "create_time": {"type": "string", "description": "yyyyMMdd'T'HHmmss'Z'"},
}
_STATES = [s.value for s in OtaState]
_PROGRESS = _object(
    package={"oneOf": [_ref("OtaPackage"), {"type": "null"}], "description": "The package the device gets now"},
    assigned_to={"type": ["string", "null"], "enum": ["device", "product", None]},
    state={"type": ["string", "null"], "enum": [*_STATES, None], "description": "The device's last fw_state"},
    error={"type": "string"},
    reported_package_id={"type": ["string", "null"], "description": "The package assigned when it reported"},
    update_time={"type": ["string", "null"]},
)

SCHEMAS: dict[str, Any] = {
    "OtaPackage": _object(*_PACKAGE, **_PACKAGE),
    "OtaPackageDetails": _object(*_PACKAGE, **_PACKAGE, device_states={
        "type": "object", "additionalProperties": {"type": "integer"},
        "description": "Devices by the state they last reported on this package"}),
    "OtaPackageList": _object("packages", "page", packages={"type": "array", "items": _ref("OtaPackage")},
                              page=_ref("Page")),
    "OtaAssignment": _object("package_id", package_id={"type": "string"}),
    "OtaBytes": {"type": "string", "format": "binary"},
    "DeviceOta": _object("firmware", "software", firmware=_PROGRESS, software=_PROGRESS),
}


def _query(name: str, schema: dict[str, Any], description: str, *, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


PARAMETERS: dict[str, Any] = {
    "package_id": {"name": "package_id", "in": "path", "required": True, "description": "An OTA package's id",
                   "schema": {"type": "string"}},
    "type": {"name": "type", "in": "path", "required": True, "description": "FIRMWARE or SOFTWARE",
             "schema": {"type": "string", "enum": _TYPES}},
    "package_type": _query("type", {"type": "string", "enum": _TYPES}, "Only packages of this type"),
    "package_type_required": _query("type", {"type": "string", "enum": _TYPES}, "FIRMWARE or SOFTWARE",
                                    required=True),
    "title": _query("title", {"type": "string", "minLength": 1, "maxLength": 255}, "The package's title"),
    "version": _query("version", {"type": "string", "minLength": 1, "maxLength": 255}, "The package's version"),
    "checksum_algorithm": _query("checksum_algorithm", {"type": "string", "enum": _ALGORITHMS, "default": "SHA256"},
                                 "How the checksum is computed"),
    "checksum": _query("checksum", {"type": "string"}, "The expected checksum (hex); computed when absent"),
    "file_name": _query("file_name", {"type": "string"}, "The package's file name, for the record"),
    "size": _query("size", {"type": "integer", "minimum": 0, "default": 0}, "Chunk size in bytes; 0: whole"),
    "chunk": _query("chunk", {"type": "integer", "minimum": 0, "default": 0}, "Chunk number, from 0"),
}
