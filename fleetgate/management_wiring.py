"""The management side, wired: the IoTDA-shaped REST API and the live feed's WebSocket over the
core services (the gateway serves both, with /openapi.json, on the management port)."""

from __future__ import annotations

from fleetgate.config import Settings
from fleetgate.core.attributes import AttributeService
from fleetgate.core.auth import DeviceAuthenticator
from fleetgate.core.codec import PayloadLimits
from fleetgate.core.commands import CommandService
from fleetgate.core.devices import DeviceManagement
from fleetgate.core.downlink import Downlink
from fleetgate.core.forwarding_rules import RuleService
from fleetgate.core.iotda_commands import IotdaCommands
from fleetgate.core.iotda_devices import IotdaDevices
from fleetgate.core.live import LiveHub
from fleetgate.core.ota import OtaService
from fleetgate.core.persistent_rpc import PersistentRpc
from fleetgate.core.telemetry_queries import SeriesQueries, TelemetryQueryService
from fleetgate.protocols.http.live_ws import LiveLimits, LiveWebSocket
from fleetgate.protocols.http.management import ManagementApi
from fleetgate.storage.fleet import FleetStore
from fleetgate.storage.iotda import IotdaStore
from fleetgate.storage.ota import OtaStore
from fleetgate.storage.series import SeriesStore
from fleetgate.storage_wiring import Services


def management_api(
    s: Settings, services: Services, *, auth: DeviceAuthenticator, limits: PayloadLimits, downlink: Downlink,
    persistent_rpc: PersistentRpc, iotda: tuple[IotdaStore, IotdaCommands], forwarding: RuleService,
    ota_store: OtaStore,
) -> ManagementApi:
    iotda_store, iotda_commands = iotda
    device_management = DeviceManagement(services.registry, services.products, auth)
    return ManagementApi(
        services,
        iotda=(IotdaDevices(device_management, services.products, iotda_store, auth, downlink=downlink),
               iotda_commands),
        devices=device_management,
        attributes=AttributeService(services.registry, services.attributes, limits, downlink),
        telemetry=TelemetryQueryService(services.registry, services.telemetry_queries),
        series=SeriesQueries(SeriesStore(services.pool), FleetStore(services.pool)),
        commands=CommandService(services.registry, downlink, persistent_rpc),
        claiming=services.claiming, forwarding=forwarding,
        ota=OtaService(ota_store, services.registry, downlink, max_package_bytes=s.ota_max_package_bytes),
    )


def live_websocket(
    s: Settings, services: Services, live: LiveHub, limits: PayloadLimits, downlink: Downlink
) -> LiveWebSocket:
    return LiveWebSocket(
        live, services.projects.project_of,
        TelemetryQueryService(services.registry, services.telemetry_queries),
        SeriesQueries(SeriesStore(services.pool), FleetStore(services.pool)),
        AttributeService(services.registry, services.attributes, limits, downlink), services.registry,
        LiveLimits(s.live_max_connections_per_token, s.live_max_subscriptions_per_connection,
                   s.live_buffer_updates),
    )
