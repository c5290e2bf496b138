"""Products (device profiles)."""

from __future__ import annotations

import asyncpg

from fleetgate.core.errors import Conflict, ProductInUse, ProductNameTaken, ProvisionKeyTaken
from fleetgate.core.model import Page, Product
from fleetgate.storage import rows
from fleetgate.storage.errors import translated
from fleetgate.storage.pages import fetch_page
from fleetgate.storage.sealing import Sealer


def _taken(exc: asyncpg.UniqueViolationError) -> Conflict:
    return ProvisionKeyTaken() if "provision_key" in (exc.constraint_name or "") else ProductNameTaken()


class ProductStore:
    def __init__(self, pool: asyncpg.Pool, sealer: Sealer) -> None:
        self._pool = pool
        self._sealer = sealer

    def _secret(self, product: Product) -> str | None:
        return self._sealer.seal(product.provision_secret, rows.PROVISION_SECRET)

    def _product(self, record: asyncpg.Record) -> Product:
        return rows.product(record, self._sealer)

    async def create_product(self, product: Product) -> None:
        with translated():
            try:
                await self._pool.execute(
                    """INSERT INTO products (id, project_id, name, description, provision_strategy, provision_key,
                                             provision_secret, send_ack_on_validation_error, created_at,
                                             allow_claiming)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
                    product.id, product.project_id, product.name, product.description,
                    product.provision_strategy.value, product.provision_key, self._secret(product),
                    product.send_ack_on_validation_error, product.created_at, product.allow_claiming,
                )
            except asyncpg.UniqueViolationError as exc:
                raise _taken(exc) from None

    async def product(self, project_id: str, product_id: str) -> Product | None:
        with translated():
            r = await self._pool.fetchrow(
                "SELECT * FROM products WHERE project_id = $1 AND id = $2", project_id, product_id
            )
        return self._product(r) if r else None

    async def list_products(self, project_id: str, limit: int, marker: str, offset: int) -> Page:
        with translated():
            return await fetch_page(self._pool, "products", "project_id = $1", [project_id], limit, marker, offset,
                                    self._product)

    async def update_product(self, product: Product) -> None:
        with translated():
            try:
                await self._pool.execute(
                    """UPDATE products SET name = $3, description = $4, provision_strategy = $5, provision_key = $6,
                                           provision_secret = $7, send_ack_on_validation_error = $8,
                                           allow_claiming = $9
                       WHERE project_id = $1 AND id = $2""",
                    product.project_id, product.id, product.name, product.description,
                    product.provision_strategy.value, product.provision_key, self._secret(product),
                    product.send_ack_on_validation_error, product.allow_claiming,
                )
            except asyncpg.UniqueViolationError as exc:
                raise _taken(exc) from None

    async def delete_product(self, project_id: str, product_id: str) -> bool:
        with translated():
            try:
                status = await self._pool.execute(
                    "DELETE FROM products WHERE project_id = $1 AND id = $2", project_id, product_id
                )
            except (asyncpg.ForeignKeyViolationError, asyncpg.RestrictViolationError):
                # devices.product_id is ON DELETE RESTRICT, which PostgreSQL reports as 23001, not 23503.
                raise ProductInUse() from None
        return status.endswith(" 1")
