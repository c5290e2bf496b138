"""``iot-gateway bench SCENARIO``: start a gateway, load it as devices do, compare with a baseline.

Scenarios, each a coroutine from (options, workspace) to a report:
http and provision (simulator.bench_http), mqtt (simulator.bench_mqtt; with
--gateways, simulator.bench_mqtt_gateway; with --iotda, simulator.bench_mqtt_iotda),
idle-connections (simulator.bench_idle), mtls (simulator.bench_mtls), coap
(simulator.bench_coap), soak (simulator.bench_soak), query (simulator.bench_query); what they share, the workspace
with its database and the servers, is in simulator.bench_workspace.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from typing import Any

import orjson

from fleetgate.config import Settings
from fleetgate.simulator import runtime
from fleetgate.simulator.bench_coap import coap
from fleetgate.simulator.bench_http import http, provision
from fleetgate.simulator.bench_idle import idle_connections
from fleetgate.simulator.bench_mqtt import mqtt
from fleetgate.simulator.bench_mqtt_gateway import gateway_api
from fleetgate.simulator.bench_forwarding import forwarding
from fleetgate.simulator.bench_mqtt_iotda import iotda_reports
from fleetgate.simulator.bench_mtls import mtls
from fleetgate.simulator.bench_options import BenchOptions
from fleetgate.simulator.bench_ota import ota
from fleetgate.simulator.bench_query import query
from fleetgate.simulator.bench_soak import soak
from fleetgate.simulator.bench_workspace import BenchError, Workspace, wal_ahead, workspace
from fleetgate.simulator.mosquitto import MosquittoMissing
from fleetgate.simulator.processes import ServerFailed, raise_open_files_limit
from fleetgate.simulator.report import BenchReport, format_table
from fleetgate.simulator.worker import WorkerFailed


async def _mqtt(options: BenchOptions, space: Workspace) -> BenchReport:
    if options.iotda:
        return await iotda_reports(options, space)
    if options.forwarding:
        return await forwarding(options, space)
    return await (gateway_api if options.gateways else mqtt)(options, space)


SCENARIOS: dict[str, Callable[[BenchOptions, Workspace], Coroutine[Any, Any, BenchReport]]] = {
    "http": http,
    "provision": provision,
    "mqtt": _mqtt,
    "idle-connections": idle_connections,
    "mtls": mtls,
    "coap": coap,
    "soak": soak,
    "ota": ota,
    "query": query,
}


def run(options: BenchOptions, settings: Settings) -> int:
    """The command: 0 when every request succeeded and every check held."""
    scenario = SCENARIOS[options.scenario]
    raise_open_files_limit()  # for this process, the generators and the servers (children inherit it)
    try:
        with workspace(settings, database=options.needs_database, wal_ahead=wal_ahead(options)) as space:
            report = runtime.run(scenario(options, space))
    except (ServerFailed, WorkerFailed, MosquittoMissing, OSError) as exc:
        raise BenchError(str(exc)) from exc
    except TimeoutError:
        raise BenchError("a load run did not end within its deadline") from None
    if options.json:
        sys.stdout.buffer.write(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(format_table(report))
    sys.stdout.flush()
    return 0 if report.ok else 1
