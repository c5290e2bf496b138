"""The container image, built from deploy/Dockerfile with buildah and started with its own
entry point: it answers /healthz and /readyz. Slow (minutes the first time).

No image registry is reachable here, so the base is made locally: a minimal Debian with
python3 (mmdebstrap, from the Debian mirror), cached under .cache/image/ and imported
into buildah's storage once. The dependencies' wheels are built on this machine and
handed to the build (PIP_OPTIONS: no index). buildah runs with --isolation chroot,
which shares the host's network: the test reaches the container on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import aiohttp
import pytest

from tests.support import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "image"
BASE_IMAGE = "localhost/iot-gateway-base:bookworm-python3"
IMAGE = "localhost/iot-gateway:test"
_MIRROR = "http://deb.debian.org/debian"


def run(*args: str, timeout: float = 900, **kwargs) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)
    if done.returncode:
        raise AssertionError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def have_image(name: str) -> bool:
    return subprocess.run(["buildah", "inspect", "--type", "image", name], capture_output=True).returncode == 0


def base_image() -> str:
    """Debian bookworm with python3 and venv, built once and kept (rootfs tarball and image)."""
    if have_image(BASE_IMAGE):
        return BASE_IMAGE
    CACHE.mkdir(parents=True, exist_ok=True)
    tarball = CACHE / "base-rootfs.tar"
    if not tarball.is_file():
        partial = CACHE / "base-rootfs.tar.partial"
        run("mmdebstrap", "--variant=minbase", "--format=tar", "--include=python3,python3-venv,ca-certificates",
            "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*", "bookworm", str(partial), _MIRROR)
        partial.rename(tarball)
    container = run("buildah", "from", "scratch").strip()
    try:
        run("buildah", "add", container, str(tarball), "/")
        run("buildah", "config", "--cmd", "/usr/bin/python3", container)
        run("buildah", "commit", "--quiet", container, BASE_IMAGE)
    finally:
        run("buildah", "rm", container)
    return BASE_IMAGE


def build_context(directory: Path) -> Path:
    """The repository's files as they are now, plus every wheel the install needs."""
    context = directory / "context"
    files = run("git", "ls-files", "--cached", "--others", "--exclude-standard", cwd=ROOT).split("\n")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, context / name)
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    # Dependencies' wheels are cached; the project's own is rebuilt each time.
    for old in wheels.glob("fleetgate-*.whl"):
        old.unlink()
    with open(ROOT / "pyproject.toml", "rb") as file:
        backend = tomllib.load(file)["build-system"]["requires"]  # for pip's isolated build in the image
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels), f"{context}[nats]",
        *backend, "wheel")
    shutil.copytree(wheels, context / "wheels")
    return context


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    if shutil.which("buildah") is None or shutil.which("mmdebstrap") is None:
        pytest.skip("buildah and mmdebstrap are needed (apt-get install buildah mmdebstrap; .ci/run does)")
    base = base_image()
    context = build_context(tmp_path_factory.mktemp("image"))
    # Docker's format: OCI's has no HEALTHCHECK (buildah drops it with a warning).
    run("buildah", "bud", "--isolation", "chroot", "--format", "docker", "--layers=false", "--quiet",
        "-f", "deploy/Dockerfile",
        "--build-arg", f"PYTHON_IMAGE={base}",
        "--build-arg", "PIP_OPTIONS=--no-index --find-links=/src/wheels", "-t", IMAGE, ".", cwd=context)
    yield IMAGE
    subprocess.run(["buildah", "rmi", IMAGE], capture_output=True)


async def test_the_image_starts_and_answers_its_health_endpoints(image, tmp_path) -> None:
    inspected = json.loads(run("buildah", "inspect", "--type", "image", image))
    config = inspected["OCIv1"]["config"]
    healthcheck = inspected["Docker"]["config"]["Healthcheck"]
    assert healthcheck["Test"][0] == "CMD" and "/healthz" in healthcheck["Test"][-1]
    assert config["User"] == "10001:10001"
    assert {"1883/tcp", "8883/tcp", "8080/tcp", "8443/tcp", "8081/tcp", "5683/udp"} <= set(config["ExposedPorts"])
    entry_point = config["Entrypoint"] + config["Cmd"]
    assert entry_point == ["iot-gateway", "serve"]

    container = run("buildah", "from", image).strip()
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, 10001, 10001)
    management = free_port()
    env = {"GATEWAY_MANAGEMENT_PORT": str(management), "GATEWAY_HTTP_PORT": str(free_port()),
           "GATEWAY_MQTT_PORT": "0", "GATEWAY_MQTTS_PORT": "0", "GATEWAY_HTTPS_PORT": "0",
           "GATEWAY_COAP_PORT": "0", "GATEWAY_HOST": "127.0.0.1"}
    flags = [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]
    # The shell prints its process id (chroot isolation shares the host's process ids) and
    # becomes the entry point, so that the test can send it SIGTERM itself; `timeout`
    # bounds its life should the test die first.
    proc = await asyncio.create_subprocess_exec(
        "buildah", "run", "--isolation", "chroot", "--volume", f"{data}:/var/lib/gateway/data", *flags,
        container, "--", "timeout", "-s", "TERM", "300", "sh", "-c", 'echo "pid $$"; exec "$@"', "sh",
        *entry_point, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output: list[str] = []
    pid = None
    try:
        async with asyncio.timeout(180):
            while not any(line.startswith("management:") for line in output):
                line = (await proc.stdout.readline()).decode()
                assert line, "the container exited:\n" + "".join(output[-40:])
                output.append(line)
                if line.startswith("pid ") and pid is None:
                    pid = int(line.split()[1])
        async with aiohttp.ClientSession(f"http://127.0.0.1:{management}") as client:
            async with client.get("/healthz") as resp:
                assert resp.status == 200
            async with client.get("/readyz") as resp:
                assert resp.status == 200, await resp.text()
        # The image's own HEALTHCHECK command, run in the container beside the gateway.
        check = await asyncio.create_subprocess_exec(
            "buildah", "run", "--isolation", "chroot", *flags, container, "--", *healthcheck["Test"][1:],
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        check_output, _ = await check.communicate()
        assert check.returncode == 0, check_output.decode()
        os.kill(pid, signal.SIGTERM)
        async with asyncio.timeout(60):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
            proc.kill()
            await proc.wait()
        # The embedded PostgreSQL the entry point started in the data directory.
        postmaster = data / "postgres" / "postmaster.pid"
        if postmaster.is_file():
            os.kill(int(postmaster.read_text().split()[0]), signal.SIGINT)
        subprocess.run(["buildah", "rm", container], capture_output=True)


def test_the_image_carries_the_nats_extra(image) -> None:
    container = run("buildah", "from", image).strip()
    try:
        out = run("buildah", "run", "--isolation", "chroot", container, "--",
                  "python3", "-c", "import nats; print('nats-py ok')")
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True)
    assert "nats-py ok" in out
