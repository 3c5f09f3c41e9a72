"""The layering contracts, checked on the source (import-linter cannot see the package-dir packages).

Lowest first: losses and datasets; the engine; the server, the client and studies; the window (gui); the
command line (cli). A layer imports only layers below it, lazily or not; the engine, losses and datasets
never import Qt, and no package imports the window except the command line that opens it. See
docs/architecture.md.
"""

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
QT = ("PySide6", "pyqtgraph", "shiboken6", "PyQt5", "PyQt6")
UPPER = ("hill_app.gui", "hill_app.cli", "hill_app.studies", "hill_app.server", "hill_app.client")
# package -> what no module in it may import (a name and everything under it)
FORBIDDEN = {
    "hill_app.losses": QT + UPPER + ("hill_app.engine", "hill_app.datasets"),
    "hill_app.datasets": QT + UPPER + ("hill_app.engine", "hill_app.losses"),
    "hill_app.engine": QT + UPPER,
    "hill_app.server": QT + ("hill_app.gui", "hill_app.cli", "hill_app.studies", "hill_app.client"),
    "hill_app.client": QT + ("hill_app.gui", "hill_app.cli", "hill_app.studies"),
    "hill_app.studies": ("hill_app.gui", "hill_app.cli"),
}


def package_dirs() -> dict[str, Path]:
    """Each package's folder, as pyproject.toml maps it (hill_app.losses lives in losses/, ...)."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {name: ROOT / folder for name, folder in tool["package-dir"].items()}


def source_modules() -> dict[str, Path]:
    """Every module of the installed tree by its dotted name."""
    dirs = package_dirs()
    out = {}
    for pkg, folder in dirs.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            out[".".join([pkg, *parts[:-1]] + ([] if parts[-1] == "__init__" else [parts[-1]]))] = path
    return out


def imported_names(module: str, path: Path) -> list[tuple[int, str]]:
    """What a module imports, at any depth (lazy imports in functions too), relative imports made absolute;
    ``from X import a`` yields X and X.a (a may be a module)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name))
            out += [(node.lineno, f"{name}.{a.name}") for a in node.names if a.name != "*"]
    return out


def import_graph() -> dict[str, list[tuple[int, str]]]:
    return {m: imported_names(m, p) for m, p in source_modules().items()}


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_violations(graph: dict[str, list[tuple[int, str]]], forbidden: dict[str, tuple[str, ...]]) -> list[str]:
    bad = []
    for module, names in sorted(graph.items()):
        for pkg, banned in forbidden.items():
            if _under(module, pkg):
                bad += [
                    f"{module}:{line} imports {name}" for line, name in names if any(_under(name, b) for b in banned)
                ]
    return sorted(set(bad))


def area(module: str) -> str:
    """The package a module belongs to at the level the layers are drawn: hill_app.engine.session ->
    hill_app.engine, hill_app.cli -> hill_app.cli."""
    return ".".join(module.split(".")[:2])


def package_cycles(graph: dict[str, list[tuple[int, str]]]) -> list[list[str]]:
    """Cycles between packages (hill_app.gui -> hill_app.studies -> hill_app.gui), with one import naming
    each edge."""
    modules = set(graph)
    edges: dict[str, dict[str, str]] = defaultdict(dict)
    for module, names in graph.items():
        for line, name in names:
            if not _under(name, "hill_app"):
                continue
            target = area(name)
            if target != area(module) and any(_under(m, target) for m in modules):
                edges[area(module)].setdefault(target, f"{module}:{line} imports {name}")
    cycles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, {})):
            if state.get(nxt) == "open":
                loop = path[path.index(nxt) :] + [nxt]
                cycles.append([edges[a][b] for a, b in zip(loop, loop[1:])])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return cycles


def test_every_package_is_found():
    """The contracts below see every layer (a renamed folder must not make them pass by seeing nothing)."""
    areas = {area(m) for m in source_modules()}
    for pkg in (
        "hill_app.engine",
        "hill_app.losses",
        "hill_app.datasets",
        "hill_app.studies",
        "hill_app.gui",
        "hill_app.server",
        "hill_app.client",
        "hill_app.cli",
    ):
        assert pkg in areas, pkg
    session = [n for _, n in import_graph()["hill_app.engine.session"]]
    assert "hill_app.engine.journal" in session  # `from .journal import Journal`, made absolute


def test_layers_import_only_downward():
    """The engine, losses and datasets never import Qt, studies, the server, the client or the window;
    losses and datasets not even the engine; nothing below the window imports it."""
    bad = layer_violations(import_graph(), FORBIDDEN)
    assert not bad, "\n".join(bad)


def test_no_import_cycle_between_packages():
    """gui imports studies (the study window), so studies never imports gui; the same holds for every pair."""
    cycles = package_cycles(import_graph())
    assert not cycles, "\n\n".join("\n".join(c) for c in cycles)


def test_engine_runs_without_qt_loaded():
    code = (
        "import sys, hill_app.engine.session, hill_app.engine.handlers, hill_app.losses, hill_app.datasets, "
        "hill_app.server, hill_app.cli; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
