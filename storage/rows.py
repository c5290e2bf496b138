"""Conversions between database records and the core's dataclasses."""

from __future__ import annotations

from typing import Any

import asyncpg

from gateway.model import (
    Credentials,
    CredentialsType,
    Device,
    DeviceIdentity,
    MqttBasic,
    Product,
    ProvisionStrategy,
    StoredCredentials,
)


def product(r: asyncpg.Record) -> Product:
    return Product(
        id=r["id"],
        project_id=r["project_id"],
        name=r["name"],
        description=r["description"],
        provision_strategy=ProvisionStrategy(r["provision_strategy"]),
        provision_key=r["provision_key"],
        provision_secret=r["provision_secret"],
        send_ack_on_validation_error=r["send_ack_on_validation_error"],
        created_at=r["created_at"],
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
    )


def identity(r: asyncpg.Record) -> DeviceIdentity:
    return DeviceIdentity(r["id"], r["project_id"], r["product_id"], r["name"], r["send_ack_on_validation_error"])


def stored_credentials(r: asyncpg.Record) -> StoredCredentials:
    return StoredCredentials(
        type=CredentialsType(r["type"]),
        lookup=r["lookup"],
        password_hash=r["password_hash"],
        client_id=r["client_id"],
        user_name=r["user_name"],
        certificate=r["certificate"],
        pending=pending_from_json(r["pending"]),
    )


def pending_to_json(credentials: Credentials | None) -> dict[str, Any] | None:
    if credentials is None:
        return None
    value = credentials.value
    if isinstance(value, MqttBasic):
        return {"type": credentials.type.value, "clientId": value.client_id, "userName": value.user_name,
                "password": value.password}
    return {"type": credentials.type.value, "value": value}


def pending_from_json(data: dict[str, Any] | None) -> Credentials | None:
    if data is None:
        return None
    kind = CredentialsType(data["type"])
    if kind is CredentialsType.MQTT_BASIC:
        return Credentials(kind, MqttBasic(data["clientId"], data["userName"], data["password"]))
    return Credentials(kind, data["value"])
