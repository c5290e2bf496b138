"""The one-way rule: protocols -> gateway <- storage, checked on the import graph.

Only the composition root (gateway/app.py, gateway/cli.py) may import all three.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPOSITION_ROOT = {"gateway/app.py", "gateway/cli.py"}
FORBIDDEN = {
    "gateway": {"aiohttp", "aiocoap", "asyncpg", "protocols", "storage", "simulator"},
    "storage": {"aiohttp", "aiocoap", "protocols", "simulator"},
    "protocols": {"asyncpg", "storage", "simulator"},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def modules_of(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layers_import_only_inwards(package: str) -> None:
    violations = []
    for path in modules_of(package):
        relative = path.relative_to(ROOT).as_posix()
        if relative in COMPOSITION_ROOT:
            continue
        bad = imported_modules(path) & FORBIDDEN[package]
        if bad:
            violations.append(f"{relative} imports {', '.join(sorted(bad))}")
    assert not violations, "\n".join(violations)


def test_every_package_has_modules() -> None:
    for package in FORBIDDEN:
        assert modules_of(package), package
