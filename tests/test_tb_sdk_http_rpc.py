"""ThingsBoard's Python device SDK (tb-mqtt-client's TBHTTPDevice) and HTTP RPC: its RPC
subscription (a long poll, GET /api/v1/{token}/rpc) receives an operator's call, and the answer it
sends (POST /api/v1/{token}/rpc/{id}) reaches the operator."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from tests.sdk_script import running_script
from tests.http_rpc_support import command, watch_polls
from tests.support import provision_device

SCRIPT = textwrap.dedent(
    """
    import faulthandler, json, os, sys

    faulthandler.dump_traceback_later(float(sys.argv[1]), exit=True)
    from tb_device_http import TBHTTPDevice

    device = TBHTTPDevice(os.environ["GATEWAY_URL"], os.environ["DEVICE_TOKEN"])


    def on_rpc(request):  # the SDK's worker thread, with the poll's JSON
        print(json.dumps({"event": "rpc", "request": request}), flush=True)
        answered = device.send_rpc(request["method"], {"echo": request["params"]}, rpc_id=request["id"])
        print(json.dumps({"event": "answered", "response": answered}), flush=True)


    device.subscribe("rpc", on_rpc)
    print(json.dumps({"event": "subscribed"}), flush=True)
    for line in sys.stdin:  # {"do": "exit"}; the subscription's thread is a daemon
        break
    """
)


@pytest.fixture
def sdk_script(tmp_path: Path) -> Path:
    script = tmp_path / "tb_http_rpc.py"
    script.write_text(SCRIPT)
    return script


async def test_the_sdk_s_rpc_subscription_receives_a_call_and_its_answer_reaches_the_operator(
        gateway, base_url, http, management, tenant, tb_python, sdk_script, monkeypatch) -> None:
    opened = watch_polls(gateway, monkeypatch)
    device = await provision_device(http, gateway, tenant, "rpc-")
    env = {"GATEWAY_URL": base_url, "DEVICE_TOKEN": device.token}
    async with running_script(tb_python, sdk_script, 90, env=env) as client:
        await client.event("subscribed")
        async with asyncio.timeout(30):
            await opened[device.id].wait()  # the SDK's first poll waits
            status, reply = await command(management, tenant, device.id,
                                          {"method": "setGpio", "params": {"pin": 4, "value": 1}, "timeout": 10_000})
        received = await client.event("rpc")
        assert received["request"] == {"id": received["request"]["id"], "method": "setGpio",
                                       "params": {"pin": 4, "value": 1}}
        # The SDK answers with {"method", "params"}: the operator gets that body as the device's reply.
        assert (status, reply) == (200, {"response": {"method": "setGpio", "params": {"echo": {"pin": 4, "value": 1}}}})
        assert (await client.event("answered"))["response"] == {}
        await client.finish()
