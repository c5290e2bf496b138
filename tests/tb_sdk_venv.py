"""A virtual environment with ThingsBoard's Python device SDK (tb-mqtt-client), built once and cached.

tb-mqtt-client depends on tb-paho-mqtt-client, which installs the same ``paho``
package as paho-mqtt (used by the other tests), so the SDK gets its own
environment at <repo root>/.cache/tb-venv (git-ignored). The environment is
built in a temporary directory and renamed into place, so an interrupted build
never leaves a half-installed cache behind, and a changed requirement list rebuilds it.

    python -m tests.tb_sdk_venv      # build (if needed) and print the interpreter path
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

# The SDK's sdk_utils pip-installs mmh3 at first import when it is missing:
# install it up front so that no test run installs packages behind our back.
REQUIREMENTS = ("tb-mqtt-client==1.13.14", "mmh3")
VENV_DIR = Path(__file__).resolve().parent.parent / ".cache" / "tb-venv"
_MARKER = "tb-requirement.txt"


def python_path(venv: Path = VENV_DIR) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def is_ready(venv: Path = VENV_DIR) -> bool:
    marker = venv / _MARKER
    return python_path(venv).exists() and marker.exists() and marker.read_text().split() == list(REQUIREMENTS)


async def _run(*args: str | Path) -> None:
    process = await asyncio.create_subprocess_exec(
        *map(str, args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        command = " ".join(map(str, args))
        raise RuntimeError(f"{command} failed ({process.returncode}):\n{output.decode(errors='replace')}")


async def ensure(venv: Path = VENV_DIR) -> Path:
    """The SDK environment's interpreter, building the environment first if needed."""
    if is_ready(venv):
        return python_path(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    building = venv.with_name(f"{venv.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    try:
        await _run(sys.executable, "-m", "venv", building)
        await _run(python_path(building), "-m", "pip", "install", "--quiet", *REQUIREMENTS)
        (building / _MARKER).write_text("\n".join(REQUIREMENTS) + "\n")
        # Another process may have finished first: its environment is as good as ours.
        if not is_ready(venv):
            shutil.rmtree(venv, ignore_errors=True)
            try:
                building.rename(venv)
            except OSError:
                if not is_ready(venv):
                    raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return python_path(venv)


def site_packages(venv: Path = VENV_DIR) -> Path:
    """Where the SDK's modules (tb_device_http.py...) are installed."""
    return next((venv / "lib").glob("python3*/site-packages")) if os.name != "nt" else venv / "Lib/site-packages"


if __name__ == "__main__":
    print(asyncio.run(ensure()))
