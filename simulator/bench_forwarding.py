"""The bench's forwarding scenario (``bench mqtt --forwarding``): MQTT telemetry stored with and
without one HTTP forwarding action to a local receiver, in one run on one gateway. Delivery runs
in a forwarder process of its own (``forwarding_process``: the supervisor runs one gateway worker
and ``iot-gateway forward``), or with ``--forwarding-in-process`` in the gateway process itself.

1. a device.property/report rule with one HTTP_FORWARDING action to a receiver in this process
   (``batch_size`` notifications a request), switched off and on between closed loops: off, on,
   off, on (alternating, so that the machine's other load weighs on both alike); the share of the
   rate without forwarding that the runs with it keep (the target: 70 % or more);
3. an open loop at half the forwarding run's rate: the forwarding lag, the time from a data point's
   timestamp (the gateway's, at receipt) to its notification reaching the receiver, a second at a
   time; bounded when the last seconds' lag is no more than the first seconds' plus a second;
4. the receiver must end up with every data point stored after the rule was made active.
"""

from __future__ import annotations

import asyncio
import calendar
import time
from dataclasses import replace

import aiohttp
import orjson
from aiohttp import web

from fleetgate.simulator.bench_mqtt import mqtt_fleet
from fleetgate.simulator.bench_options import BenchOptions
from fleetgate.simulator.bench_workspace import (
    BenchError,
    Workspace,
    admin,
    context,
    measure,
    notes,
    progress,
    stored_rows,
)
from fleetgate.simulator.processes import free_port
from fleetgate.simulator.report import BenchReport, Ratio, Run, Target
from fleetgate.simulator.stats import LoadResult

TARGET_SHARE = 0.7
BATCH_SIZE = 200
_DRAIN_SECONDS = 120.0


class Receiver:
    """Keeps the requests it is sent, and their lag a second; counts their data points when asked.

    Counting means parsing every body, which costs this process about a tenth of a core at the
    closed loop's rate: on a machine of two cores that would weigh on the very runs it measures.
    So a request's body is only kept as it arrives (its lag read from the last notification's
    ``event_time_ms``, found without parsing), and the bodies are parsed and counted when
    ``points`` is read: while the bench waits for delivery to end, between the measured runs.
    """

    def __init__(self) -> None:
        self.requests = 0
        self.lags: dict[int, float] = {}  # second of arrival -> the highest lag seen in it
        self._counted = 0
        self._unread: list[bytes] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = free_port()

    @property
    def points(self) -> int:
        for body in self._unread:
            self._counted += _points_in(body)
        self._unread.clear()
        return self._counted

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/push", self._push)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _push(self, request: web.Request) -> web.Response:
        body = await request.read()
        now = time.time()
        second = int(now)
        # The lag of a request's last notification: the oldest part of what it carried came before it.
        lag = now - _seconds(_last_event_time(body))
        if lag > self.lags.get(second, 0.0):
            self.lags[second] = lag
        async with self._changed:
            self._unread.append(body)
            self.requests += 1
            self._changed.notify_all()
        return web.Response(status=200)

    async def wait_points(self, count: int, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: self.points >= count)
        except TimeoutError:
            return False
        return True


_EVENT_TIME = b'"event_time_ms":"'


def _last_event_time(body: bytes) -> str:
    start = body.rindex(_EVENT_TIME) + len(_EVENT_TIME)
    return body[start:body.index(b'"', start)].decode()


def _points_in(body: bytes) -> int:
    parsed = orjson.loads(body)
    notes = parsed if isinstance(parsed, list) else [parsed]
    return sum(len(s["properties"]) for note in notes for s in note["notify_data"]["body"]["services"])


_PARSED: dict[str, float] = {}


def _seconds(iso: str) -> float:
    """yyyy-MM-ddTHH:mm:ss.SSSZ as Unix seconds; the whole seconds parsed once each."""
    whole, _, fraction = iso.rstrip("Z").partition(".")
    second = _PARSED.get(whole)
    if second is None:
        if len(_PARSED) > 4096:
            _PARSED.clear()
        second = _PARSED[whole] = float(calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")))
    return second + int(fraction or 0) / 1000


class Rule:
    """The bench's forwarding rule, through the management API: made, then switched on and off."""

    def __init__(self, management: str, token: str, project_id: str) -> None:
        self._base = f"{management}/v5/iot/{project_id}/routing-rule"
        self._headers = {"X-Auth-Token": token}
        self.rule_id = ""

    async def create(self, url: str) -> None:
        async with aiohttp.ClientSession(headers=self._headers) as http:
            async with http.post(f"{self._base}/rules", json={"rule_name": "bench", "active": False, "subject": {
                    "resource": "device.property", "event": "report"}}) as resp:
                if resp.status != 201:
                    raise BenchError(f"creating the forwarding rule: {resp.status} {await resp.text()}")
                self.rule_id = (await resp.json())["rule_id"]
            async with http.post(f"{self._base}/actions", json={
                    "rule_id": self.rule_id, "channel": "HTTP_FORWARDING",
                    "channel_detail": {"http_forwarding": {"url": url, "batch_size": BATCH_SIZE}}}) as resp:
                if resp.status != 201:
                    raise BenchError(f"creating the forwarding action: {resp.status} {await resp.text()}")

    async def switch(self, active: bool) -> None:
        async with aiohttp.ClientSession(headers=self._headers) as http:
            async with http.put(f"{self._base}/rules/{self.rule_id}", json={"active": active}) as resp:
                if resp.status != 200:
                    raise BenchError(f"switching the forwarding rule: {resp.status} {await resp.text()}")
        # Every process follows a change within a moment (a NOTIFY); give it one.
        await asyncio.sleep(0.5)


async def forwarding(options: BenchOptions, space: Workspace) -> BenchReport:
    receiver = Receiver()
    await receiver.start()
    delivery = "in the gateway process" if options.forwarding_in_process else "in a forwarder process of its own"
    progress(f"forwarding: delivery {delivery}")
    try:
        async with mqtt_fleet(space, options, listeners=("management",), management_port=free_port(),
                              forwarding_process=not options.forwarding_in_process) as fleet:
            tenant, gw, spec = fleet.tenant, fleet.gateway, fleet.spec
            token = await admin(space, "create-token", "--project", tenant.project_id)
            rule = Rule(gw.urls["management"], token, tenant.project_id)
            await rule.create(f"http://127.0.0.1:{receiver.port}/push")
            # Alternating, so that the machine's other load weighs on both alike.
            plain_runs, forwarded_runs = [], []
            stored_with_rule = 0
            for round_ in (1, 2):
                plain_runs.append(await measure(f"without forwarding, closed loop ({round_})", spec, options,
                                                unit="messages"))
                before = await stored_rows(space, tenant)
                await rule.switch(True)
                forwarded_runs.append(await measure(f"with forwarding, closed loop ({round_})", spec, options,
                                                    unit="messages"))
                stored_with_rule += await stored_rows(space, tenant) - before
                if round_ == 1:
                    # The backlog of the first run is delivered before the rule is switched off.
                    await receiver.wait_points(stored_with_rule, _DRAIN_SECONDS)
                    await rule.switch(False)
            plain, forwarded = merged(plain_runs), merged(forwarded_runs)
            rate = options.rate or forwarded.requests_per_s / 2
            if rate <= 0:
                raise BenchError(f"the gateway acknowledged no message: {dict(forwarded.errors)}")
            # The lag run starts with nothing left over from the maximum-rate runs.
            await receiver.wait_points(stored_with_rule, _DRAIN_SECONDS)
            before = await stored_rows(space, tenant)
            lag_started = time.time()
            at_rate = await measure(f"with forwarding, {rate:,.0f}/s", replace(spec, mode="open", rate=rate), options,
                                    unit="messages")
            lag_ended = time.time()
            stored_with_rule += await stored_rows(space, tenant) - before
            progress("waiting for the receiver to have every data point")
            drained = await receiver.wait_points(stored_with_rule, _DRAIN_SECONDS)
    finally:
        await receiver.stop()
    share = forwarded.datapoints_per_s / plain.datapoints_per_s if plain.datapoints_per_s else 0.0
    lags = [lag for second, lag in sorted(receiver.lags.items()) if lag_started + options.warmup <= second < lag_ended]
    head, tail = _mean(lags[: max(1, len(lags) // 4)]), _mean(lags[-max(1, len(lags) // 4):])
    bounded = bool(lags) and tail <= head + 1.0
    lag_figure = f"max {max(lags, default=0):.2f} s, first quarter {head:.2f} s, last quarter {tail:.2f} s"
    return BenchReport(
        scenario="mqtt",
        title=(f"iot-gateway bench mqtt --forwarding: {options.devices} devices, QoS {options.qos}, "
               f"{options.inflight} in flight, 3 data points a message, one HTTP_FORWARDING action "
               f"(batch_size {BATCH_SIZE}) to a local receiver, delivery {delivery}, {options.duration:g} s runs"),
        context=context(options, space, rate=rate, forwarding_delivery=(
            "gateway process" if options.forwarding_in_process else "forwarder process")),
        runs=(
            *(Run(f"without_forwarding_max_{n}", f"no forwarding rule, max throughput ({n})", r)
              for n, r in enumerate(plain_runs, 1)),
            *(Run(f"forwarding_max_{n}", f"one HTTP action, max throughput ({n})", r)
              for n, r in enumerate(forwarded_runs, 1)),
            Run("forwarding_rate", f"one HTTP action at {rate:,.0f}/s", at_rate),
        ),
        ratios=(Ratio("forwarding / no forwarding, stored data points a second", share),),
        targets=(
            Target("throughput", f">= {TARGET_SHARE:.0%} of the run without forwarding", f"{share:.0%}",
                   share >= TARGET_SHARE),
            Target("lag", "bounded at half the forwarding run's rate", lag_figure, bounded),
        ),
        checks={
            "data points stored with the rule active": stored_with_rule,
            "data points received": receiver.points,
            # At least once: a data point may come twice (a request timed out, then sent again).
            "every stored data point received": drained and receiver.points >= stored_with_rule,
            "data points received more than once": max(0, receiver.points - stored_with_rule),
        },
        notes=notes((*plain_runs, *forwarded_runs, at_rate)),
        unit="messages",
    )


def merged(runs: list[LoadResult]) -> LoadResult:
    """Two runs as one: their messages over their windows (what the ratio compares)."""
    first, *rest = runs
    return replace(first, ok=sum(r.ok for r in runs), window_s=sum(r.window_s for r in runs),
                   total_ok=sum(r.total_ok for r in runs))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
