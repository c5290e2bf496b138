"""A virtual environment with ThingsBoard's Python device SDK (tb-mqtt-client), built once and
cached at <repo root>/.cache/tb-venv (git-ignored): tb-mqtt-client depends on tb-paho-mqtt-client,
which installs the same ``paho`` package as paho-mqtt (used by the other tests).

    python -m tests.tb_sdk_venv      # build (if needed) and print the interpreter path
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.cached_venv import CACHE, CachedVenv

# The SDK's sdk_utils pip-installs mmh3 at first import when it is missing:
# install it up front so that no test run installs packages behind our back.
REQUIREMENTS = ("tb-mqtt-client==1.13.14", "mmh3")
VENV = CachedVenv(CACHE / "tb-venv", REQUIREMENTS)


async def ensure() -> Path:
    """The SDK environment's interpreter, building the environment first if needed."""
    return await VENV.ensure()


if __name__ == "__main__":
    print(asyncio.run(ensure()))
