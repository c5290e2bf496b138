"""A client SDK driven as a script in its own virtual environment: JSON commands in, JSON events out.

The test writes one JSON command a line to the script's stdin ({"do": "connect", ...}),
the script calls the SDK and prints one JSON event a line on stdout as things happen
(its callbacks included), so the test can act at the right moment. The SDK's own log
goes to stderr, read as it comes and kept for the end. Every wait is bounded on both
sides: the test kills the script (by its PID) when the block ends, and the script ends
itself after the time limit it is given as its first argument.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import textwrap
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson

EVENT_TIMEOUT = 30.0  # seconds the test waits for one event

# The start of a script driving one of tb-mqtt-client's MQTT clients (TBDeviceMqttClient, or
# TBGatewayMqttClient built on it): the script then imports its client and reads its commands.
# connect() hooks the client's paho client and session limits to report, as events, the CONNACK,
# the SUBACKs (``subscribed`` once all of the client's own subscriptions are granted), the session
# limits, and each PUBACK (waited for by wait_published).
TB_MQTT_PREAMBLE = textwrap.dedent(
    """
    import faulthandler, json, logging, sys, threading

    faulthandler.dump_traceback_later(float(sys.argv[1]), exit=True)
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                        format="%(levelname)s %(name)s %(message)s")

    WAIT = 15
    lock = threading.Lock()


    def emit(event, **fields):
        with lock:
            print(json.dumps({"event": event, **fields}, default=repr), flush=True)


    def commands():  # (do, the command's other fields) for each command on stdin
        for line in sys.stdin:
            command = json.loads(line)
            yield command.pop("do"), command


    client = None
    published = {}  # mid -> PUBACK reason code
    puback = threading.Condition()
    subacks = []
    subscribed = threading.Event()
    limits = threading.Event()


    def on_publish(original):
        def hook(paho_client, userdata, mid, reason=None, properties=None):
            with puback:
                published[mid] = getattr(reason, "value", reason)
                puback.notify_all()
            original(paho_client, userdata, mid, reason, properties)
        return hook


    def on_subscribe(original, subscriptions):
        def hook(paho_client, userdata, mid, reasons, properties=None):
            subacks.extend(r.value for r in reasons)
            if len(subacks) >= subscriptions:
                subscribed.set()
            if original is not None:  # the device client has none, the gateway client has one
                original(paho_client, userdata, mid, reasons, properties)
        return hook


    def on_connect(original):
        def hook(paho_client, userdata, flags, reason, properties):
            emit("connack", reason=reason.value, properties=properties.json() if properties else None)
            original(paho_client, userdata, flags, reason, properties)
        return hook


    def on_limits(original):
        def hook(request_id, response, *args, **kwargs):
            original(request_id, response, *args, **kwargs)
            emit("session_limits", response=response)
            limits.set()
        return hook


    def connect(sdk_client, subscriptions):  # the client subscribes to that many filters on CONNACK
        paho = sdk_client._client
        paho.on_publish = on_publish(paho.on_publish)
        paho.on_subscribe = on_subscribe(paho.on_subscribe, subscriptions)
        paho.on_connect = on_connect(paho.on_connect)
        sdk_client.service_configuration_callback = on_limits(sdk_client.service_configuration_callback)
        sdk_client.connect(keepalive=60)
        return paho


    def wait_published(info):
        mids = info.mid() if isinstance(info.mid(), list) else [info.mid()]
        with puback:
            done = puback.wait_for(lambda: all(m in published for m in mids), WAIT)
        return {"acked": done, "reasons": [published.get(m) for m in mids], "messages": len(mids)}


    def on_attribute_response(content, exception):
        emit("attribute_response", content=content, error=repr(exception) if exception else None)
    """
)


class ScriptClient:
    """One running script: send commands, await its events, read its log at the end."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []
        assert process.stderr is not None
        # Read the log as it comes, so that a chatty SDK never blocks on a full pipe.
        self.log_reader = asyncio.ensure_future(process.stderr.read())
        self.log = ""

    async def send(self, do: str, **fields: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(orjson.dumps({"do": do, **fields}) + b"\n")
        await self.process.stdin.drain()

    async def event(self, name: str, timeout: float = EVENT_TIMEOUT) -> dict[str, Any]:
        """The next event called ``name`` (earlier events of other names are kept in ``events``)."""
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                line = await self.process.stdout.readline()
                if not line:
                    raise AssertionError(f"the SDK script ended ({await self.process.wait()}) before {name!r}; "
                                         f"events: {self.events}")
                event = json.loads(line)
                self.events.append(event)
                if event["event"] == name:
                    return event

    async def call(self, do: str, event: str, **fields: Any) -> dict[str, Any]:
        await self.send(do, **fields)
        return await self.event(event)

    async def finish(self) -> str:
        """Exit, and the SDK's log."""
        await self.send("exit")
        assert self.process.stdin is not None
        self.process.stdin.close()
        async with asyncio.timeout(EVENT_TIMEOUT):
            await self.process.wait()
            self.log = (await self.log_reader).decode(errors="replace")
        assert self.process.returncode == 0, self.log
        return self.log


@asynccontextmanager
async def running_script(
    python: Path, script: Path, limit: float, *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> AsyncIterator[ScriptClient]:
    """``python script limit`` until the block ends, killed by its PID if still running then
    (its log is then in ``log``); ``env``: more environment variables."""
    process = await asyncio.create_subprocess_exec(
        str(python), str(script), str(limit),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NO_PROXY": "127.0.0.1,localhost", **(env or {})}, cwd=cwd,
    )
    client = ScriptClient(process)
    try:
        yield client
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        if not client.log:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    client.log = (await client.log_reader).decode(errors="replace")
        client.log_reader.cancel()
