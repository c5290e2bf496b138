"""Conversions between database records and the core's dataclasses."""

from __future__ import annotations

from typing import Any

import orjson

import asyncpg

from fleetgate.storage.sealing import Sealer

from fleetgate.core.model import (
    Credentials,
    CredentialsType,
    Device,
    DeviceIdentity,
    MqttBasic,
    Product,
    ProvisionStrategy,
    StoredCredentials,
)


PROVISION_SECRET = "products.provision_secret"
PENDING = "device_credentials.pending"
SECRET_KEY = "access_keys.secret_key"
SECRET = "device_credentials.secret"


def product(r: asyncpg.Record, sealer: Sealer) -> Product:
    return Product(
        id=r["id"],
        project_id=r["project_id"],
        name=r["name"],
        description=r["description"],
        provision_strategy=ProvisionStrategy(r["provision_strategy"]),
        provision_key=r["provision_key"],
        provision_secret=sealer.open(r["provision_secret"], PROVISION_SECRET),
        send_ack_on_validation_error=r["send_ack_on_validation_error"],
        created_at=r["created_at"],
        allow_claiming=r["allow_claiming"],
    )


def device(r: asyncpg.Record) -> Device:
    return Device(
        id=r["id"],
        project_id=r["project_id"],
        product_id=r["product_id"],
        name=r["name"],
        label=r["label"],
        gateway=r["gateway"],
        created_at=r["created_at"],
        gateway_id=r.get("gateway_id"),
        customer=r.get("customer"),
        node_id=r.get("node_id"),
    )


def identity(r: asyncpg.Record) -> DeviceIdentity:
    return DeviceIdentity(r["id"], r["project_id"], r["product_id"], r["name"], r["send_ack_on_validation_error"],
                          r["gateway"])


def stored_credentials(r: asyncpg.Record, sealer: Sealer) -> StoredCredentials:
    return StoredCredentials(
        type=CredentialsType(r["type"]),
        lookup=r["lookup"],
        password_hash=r["password_hash"],
        client_id=r["client_id"],
        user_name=r["user_name"],
        certificate=r["certificate"],
        pending=pending_from_json(r["pending"], sealer),
        secret=sealer.open(r.get("secret"), SECRET),
        secure_access=bool(r.get("secure_access")),
    )


def pending_to_json(credentials: Credentials | None, sealer: Sealer) -> dict[str, Any] | None:
    """The clear credentials kept until a pre-provisioned device claims them: sealed, as one value."""
    if credentials is None:
        return None
    value = credentials.value
    if isinstance(value, MqttBasic):
        clear = {"type": credentials.type.value, "clientId": value.client_id, "userName": value.user_name,
                 "password": value.password}
    else:
        clear = {"type": credentials.type.value, "value": value}
    return {"sealed": sealer.seal(orjson.dumps(clear).decode(), PENDING)}


def pending_from_json(data: dict[str, Any] | None, sealer: Sealer) -> Credentials | None:
    if data is None:
        return None
    if "sealed" in data:
        data = orjson.loads(sealer.open(data["sealed"], PENDING) or "null")
    kind = CredentialsType(data["type"])
    if kind is CredentialsType.MQTT_BASIC:
        return Credentials(kind, MqttBasic(data["clientId"], data["userName"], data["password"]))
    return Credentials(kind, data["value"])
