"""Products (ThingsBoard device profiles): what a device class is and how it provisions."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

from fleetgate.core.clock import SYSTEM_CLOCK, Clock
from fleetgate.core.errors import InvalidInput, NotFound
from fleetgate.core.ids import new_id
from fleetgate.core.model import Page, Product, ProvisionStrategy
from fleetgate.core.ports import ProductStore

_NAME = re.compile(r"[^\x00-\x1f]{1,128}")


class ProductService:
    def __init__(
        self, store: ProductStore, *, on_change: Callable[[], None] | None = None, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        """``on_change`` runs after a product is created, changed or deleted: whoever caches
        products (provisioning does, by key) drops them there."""
        self._store = store
        self._on_change = on_change or (lambda: None)
        self._clock = clock

    async def create(
        self,
        project_id: str,
        name: str,
        *,
        description: str = "",
        strategy: ProvisionStrategy | str = ProvisionStrategy.DISABLED,
        provision_key: str | None = None,
        provision_secret: str | None = None,
        send_ack_on_validation_error: bool = False,
        allow_claiming: bool = True,
    ) -> Product:
        product = _validated(
            Product(
                id=new_id(),
                project_id=project_id,
                name=name,
                description=description,
                provision_strategy=_strategy(strategy),
                provision_key=provision_key or None,
                provision_secret=provision_secret or None,
                send_ack_on_validation_error=send_ack_on_validation_error,
                created_at=self._clock.now_ms(),
                allow_claiming=allow_claiming,
            )
        )
        await self._store.create_product(product)
        self._on_change()
        return product

    async def get(self, project_id: str, product_id: str) -> Product:
        product = await self._store.product(project_id, product_id)
        if product is None:
            raise NotFound(f"Product {product_id} does not exist")
        return product

    async def list(self, project_id: str, limit: int, marker: str, offset: int) -> Page:
        return await self._store.list_products(project_id, limit, marker, offset)

    async def update(self, project_id: str, product_id: str, changes: dict[str, Any]) -> Product:
        current = await self.get(project_id, product_id)
        allowed = {"name", "description", "provision_strategy", "provision_key", "provision_secret",
                   "send_ack_on_validation_error", "allow_claiming"}
        unknown = set(changes) - allowed
        if unknown:
            raise InvalidInput(f"Unknown or read-only fields: {', '.join(sorted(unknown))}")
        if "provision_strategy" in changes:
            changes = {**changes, "provision_strategy": _strategy(changes["provision_strategy"])}
        updated = _validated(dataclasses.replace(current, **changes))
        await self._store.update_product(updated)
        self._on_change()
        return updated

    async def delete(self, project_id: str, product_id: str) -> None:
        if not await self._store.delete_product(project_id, product_id):
            raise NotFound(f"Product {product_id} does not exist")
        self._on_change()


def _strategy(value: ProvisionStrategy | str) -> ProvisionStrategy:
    try:
        return ProvisionStrategy(value)
    except ValueError:
        choices = ", ".join(s.value for s in ProvisionStrategy)
        raise InvalidInput(f"provision_strategy must be one of {choices}") from None


def _validated(product: Product) -> Product:
    if not isinstance(product.name, str) or not _NAME.fullmatch(product.name):
        raise InvalidInput("name must be 1 to 128 characters without control characters")
    if not isinstance(product.description, str) or len(product.description) > 1024:
        raise InvalidInput("description must be a string of at most 1024 characters")
    for field in ("provision_key", "provision_secret"):
        value = getattr(product, field)
        if value is not None and (not isinstance(value, str) or not 1 <= len(value) <= 255 or value != value.strip()):
            raise InvalidInput(f"{field} must be 1 to 255 characters without surrounding spaces")
    if product.provision_strategy is not ProvisionStrategy.DISABLED and not (
        product.provision_key and product.provision_secret
    ):
        raise InvalidInput("provision_key and provision_secret are required unless provision_strategy is DISABLED")
    if not isinstance(product.send_ack_on_validation_error, bool):
        raise InvalidInput("send_ack_on_validation_error must be true or false")
    if not isinstance(product.allow_claiming, bool):
        raise InvalidInput("allow_claiming must be true or false")
    return product
