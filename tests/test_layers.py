"""The apps import only downward (docs/architecture.md), checked over the code's
import graph: every `import` and `from … import`, at the top of a module or inside a
function, `TYPE_CHECKING` blocks included. Project wiring is exempt."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Lowest first; apps on one line share a layer and may not import each other.
LAYERS: list[tuple[str, ...]] = [
    ("mqttadmin",),
    ("alerts",),
    ("brokers",),
    ("actions", "history", "acl"),
    ("observe", "devices"),
    ("runtime",),
    ("dashboard", "localbroker"),
]
LAYER_OF = {app: level for level, apps in enumerate(LAYERS) for app in apps}
# Where the project is wired together: settings name every app, urls and routing
# mount every app's routes, celery and asgi start everything.
WIRING = {
    "mqttadmin/settings.py",
    "mqttadmin/urls.py",
    "mqttadmin/asgi.py",
    "mqttadmin/wsgi.py",
    "mqttadmin/celery.py",
    "mqttadmin/routing.py",
    "mqttadmin/api/urls.py",
}


def app_modules() -> Iterator[tuple[str, Path]]:
    for app in LAYER_OF:
        for path in sorted((ROOT / app).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if "/migrations/" in relative or relative in WIRING:
                continue
            yield app, path


def imported_apps(path: Path) -> Iterator[tuple[int, str, str]]:
    """(line, imported module, its app) for every import of a project app."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            app = name.split(".")[0]
            if app in LAYER_OF:
                yield node.lineno, name, app


def test_every_app_has_a_layer() -> None:
    apps = {
        path.parent.name
        for path in ROOT.glob("*/apps.py")
        if path.parent.name not in ("tests", "benchmarks")
    }
    assert apps <= set(LAYER_OF), f"apps without a layer: {apps - set(LAYER_OF)}"


def test_apps_import_only_downward() -> None:
    upward = [
        f"{path.relative_to(ROOT)}:{line} imports {module} "
        f"({app} sits at layer {LAYER_OF[app]}, above or beside {here})"
        for here, path in app_modules()
        for line, module, app in imported_apps(path)
        if app != here and LAYER_OF[app] >= LAYER_OF[here]
    ]
    assert not upward, "imports that do not point down:\n" + "\n".join(upward)


def test_no_import_cycles_between_modules() -> None:
    """A cycle of modules, even one closed by an import inside a function, means
    two pieces of code cannot be understood (or moved) apart."""
    modules = {
        path.relative_to(ROOT).with_suffix("").as_posix().replace("/", "."): path
        for _app, path in app_modules()
    }
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for _line, imported, _app in imported_apps(path):
            target = imported
            # `from brokers import services` names a module inside the package.
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and not target.endswith("__init__"):
                graph[name].add(target)
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found
