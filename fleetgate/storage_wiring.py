"""Storage, wired: the database (configured or embedded), the core services over one pool that the
gateway, the CLI's admin commands and the workers' supervisor share, and the downlink bus."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg

from fleetgate.config import EMBEDDED_POSTGRES, Settings
from fleetgate.core.autoregistration import AutoRegistration
from fleetgate.core.buckets import TokenBuckets
from fleetgate.core.claiming import Claiming
from fleetgate.core.clock import SYSTEM_CLOCK, Clock
from fleetgate.core.device_cas import CaService
from fleetgate.core.products import ProductService
from fleetgate.core.projects import ProjectService
from fleetgate.core.provisioning import ProvisioningService
from fleetgate.core.provisioning_templates import TemplateService
from fleetgate.storage import embedded
from fleetgate.storage.attributes import AttributeStore
from fleetgate.storage.audit import AuditStore
from fleetgate.storage.claims import ClaimStore
from fleetgate.storage.database import open_pool
from fleetgate.storage.device_cas import DeviceCaStore
from fleetgate.storage.devices import DeviceStore
from fleetgate.storage.downlink_bus import PgDownlinkBus
from fleetgate.storage.products import ProductStore
from fleetgate.storage.projects import ProjectStore
from fleetgate.storage.registrations import RegistrationStore
from fleetgate.storage.registry import DeviceRegistryStore
from fleetgate.storage.sealing import Sealer, load_key
from fleetgate.storage.telemetry import KeyDictionary
from fleetgate.storage.telemetry_queries import TelemetryQueryStore
from fleetgate.storage.templates import TemplateStore

if TYPE_CHECKING:
    from fleetgate.storage.nats_bus import NatsDownlinkBus


def database_url(settings: Settings) -> str:
    """The configured server, or the embedded one in data_dir (started here: blocking)."""
    return settings.database_url or embedded.start(settings.data_dir, EMBEDDED_POSTGRES)


def downlink_bus(settings: Settings, url: str, pool: asyncpg.Pool) -> PgDownlinkBus | NatsDownlinkBus:
    """NATS when nats_url is set (nats-py imported only then), else PostgreSQL NOTIFY."""
    if not settings.nats_url:
        return PgDownlinkBus(url, pool)
    from fleetgate.storage.nats_bus import NatsDownlinkBus, NatsSettings

    s = settings
    return NatsDownlinkBus(NatsSettings(
        NatsSettings.parse_servers(s.nats_url), user=s.nats_user, password=s.nats_password, token=s.nats_token,
        credentials_file=s.nats_credentials_file, tls_ca_file=s.nats_tls_ca_file,
        tls_cert_file=s.nats_tls_cert_file, tls_key_file=s.nats_tls_key_file, subject_prefix=s.nats_subject_prefix,
    ))


def secrets_key_file(settings: Settings) -> str:
    return settings.secrets_key_file or os.path.join(settings.data_dir, "secrets.key")


@dataclass(frozen=True, slots=True)
class Services:
    """The core services over one pool: what the CLI's admin commands and the APIs share."""

    pool: asyncpg.Pool
    projects: ProjectService
    products: ProductService
    devices: DeviceStore
    attributes: AttributeStore
    audit: AuditStore
    keys: KeyDictionary
    registry: DeviceRegistryStore
    telemetry_queries: TelemetryQueryStore
    provisioning: ProvisioningService
    templates: TemplateService
    cas: CaService
    registration: AutoRegistration
    claiming: Claiming


async def open_services(
    url: str, pool_size: int, settings: Settings | None = None, *, clock: Clock = SYSTEM_CLOCK
) -> Services:
    settings = settings or Settings()
    sealer = Sealer(load_key(secrets_key_file(settings)))
    pool = await open_pool(url, pool_size)
    devices, audit = DeviceStore(pool, sealer), AuditStore(pool, clock=clock)
    attempts = (TokenBuckets(settings.provision_rate_per_key, settings.provision_burst_per_key)
                if settings.provision_rate_per_key > 0 else None)
    provisioning = ProvisioningService(devices, audit, attempts=attempts, clock=clock)
    return Services(
        pool=pool,
        projects=ProjectService(ProjectStore(pool, sealer), clock=clock),
        # Provisioning caches products by key: product changes evict them.
        products=ProductService(ProductStore(pool, sealer), on_change=provisioning.forget_products, clock=clock),
        devices=devices,
        attributes=AttributeStore(pool),
        audit=audit,
        keys=KeyDictionary(),
        registry=DeviceRegistryStore(pool, sealer, clock=clock),
        telemetry_queries=TelemetryQueryStore(pool),
        provisioning=provisioning,
        templates=TemplateService(TemplateStore(pool), settings.max_templates_per_project, clock=clock),
        cas=CaService(DeviceCaStore(pool), settings.max_device_cas_per_project, clock=clock),
        registration=AutoRegistration(RegistrationStore(pool, clock=clock), clock=clock),
        claiming=Claiming(ClaimStore(pool), clock=clock),
    )
