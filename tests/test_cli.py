"""The CLI as a user runs it: `serve` on the embedded default, `admin` beside it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import aiohttp
import orjson

from fleetgate import config
from tests.support import free_port


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fleetgate", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


def cli_env(data_dir: str, http_port: int, management_port: int = 0) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(GATEWAY_DATA_DIR=data_dir, GATEWAY_HOST="127.0.0.1", GATEWAY_HTTP_PORT=str(http_port),
               GATEWAY_MANAGEMENT_PORT=str(management_port), GATEWAY_HTTPS_PORT="0", GATEWAY_MQTT_PORT="0",
               GATEWAY_MQTTS_PORT="0", GATEWAY_COAP_PORT="0")
    return env


async def test_serve_on_embedded_database_with_admin_beside_it(tmp_path) -> None:
    port, management_port = free_port(), free_port()
    env = cli_env(str(tmp_path / "data"), port, management_port)
    serve = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fleetgate", "serve", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        lines = []
        async with asyncio.timeout(60):
            while not lines or not lines[-1].startswith("management:"):
                line = (await serve.stdout.readline()).decode()
                assert line, f"serve exited early: {lines}"
                lines.append(line.strip())
        assert lines[-2:] == [f"http: http://127.0.0.1:{port}", f"management: http://127.0.0.1:{management_port}"]
        assert any("embedded PostgreSQL" in line for line in lines)

        code, project, _ = await run_cli("admin", "create-project", "cli-demo", env=env)
        assert code == 0 and len(project.strip()) == 24
        code, token, _ = await run_cli("admin", "create-token", "--project", project.strip(), env=env)
        assert code == 0 and len(token.strip()) >= 32
        code, product, _ = await run_cli(
            "admin", "create-product", "--project", project.strip(), "--name", "thermostat",
            "--provision-key", "cli-key", "--provision-secret", "cli-secret",
            "--strategy", "ALLOW_CREATE_NEW_DEVICES", env=env,
        )
        assert code == 0 and len(product.strip()) == 24

        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            request = {"deviceName": "cli-device", "provisionDeviceKey": "cli-key", "provisionDeviceSecret": "cli-secret"}
            async with http.post("/api/v1/provision", json=request) as resp:
                result = orjson.loads(await resp.read())
            assert result["status"] == "SUCCESS"
        async with aiohttp.ClientSession(f"http://127.0.0.1:{management_port}") as management:
            async with management.get(f"/v5/iot/{project.strip()}/products/{product.strip()}",
                                      headers={"X-Auth-Token": token.strip()}) as resp:
                assert resp.status == 200
                assert orjson.loads(await resp.read())["name"] == "thermostat"
    finally:
        serve.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await serve.wait() == 0


async def test_configuration_error_names_the_key(tmp_path) -> None:
    env = cli_env(str(tmp_path), 0)
    code, _, err = await run_cli("serve", "--http-port", "eighty", env=env)
    assert code == 2
    assert "setting 'http_port'" in err


async def test_migrate_is_idempotent(tmp_path) -> None:
    env = cli_env(str(tmp_path / "data"), 0)
    for _ in range(2):
        code, out, _ = await run_cli("migrate", env=env)
        assert (code, out.strip()) == (0, "migrations applied")


async def test_admin_errors_are_reported(tmp_path) -> None:
    env = cli_env(str(tmp_path / "data"), 0)
    code, _, err = await run_cli("admin", "create-token", "--project", "000000000000000000000000", env=env)
    assert code == 1
    assert "does not exist" in err


async def test_embedded_database_as_an_ordinary_user(database_url) -> None:
    """As root the embedded server runs under a system user of its own; the gateway itself
    must also work for an ordinary user. Under root, that user is the server's own one
    (it exists once any embedded server has started, as the fixture's has)."""
    import pwd
    import shutil
    import tempfile

    runner: list[str] = []
    data = tempfile.mkdtemp(prefix="gateway-user-", dir="/tmp")
    try:
        env = cli_env(f"{data}/data", 0)
        if os.geteuid() == 0:
            user = pwd.getpwnam("embedded_postgres")
            os.chown(data, user.pw_uid, user.pw_gid)
            runner = ["runuser", "-u", user.pw_name, "--"]
            env["HOME"] = data
        proc = await asyncio.create_subprocess_exec(
            *runner, sys.executable, "-m", "fleetgate", "admin", "create-project", "own-user", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert len(out.strip()) == 24
    finally:
        shutil.rmtree(data, ignore_errors=True)


async def test_create_access_key_prints_the_key_and_the_secret(database_url, tmp_path) -> None:
    from fleetgate.core import signing
    from fleetgate.storage_wiring import open_services

    env = {**cli_env(str(tmp_path), 0), "GATEWAY_DATABASE_URL": database_url}
    code, project, err = await run_cli("admin", "create-project", "ak-" + os.urandom(4).hex(), env=env)
    assert code == 0, err
    code, out, err = await run_cli("admin", "create-access-key", "--project", project.strip(), env=env)
    assert code == 0, err
    assert out.endswith("\n") and out.count("\n") == 1
    access_key, secret_key = out.split()
    services = await open_services(database_url, 2, config.build({"data_dir": str(tmp_path)}))
    try:
        assert await services.projects._store.access_key(access_key) == (project.strip(), secret_key)
    finally:
        await services.pool.close()
    assert signing.is_signed(f"SDK-HMAC-SHA256 Access={access_key}, SignedHeaders=x-sdk-date, Signature=00")


def test_every_command_prints_its_help() -> None:
    # A setting's help once said "80 %", which argparse took for a format code: serve --help crashed.
    for command in ("", "serve", "migrate", "admin", "bench", "simulate"):
        result = subprocess.run([sys.executable, "-m", "fleetgate", *filter(None, [command]), "--help"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "usage:" in result.stdout, (command, result.stderr[-2000:])
