"""A virtual environment of pinned requirements for a client under test, built once and cached.

Some clients the tests drive cannot share the test environment (tb-mqtt-client installs its
own ``paho``, thingsboard-gateway pins its own dependencies), so each gets an environment at
<repo root>/.cache/NAME (git-ignored). It is built in a temporary directory and renamed into
place, so an interrupted build never leaves a half-installed cache behind, and a changed
requirement list rebuilds it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(__file__).resolve().parent.parent / ".cache"
_MARKER = "requirements.txt"


@dataclass(frozen=True, slots=True)
class CachedVenv:
    directory: Path
    requirements: tuple[str, ...]

    @property
    def python(self) -> Path:
        return python_path(self.directory)

    def is_ready(self, directory: Path | None = None) -> bool:
        directory = directory or self.directory
        marker = directory / _MARKER
        return (python_path(directory).exists() and marker.exists()
                and marker.read_text().split() == list(self.requirements))

    async def ensure(self) -> Path:
        """The environment's interpreter, building the environment first if needed."""
        if self.is_ready():
            return self.python
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        building = self.directory.with_name(f"{self.directory.name}.building-{os.getpid()}")
        shutil.rmtree(building, ignore_errors=True)
        try:
            await _run(sys.executable, "-m", "venv", building)
            await _run(python_path(building), "-m", "pip", "install", "--quiet", *self.requirements)
            (building / _MARKER).write_text("\n".join(self.requirements) + "\n")
            # Another process may have finished first: its environment is as good as ours.
            if not self.is_ready():
                shutil.rmtree(self.directory, ignore_errors=True)
                try:
                    building.rename(self.directory)
                except OSError:
                    if not self.is_ready():
                        raise
        finally:
            shutil.rmtree(building, ignore_errors=True)
        return self.python

    def site_packages(self) -> Path:
        if os.name == "nt":
            return self.directory / "Lib/site-packages"
        return next((self.directory / "lib").glob("python3*/site-packages"))


def python_path(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


async def _run(*args: str | Path) -> None:
    process = await asyncio.create_subprocess_exec(
        *map(str, args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        command = " ".join(map(str, args))
        raise RuntimeError(f"{command} failed ({process.returncode}):\n{output.decode(errors='replace')}")
