"""The engine never imports Qt; the layers import only downward (gui -> engine -> losses, datasets)."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QT = ("PySide6", "pyqtgraph", "hill_app.gui", "PyQt5", "PyQt6")
LAYERS = {
    "hill_app/engine": QT + ("hill_app.cli", "hill_app.studies"),
    "losses": QT + ("hill_app.engine", "hill_app.cli", "hill_app.studies", "hill_app.datasets"),
    "datasets": QT + ("hill_app.engine", "hill_app.cli", "hill_app.studies", "hill_app.losses"),
}


def imported_names(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return out


def test_layers_import_only_downward():
    bad = []
    for folder, forbidden in LAYERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            for line, name in imported_names(path):
                if any(name == f or name.startswith(f + ".") for f in forbidden):
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not bad, "\n".join(bad)


def test_engine_runs_without_qt_loaded():
    code = ("import sys, hill_app.engine.session, hill_app.cli; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
