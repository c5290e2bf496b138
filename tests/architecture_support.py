"""The project's import graph, read from the source with ast, and the checks made on it.

Modules are found through pyproject.toml's package-dir mapping and named by their import names;
an import counts wherever it is written (a lazy import in a function runs just the same), except
under ``if TYPE_CHECKING:``, which never runs. The policy (which layer may import what) lives in
tests/test_architecture.py; this module is the mechanism, so it can be tested on a synthetic tree.
"""

from __future__ import annotations

import ast
import tomllib
from collections import deque
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Module:
    name: str
    path: Path
    is_package: bool


@dataclass(frozen=True, slots=True)
class Import:
    """One imported name, resolved to absolute form, where it is written."""

    importer: str
    target: str
    path: Path
    line: int

    def where(self, root: Path) -> str:
        return f"{self.path.relative_to(root).as_posix()}:{self.line}"


@dataclass(frozen=True, slots=True)
class Layer:
    """A package of the project and what its modules may import.

    ``may_import`` lists the project's packages and modules (prefixes) it may import, None for
    anything; ``forbidden_libraries`` lists top-level third-party names it must not import.
    """

    name: str
    package: str
    may_import: frozenset[str] | None
    forbidden_libraries: frozenset[str] = frozenset()


def package_dirs(root: Path) -> dict[str, Path]:
    """pyproject.toml's [tool.setuptools.package-dir]: import name -> folder."""
    with (root / "pyproject.toml").open("rb") as file:
        mapping = tomllib.load(file)["tool"]["setuptools"]["package-dir"]
    return {package: root / folder for package, folder in mapping.items()}


def discover(package: str, folder: Path) -> list[Module]:
    """Every .py under folder, named as an import of package would name it."""
    modules = []
    for path in sorted(folder.rglob("*.py")):
        parts = list(path.relative_to(folder).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        modules.append(Module(".".join([package, *parts]), path, is_package))
    return modules


def project_modules(root: Path) -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for package, folder in package_dirs(root).items():
        for module in discover(package, folder):
            assert module.name not in modules, f"{module.name} is mapped twice"
            modules[module.name] = module
    return modules


def misnamed_roots(root: Path) -> frozenset[str]:
    """Folders mapped to another import name: importing them by folder name works only from
    a checkout with the repository on sys.path, never from the installed wheel."""
    return frozenset(
        folder.name for package, folder in package_dirs(root).items() if folder.name != package.split(".")[0]
    )


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
        return
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        children: Iterable[ast.AST] = node.orelse
    else:
        children = ast.iter_child_nodes(node)
    for child in children:
        yield from _import_nodes(child)


def _from_base(module: Module, node: ast.ImportFrom) -> str:
    if node.level == 0:
        assert node.module is not None
        return node.module
    package = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    if node.level - 1 >= len(package):
        raise ValueError(f"{module.path}:{node.lineno}: relative import beyond the top-level package")
    base = ".".join(package[: len(package) - (node.level - 1)])
    return f"{base}.{node.module}" if node.module else base


def imports_of(module: Module, known: Collection[str]) -> list[Import]:
    """What module imports; ``from pkg import name`` is ``pkg.name`` when that is a known module."""
    tree = ast.parse(module.path.read_bytes(), str(module.path))
    found = []
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = _from_base(module, node)
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names
            ]
        # One statement importing several names from a module is one import of it.
        found.extend(Import(module.name, target, module.path, node.lineno) for target in dict.fromkeys(targets))
    return found


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def module_of(target: str, known: Collection[str]) -> str | None:
    """The known module an imported name lands in (its longest known prefix)."""
    parts = target.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return None


@dataclass(frozen=True, slots=True)
class Graph:
    root: Path
    modules: dict[str, Module]
    imports: dict[str, list[Import]]

    @classmethod
    def of(cls, root: Path, modules: Mapping[str, Module]) -> Graph:
        modules = dict(modules)
        return cls(root, modules, {name: imports_of(module, modules) for name, module in modules.items()})

    def edges(self) -> dict[str, dict[str, Import]]:
        """Module -> the modules it imports, each with its first import statement."""
        edges: dict[str, dict[str, Import]] = {name: {} for name in self.modules}
        for name, imports in self.imports.items():
            for found in imports:
                target = module_of(found.target, self.modules)
                if target is not None:
                    edges[name].setdefault(target, found)
        return edges


def layer_of(module: str, layers: Iterable[Layer]) -> Layer | None:
    matching = [layer for layer in layers if within(module, layer.package)]
    return max(matching, key=lambda layer: len(layer.package), default=None)


def layering_violations(graph: Graph, layers: Collection[Layer], project: str) -> dict[str, list[str]]:
    """Per layer name, each import that breaks the layer, as "module imports X (file:line)"."""
    misnamed = misnamed_roots(graph.root)
    violations: dict[str, list[str]] = {layer.name: [] for layer in layers}
    for name, imports in sorted(graph.imports.items()):
        layer = layer_of(name, layers)
        assert layer is not None, f"{name} belongs to no layer"
        for found in imports:
            top = found.target.split(".")[0]
            if top in misnamed:
                bad = True
            elif within(found.target, project):
                bad = layer.may_import is not None and not any(
                    within(found.target, allowed) for allowed in layer.may_import
                )
            else:
                bad = top in layer.forbidden_libraries
            if bad:
                violations[layer.name].append(f"{name} imports {found.target} ({found.where(graph.root)})")
    return violations


def is_test_module(module: str) -> bool:
    return module.rpartition(".")[2].startswith("test_")


def imports_of_test_modules(graph: Graph) -> list[str]:
    """Imports of a test module (test_*.py) by any other module of graph.

    A test module is not a library: what two test modules share belongs in a support module.
    """
    misnamed = misnamed_roots(graph.root)
    violations = []
    for name, imports in sorted(graph.imports.items()):
        for found in imports:
            target = module_of(found.target, graph.modules)
            from_test = target is not None and target != name and is_test_module(target)
            if from_test or found.target.split(".")[0] in misnamed:
                violations.append(f"{name} imports {found.target} ({found.where(graph.root)})")
    return violations


def strongly_connected(edges: Mapping[str, Collection[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively (no recursion limit to meet)."""
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = lowlink[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = lowlink[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(edges[successor]))))
                    break
                if successor in on_stack:
                    lowlink[node] = min(lowlink[node], index[successor])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    lowlink[parent] = min(lowlink[parent], lowlink[node])
                if lowlink[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def _shortest_cycle(start: str, members: set[str], edges: Mapping[str, Collection[str]]) -> list[str]:
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for successor in sorted(edges[node]):
            if successor not in members:
                continue
            if successor == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if successor not in came_from:
                came_from[successor] = node
                queue.append(successor)
    raise AssertionError(f"{start} is on no cycle")


def cycles(graph: Graph) -> list[str]:
    """One line per import cycle: its modules, and one loop through them with file:line."""
    edges = graph.edges()
    reports = []
    for component in strongly_connected(edges):
        if len(component) == 1 and component[0] not in edges[component[0]]:
            continue
        loop = _shortest_cycle(component[0], set(component), edges)
        steps = " -> ".join(
            f"{target} ({edges[source][target].where(graph.root)})" for source, target in zip(loop, loop[1:])
        )
        reports.append(f"cycle among {', '.join(component)}: {loop[0]} -> {steps}")
    return reports
