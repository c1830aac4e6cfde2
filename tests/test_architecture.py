"""The layout's rules, read from the source (docs/architecture.md): which app may import which,
no import cycle between modules, and no import hidden inside a function without a reason."""

from __future__ import annotations

import ast
import importlib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("opsconsole", "monitoring", "backlog", "batches")

# app -> apps it must never import. opsconsole is plumbing: only its root URLconf knows the apps.
FORBIDDEN = {
    "monitoring": {"backlog", "batches"},
    "backlog": {"batches"},
    "opsconsole": {"monitoring", "backlog", "batches"},
}
WIRING = {"opsconsole.urls"}


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int
    in_function: bool
    commented: bool


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _project_modules() -> dict[str, Path]:
    modules = {}
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" not in path.parts:
                modules[_module_name(path)] = path
    return modules


MODULES = _project_modules()


def _resolve(source: str, node: ast.ImportFrom | ast.Import, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = source.split(".") if is_package else source.split(".")[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join(package + ([base] if base else []))
    targets = []
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        targets.append(candidate if candidate in MODULES else base)
    return targets


def _explained(lines: list[str], lineno: int) -> bool:
    """A comment on the import's line, or above the block of imports it belongs to."""
    if "#" in lines[lineno - 1]:
        return True
    index = lineno - 2
    while index >= 0:
        text = lines[index].strip()
        if text.startswith("#"):
            return True
        code = text.split("#")[0].strip()
        if not code or code.startswith(("from ", "import ", ")")) or code.endswith((",", "(")):
            index -= 1
            continue
        return False
    return False


def _in_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _in_function(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return True
    return False


def _imports() -> list[Import]:
    found = []
    for name, path in MODULES.items():
        text = path.read_text()
        lines = text.splitlines()
        tree = ast.parse(text)
        parents = {
            child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            if _in_type_checking(node, parents):
                continue
            commented = _explained(lines, node.lineno)
            for target in _resolve(name, node, path.name == "__init__.py"):
                if target.split(".")[0] in APPS:
                    found.append(
                        Import(name, target, node.lineno, _in_function(node, parents), commented)
                    )
    return found


IMPORTS = _imports()


def test_every_module_imports():
    for name in sorted(MODULES):
        if ".management.commands." in name or name.endswith(".wsgi"):
            continue
        importlib.import_module(name)


def test_apps_import_each_other_only_in_the_allowed_directions():
    wrong = [
        f"{imp.source}:{imp.line} imports {imp.target}"
        for imp in IMPORTS
        if imp.source not in WIRING
        and imp.target.split(".")[0] in FORBIDDEN.get(imp.source.split(".")[0], ())
    ]
    assert not wrong, "\n".join(wrong)


def _known(target: str) -> str | None:
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def test_no_import_cycle_between_modules():
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for imp in IMPORTS:
        target = _known(imp.target)
        if target and target != imp.source:
            graph[imp.source].add(target)
    # Tarjan's strongly connected components: any component of two or more is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_imports_inside_functions_state_their_reason():
    hidden = [
        f"{imp.source}:{imp.line} imports {imp.target} inside a function"
        for imp in IMPORTS
        if imp.in_function and not imp.commented
    ]
    assert not hidden, "\n".join(hidden)


@pytest.mark.parametrize("app", APPS)
def test_each_app_has_one_urls_module_and_the_root_includes_each_once(app):
    url_modules = [n for n in MODULES if n.startswith(f"{app}.") and n.endswith("urls")]
    assert len(url_modules) == 1, url_modules
    if app != "opsconsole":
        root = (ROOT / "opsconsole" / "urls.py").read_text()
        assert root.count(f'include("{url_modules[0]}")') == 1, url_modules[0]
