"""Frozen types of certificate auto-registration: device CAs, their provisioning templates, the device
certificates bound to devices, and a first connection's registration as decided."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleetgate.core.model import Device, DeviceIdentity


@dataclass(frozen=True, slots=True)
class Template:
    """A provisioning template (IoTDA). ``body`` is the template body as the operator wrote it;
    ``allow_rotation`` (this gateway's extension) lets a device this template created bind a
    new certificate instead of being refused as existing."""

    id: str
    project_id: str
    name: str
    description: str
    body: dict[str, Any]
    created_at: int
    updated_at: int
    allow_rotation: bool = False


@dataclass(frozen=True, slots=True)
class DeviceCa:
    """A device CA certificate (IoTDA's certificates resource). ``verified`` once its key's
    possession was proven with ``verify_code``; a device chaining to it is registered only
    when it is verified, ``provision_enable`` and bound to a template."""

    id: str
    project_id: str
    pem: str
    fingerprint: str
    subject: bytes
    cn_name: str
    owner: str
    verified: bool
    verify_code: str
    provision_enable: bool
    template_id: str | None
    not_before: int
    not_after: int
    created_at: int
    crl_pem: str | None = None
    product_id: str | None = None
    cn_pattern: str | None = None
    allow_create: bool = True


@dataclass(frozen=True, slots=True)
class BoundCertificate:
    """A device certificate bound to a device by its SHA-256 fingerprint."""

    fingerprint: str
    device: DeviceIdentity
    enabled: bool
    template_id: str | None
    ca_id: str | None
    crl_pem: str | None = None


@dataclass(frozen=True, slots=True)
class Registration:
    """A device certificate's first connection, decided: the device to create (or, with
    ``rotate``, the existing device ``device.id`` to rebind) and what binds it."""

    device: Device
    node_id: str
    template_id: str | None
    ca_id: str
    tags: tuple[tuple[str, str], ...]
    policy_ids: tuple[str, ...]
    fingerprint: str
    common_name: str
    not_after: int
    rotate: bool = False
