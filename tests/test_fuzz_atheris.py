"""The atheris harnesses in fuzz/ (MQTT codec, payload codec, CoAP requests), each run for a
bounded time: ``FUZZ_SECONDS`` (20 by default) of coverage-guided fuzzing, all at once. A failure
prints the crashing input (Base64); it then becomes a case in tests/test_fuzz_regressions.py.
The inputs each ran (and the CoAP requests handled) go to pytest's terminal summary."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from fuzz.summary import report

ROOT = Path(__file__).resolve().parents[1]
SECONDS = int(os.environ.get("FUZZ_SECONDS", "20"))
HARNESSES = ["mqtt_codec", "payload_codec", "coap_requests"]

try:
    import atheris  # noqa: F401
except ImportError:  # pragma: no cover - atheris has wheels for CPython 3.11 on x86_64 Linux
    atheris = None


async def fuzz(harness: str, directory: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", f"fuzz.{harness}", f"-max_total_time={SECONDS}", "-rss_limit_mb=2048",
        f"-artifact_prefix={directory}/", cwd=directory, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(SECONDS + 60):
            out, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return process.returncode or 0, out.decode(errors="replace")


@pytest.mark.skipif(atheris is None, reason="atheris is not installed (the dev extra installs it)")
async def test_atheris_harnesses_find_nothing(tmp_path, pytestconfig) -> None:
    directories = [tmp_path / name for name in HARNESSES]
    for directory in directories:
        directory.mkdir()
    results = await asyncio.gather(*(fuzz(name, d) for name, d in zip(HARNESSES, directories)))
    for name, (code, out) in zip(HARNESSES, results):
        done = re.search(r"Done (\d+) runs in (\d+) second", out)
        requests = re.findall(r"CoAP requests: (\d+)", out)  # printed every second by fuzz/coap_requests.py
        handled = f" ({requests[-1]} CoAP requests)" if requests else ""
        report(pytestconfig, f"atheris {name}: {done.group(1) if done else '?'} inputs{handled} in "
                             f"{done.group(2) if done else '?'} s")
        assert code == 0 and done, f"{name} failed:\n{out[-4000:]}"
