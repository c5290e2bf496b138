"""JSON Schema building blocks shared by the OpenAPI descriptions."""

from __future__ import annotations

from typing import Any


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(*required: str, **properties: Any) -> dict[str, Any]:
    """An object schema with these properties, the named ones required."""
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def typed(kind: str | list[str], description: str = "", **more: Any) -> dict[str, Any]:
    """A schema of this JSON type (or types), with its description and any other keywords."""
    schema: dict[str, Any] = {"type": kind, **more}
    if description:
        schema["description"] = description
    return schema


def closed(schema: dict[str, Any]) -> dict[str, Any]:
    """The object schema with no properties but its own: how update bodies refuse unknown fields."""
    return {**schema, "additionalProperties": False}


def query(name: str, schema: dict[str, Any], description: str, *, required: bool = False) -> dict[str, Any]:
    """A query parameter."""
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


def path(name: str, description: str) -> dict[str, Any]:
    """A path parameter: a string."""
    return {"name": name, "in": "path", "required": True, "description": description, "schema": typed("string")}
