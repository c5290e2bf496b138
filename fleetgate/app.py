"""The composition root's one place that composes the gateway: the core, storage and the front-ends,
started in order and stopped in reverse. What each concern is built from lives beside it:
fleetgate.storage_wiring (the database and the services over it), fleetgate.front_ends (the device
listeners), fleetgate.management_wiring (the management API and the live feed)."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import ssl
from typing import TYPE_CHECKING

from aiohttp import web

from fleetgate import front_ends
from fleetgate.config import Settings
from fleetgate.core import metrics
from fleetgate.core.admission import AdmissionLimits, ConnectionGate
from fleetgate.core.auth import DeviceAuthenticator
from fleetgate.core.backoff import FailureBackoff
from fleetgate.core.codec import PayloadLimits
from fleetgate.core.device_channel import SessionLimits
from fleetgate.core.device_service import DeviceService
from fleetgate.core.downlink import Downlink
from fleetgate.core.health import Readiness
from fleetgate.core.ingest import IngestPipeline, IngestSettings
from fleetgate.core.iotda_commands import IotdaCommands
from fleetgate.core.iotda_messages import IotdaMessages
from fleetgate.core.iotda_uplink import IotdaUplink
from fleetgate.core.live import CommittedFeed, LiveHub
from fleetgate.core.live_status import ReportingPresence
from fleetgate.core.ota_downloads import DownloadLimits, OtaDownloads
from fleetgate.core.ota_metrics import IN_FLIGHT as OTA_IN_FLIGHT
from fleetgate.core.ota_progress import OtaProgress
from fleetgate.core.persistent_rpc import PersistentRpc, PersistentRpcSettings
from fleetgate.core.presence import Presence, PresenceSettings
from fleetgate.core.recovery import Recovery
from fleetgate.core.retention import Retention
from fleetgate.core.subdevices import SubDeviceLimits, SubDevices
from fleetgate.core.tasks import OwnedTasks
from fleetgate.forwarding_runtime import ForwardingRuntime
from fleetgate.front_ends import Listener
from fleetgate.management_wiring import live_websocket, management_api
from fleetgate.protocols.coap.server import CoapServer
from fleetgate.protocols.http.device_server import DeviceHttpServer
from fleetgate.protocols.http.live_ws import LiveWebSocket
from fleetgate.protocols.http.openapi import openapi_route
from fleetgate.protocols.http.server import Health, HttpServer, build_app
from fleetgate.protocols.mqtt.server import MqttServer
from fleetgate.protocols.tls import DeviceTls
from fleetgate.storage.certificates import CertificateWatch
from fleetgate.storage.database import ping, probe
from fleetgate.storage.downlink_bus import PgDownlinkBus
from fleetgate.storage.iotda import IotdaStore
from fleetgate.storage.layout_conversion import settle as settle_layout
from fleetgate.storage.live_bus import PgLiveBus
from fleetgate.storage.ota import OtaStore
from fleetgate.storage.persistent_rpc import PersistentRpcStore
from fleetgate.storage.presence import PresenceStore
from fleetgate.storage.retention import RetentionStore
from fleetgate.storage.subdevices import SubDeviceStore
from fleetgate.storage.telemetry import TelemetryWriter
from fleetgate.storage.telemetry_layout import Layout
from fleetgate.storage_wiring import Services, downlink_bus, open_services

if TYPE_CHECKING:
    from fleetgate.storage.nats_bus import NatsDownlinkBus

log = logging.getLogger(__name__)
# The least time each closing step gets once the shutdown deadline has passed.
_CLOSE_GRACE = 0.5


class Gateway:
    def __init__(self, settings: Settings, url: str, health: Health | None = None) -> None:
        """``health``: what /healthz adds (with workers: the supervisor's view of them all)."""
        self.settings = settings
        self._url = url
        self._health = health
        self._tasks = OwnedTasks()
        self.listeners: list[Listener] = []
        self._services: Services | None = None
        self._pipeline: IngestPipeline | None = None
        self._telemetry: TelemetryWriter | None = None
        self._http: HttpServer | None = None
        self._live_bus: PgLiveBus | None = None
        self._live: LiveHub | None = None
        self._live_ws: LiveWebSocket | None = None
        self._device_http: DeviceHttpServer | None = None
        self._mqtt: MqttServer | None = None
        self._coap: CoapServer | None = None
        self._certificates: CertificateWatch | None = None
        self._bus: PgDownlinkBus | NatsDownlinkBus | None = None
        self._downlink: Downlink | None = None
        self._device_service: DeviceService | None = None
        self._http_app: web.Application | None = None
        self._tls: list[DeviceTls] = []
        self._retention: Retention | None = None
        self._presence: Presence | None = None
        self._persistent_rpc: PersistentRpc | None = None
        self._ota_progress: OtaProgress | None = None
        self._iotda_commands: IotdaCommands | None = None
        self._forwarding: ForwardingRuntime | None = None

    @property
    def presence(self) -> Presence:
        assert self._presence is not None, "the gateway is not started"
        return self._presence

    @property
    def persistent_rpc(self) -> PersistentRpc:
        assert self._persistent_rpc is not None, "the gateway is not started"
        return self._persistent_rpc

    @property
    def iotda_messages(self) -> IotdaMessages:
        assert self._iotda_commands is not None, "the gateway is not started"
        return self._iotda_commands.messages_down

    @property
    def ota_progress(self) -> OtaProgress:
        assert self._ota_progress is not None, "the gateway is not started"
        return self._ota_progress

    @property
    def services(self) -> Services:
        assert self._services is not None, "the gateway is not started"
        return self._services

    @property
    def http_app(self) -> web.Application:
        """The management application, for introspection (its router is part of what /openapi.json describes)."""
        assert self._http_app is not None, "the gateway is not started"
        return self._http_app

    async def start(self) -> None:
        s = self.settings
        self._services = services = await open_services(self._url, s.db_pool_size, s)
        layout = await settle_layout(services.pool, Layout(s.telemetry_layout))
        self._forwarding = forwarding = ForwardingRuntime(s, self._url, services.pool)
        await forwarding.start()
        self._live_bus = live_bus = PgLiveBus(self._url, services.pool)
        await live_bus.start()
        self._live = live = LiveHub(live_bus)
        live.start()
        # Each writer keeps its connection between batches; the pool's other users keep one at least.
        self._telemetry = TelemetryWriter(services.pool, services.keys, outbox=forwarding.outbox, layout=layout,
                                          kept=min(s.writers, s.db_pool_size - 1))
        self._pipeline = IngestPipeline(
            CommittedFeed(self._telemetry, live),
            IngestSettings(
                capacity_rows=s.ingest_queue_rows,
                batch_max_rows=s.batch_max_rows,
                batch_max_age=s.batch_max_age_ms / 1000,
                batch_min_age=s.batch_min_age_ms / 1000,
                writers=s.writers,
                retry_max_delay=s.db_retry_max_seconds,
            ),
            Recovery(functools.partial(probe, self._url)),
        )
        self._pipeline.start()
        if s.retention_interval_seconds:
            store = RetentionStore(services.pool, s.telemetry_ttl_days, s.audit_retention_days,
                                   s.device_message_retention_days, s.rpc_persistent_retention_days)
            self._retention = Retention(store, s.retention_interval_seconds)
            self._retention.start()
        if metrics.MULTIPROCESS:
            self._tasks.spawn(metrics.flush_every_second())
        backoff = (FailureBackoff(s.auth_failures_per_address, s.auth_block_seconds)
                   if s.auth_failures_per_address else None)
        auth = DeviceAuthenticator(services.devices, s.auth_cache_seconds, certificates=services.registration,
                                   backoff=backoff)
        limits = PayloadLimits(s.max_key_length, s.max_string_length, s.max_datapoints_per_message)
        self._bus = bus = downlink_bus(s, self._url, services.pool)
        self._downlink = downlink = Downlink(SessionLimits(s.max_payload_bytes, s.mqtt_max_inflight), bus)
        bus.receiver = downlink.receive
        self._persistent_rpc = persistent_rpc = PersistentRpc(
            PersistentRpcStore(services.pool), services.registry, downlink,
            PersistentRpcSettings(round(s.rpc_persistent_ttl_seconds * 1000), s.rpc_persistent_retries),
        )
        await bus.start()
        self._presence = presence = ReportingPresence(PresenceStore(services.pool), PresenceSettings(
            round(s.device_inactivity_timeout_seconds * 1000), s.presence_flush_seconds,
        ))
        presence.hub = live
        presence.sample(("mqtt", "http", "coap"))
        presence.start()
        ota_store = OtaStore(services.pool)
        self._ota_progress = OtaProgress(ota_store, s.ota_metrics_interval_seconds)
        self._ota_progress.start()
        ota_downloads = OtaDownloads(ota_store, DownloadLimits(
            max_chunk_bytes=s.ota_max_chunk_bytes, max_in_flight=s.ota_max_downloads_in_flight,
            chunk_rate_per_device=s.ota_chunk_rate_per_device,
            chunk_burst_per_device=max(1, round(2 * s.ota_chunk_rate_per_device)), cache_bytes=s.ota_cache_bytes,
        ))
        metrics.sample(OTA_IN_FLIGHT, lambda: ota_downloads.in_flight)
        iotda_store = IotdaStore(services.pool)
        iotda_uplink = IotdaUplink(iotda_store, services.telemetry_queries, downlink)
        forwarding.outbox.follow_services(iotda_uplink.services_of)
        self._iotda_commands = iotda_commands = IotdaCommands(
            services.registry, downlink, iotda_store, iotda_uplink, timeout=s.iotda_command_timeout_seconds)

        def listening(device_id: str) -> None:
            """A device takes requests here: its persistent calls and its cached messages down go."""
            persistent_rpc.listening(device_id)
            iotda_commands.messages_down.listening(device_id)

        downlink.on_listening = listening
        downlink.on_revoked = auth.forget
        self._device_service = device_service = DeviceService(
            iotda=iotda_uplink, auth=auth, provisioning=services.provisioning, pipeline=self._pipeline, attributes=services.attributes,
            downlink=downlink, limits=limits, ack_stored=s.ack == "stored", presence=presence,
            claiming=services.claiming, ota=(ota_downloads, self._ota_progress),
            subdevices=SubDevices(SubDeviceStore(services.pool), SubDeviceLimits(
                s.gateway_max_subdevices, s.gateway_max_devices_per_message, s.gateway_default_product,
            )),
            # One gate for every TCP device listener: a source's connections are counted together.
            gate=ConnectionGate(AdmissionLimits(
                s.max_connections_per_address, s.connection_rate_per_address, s.connection_burst_per_address,
            )),
        )
        self._device_http = front_ends.device_http(s, device_service)
        if s.http_port:
            port = await self._device_http.start(s.host, s.http_port)
            self.listeners.append(front_ends.listener("http", s.host, port))
        device_tls = await self._device_tls()
        if s.https_port and device_tls is not None:
            port = await self._device_http.start(s.host, s.https_port, device_tls.context)
            self.listeners.append(front_ends.listener("https", s.host, port))

        self._mqtt = front_ends.mqtt(s, device_service)
        if s.mqtt_port:
            port = await self._mqtt.start(s.host, s.mqtt_port)
            self.listeners.append(front_ends.listener("mqtt", s.host, port))
        if s.mqtts_port and device_tls is not None:
            port = await self._mqtt.start(s.host, s.mqtts_port, device_tls.context)
            self.listeners.append(front_ends.listener("mqtts", s.host, port))

        if s.coap_port:
            self._coap = front_ends.coap(s, device_service)
            port = await self._coap.start(s.host, s.coap_port)
            self.listeners.append(front_ends.listener("coap", s.host, port))

        management = management_api(
            s, services, auth=auth, limits=limits, downlink=downlink, persistent_rpc=persistent_rpc,
            iotda=(iotda_store, iotda_commands), forwarding=forwarding.rules, ota_store=ota_store,
        )
        self._live_ws = live_ws = live_websocket(s, services, live, limits, downlink)
        readiness = Readiness(
            database=lambda: ping(services.pool),
            queue_saturated=lambda: self._pipeline is not None and self._pipeline.saturated,
            listening=self._listening,
        )
        app = build_app([*management.routes(), openapi_route(), *live_ws.routes()], s.max_payload_bytes, readiness.report, self._health)
        self._http_app = app
        self._http = HttpServer(app)
        if s.management_port:
            port = await self._http.start(s.host, s.management_port)
            self.listeners.append(front_ends.listener("management", s.host, port))

    async def _device_tls(self) -> DeviceTls | None:
        """The device listeners' TLS, when a TLS listener is configured. A client certificate is
        optional, as on ThingsBoard: devices with X509_CERTIFICATE credentials or a certificate
        from a registered device CA present theirs, others use tokens over TLS. The trust
        anchors follow the database without a restart."""
        s = self.settings
        if not (s.tls_cert_file and s.tls_key_file and (s.https_port or s.mqtts_port)):
            return None
        # The credentials' hashed directory goes in the data directory: it is writable where the
        # root file system is not (the Kubernetes manifests), and one process's crash leaves it
        # for the next start to delete.
        os.makedirs(s.data_dir, exist_ok=True)
        device_tls = DeviceTls(s.tls_cert_file, s.tls_key_file, anchors_in=s.data_dir)
        self._tls.append(device_tls)
        self._certificates = CertificateWatch(self._url, device_tls.set_anchors, device_tls.add_anchors)
        await self._certificates.start()
        return device_tls

    def reload_tls(self) -> bool:
        """SIGHUP: the TLS listeners read tls_cert_file and tls_key_file again; connections
        already open keep their session. A pair that does not load is refused, logged, and
        the one in use stays. True when every listener took the new pair."""
        ok = True
        for tls in self._tls:
            try:
                tls.reload()
            except (OSError, ssl.SSLError) as exc:
                log.error("TLS certificate not reloaded, the previous one stays in use: %s", exc)
                ok = False
        if ok and self._tls:
            log.info("TLS certificate reloaded from %s", self.settings.tls_cert_file)
        return ok

    def _listening(self) -> bool:
        return all(server.serving for server in (self._device_http, self._mqtt) if server is not None)

    async def stop(self) -> None:
        """Stop accepting, drain the ingest queue (answering what it held), then close the pool:
        all within shutdown_timeout_seconds (and a second's grace for the closing steps)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_timeout_seconds

        def left() -> float:
            return max(deadline - loop.time(), _CLOSE_GRACE)

        for server in (self._device_http, self._mqtt, self._coap, self._http):
            if server is not None:
                await server.stop_accepting()
        if self._pipeline is not None:
            await self._pipeline.stop(self.settings.shutdown_timeout_seconds)
        if self._telemetry is not None:
            await self._telemetry.close()
        if self._device_http is not None:
            await self._device_http.close(min(left(), 5.0))
        if self._mqtt is not None:
            # MQTT 5 clients get DISCONNECT 0x8B (server shutting down), after the
            # acknowledgements of everything the drain stored.
            await self._mqtt.close()
        if self._coap is not None:
            await self._coap.close()
        if self._forwarding is not None:
            # After the drain: what it committed waits in the outbox for the next start, or another replica.
            await self._forwarding.stop()
        if self._presence is not None:
            # After the front-ends: the connections they closed are written as ended now.
            await self._presence.stop(min(left(), 5.0))
        if self._certificates is not None:
            await self._certificates.stop()
        for tls in self._tls:
            tls.close()
        if self._device_service is not None:
            await self._device_service.close()
        if self._persistent_rpc is not None:
            await self._persistent_rpc.close()
        if self._iotda_commands is not None:
            await self._iotda_commands.close()
        if self._downlink is not None:
            await self._downlink.close()
        if self._bus is not None:
            await self._bus.stop()
        if self._retention is not None:
            await self._retention.stop()
        if self._live_ws is not None:
            await self._live_ws.close()
        if self._live is not None:
            await self._live.close()
        if self._live_bus is not None:
            await self._live_bus.stop()
        if self._http is not None:
            await self._http.close()
        if self._services is not None:
            try:
                await asyncio.wait_for(self._services.pool.close(), left())
            except TimeoutError:
                log.warning("database connections still busy at the shutdown deadline: terminated")
                self._services.pool.terminate()
        await self._tasks.finish()
        if metrics.MULTIPROCESS:
            metrics.flush()


