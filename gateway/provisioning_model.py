"""Frozen types of a device's ways in: claim provisioning (ThingsBoard's provision request and
result) and claiming a device by its secret."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from fleetgate.core.model import Credentials, CredentialsType, Device


class ProvisionStatus(enum.StrEnum):
    SUCCESS = "SUCCESS"
    NOT_FOUND = "NOT_FOUND"
    FAILURE = "FAILURE"


@dataclass(frozen=True, slots=True)
class ProvisionRequest:
    provision_key: str
    provision_secret: str
    device_name: str | None = None
    credentials_type: CredentialsType = CredentialsType.ACCESS_TOKEN
    token: str | None = None
    client_id: str | None = None
    username: str | None = None
    password: str | None = None
    certificate: str | None = None
    gateway: bool = False
    source: str = ""


@dataclass(frozen=True, slots=True)
class ProvisionResult:
    status: ProvisionStatus
    credentials: Credentials | None = None
    device: Device | None = None
    reason: str = ""
    # A short, fixed word for the outcome: metrics label it by this, never by ``reason``
    # (free text). Derived from the outcome, so equality ignores it.
    code: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class ClaimingData:
    """ThingsBoard's ``claimingData`` server attribute: a device's claim in progress, its secret
    kept only as a hash (fleetgate.core.credentials.hash_password), until ``expiration_time``."""

    secret_hash: str
    expiration_time: int


@dataclass(frozen=True, slots=True)
class ClaimTarget:
    """What deciding a claim needs of a device: who holds it, whether its product allows
    claiming, and its claim in progress, if any."""

    device_id: str
    project_id: str
    name: str
    customer: str | None
    allow_claiming: bool
    claim: ClaimingData | None
