"""A virtual environment with ThingsBoard IoT Gateway (PyPI's ``thingsboard-gateway``), built once
and cached at <repo root>/.cache/tbgw-venv (git-ignored), as tests/tb_sdk_venv.py does for
tb-mqtt-client: the bridge pins dependencies of its own (its own tb-mqtt-client and paho among
them), so it runs from its own interpreter, unchanged.

    python -m tests.tb_gateway_venv      # build (if needed) and print the interpreter path
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.cached_venv import CACHE, CachedVenv

REQUIREMENTS = ("thingsboard-gateway==3.8.5",)
VENV = CachedVenv(CACHE / "tbgw-venv", REQUIREMENTS)


async def ensure() -> Path:
    """The environment's interpreter, building the environment first if needed."""
    return await VENV.ensure()


if __name__ == "__main__":
    print(asyncio.run(ensure()))
