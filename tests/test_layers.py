"""DESIGN.md rule 1, checked in fresh interpreters with PySide6 made unimportable:
the engine imports neither Qt nor SQLAlchemy, the store neither torch nor Qt, and the command
line runs without Qt (servers have no display)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import importlib, json, pkgutil, sys
sys.modules["PySide6"] = None  # any `import PySide6...` now raises ImportError
imported = []
for top in sys.argv[1:]:
    pkg = importlib.import_module(top)
    imported.append(top)
    if hasattr(pkg, "__path__"):
        for info in pkgutil.walk_packages(pkg.__path__, top + "."):
            importlib.import_module(info.name)
            imported.append(info.name)
loaded = sorted(m for m in sys.modules if sys.modules[m] is not None)
print(json.dumps({"imported": imported, "loaded": loaded}))
"""


def probe(*packages: str) -> tuple[list[str], set[str]]:
    proc = subprocess.run([sys.executable, "-c", PROBE, *packages], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out["imported"], set(out["loaded"])


def tops(loaded: set[str]) -> set[str]:
    return {m.split(".")[0] for m in loaded}


def test_engine_imports_without_qt_or_sqlalchemy():
    imported, loaded = probe("studio.engine")
    for sub in ("data", "backbones", "methods", "train", "eval"):
        assert f"studio.engine.{sub}" in imported
    assert "studio.engine.methods.simclr" in imported and "studio.engine.train.trainer" in imported
    assert "torch" in loaded
    assert not {"sqlalchemy", "PySide6", "shiboken6", "pyqtgraph", "alembic"} & tops(loaded)
    assert not {m for m in loaded if m.startswith(("studio.store", "studio.gui", "studio.services", "studio.cli"))}


def test_store_imports_without_torch_or_qt():
    imported, loaded = probe("studio.store")
    assert {"studio.store.project", "studio.store.models", "studio.store.recorder"} <= set(imported)
    assert "sqlalchemy" in loaded
    assert not {"torch", "torchvision", "lightly", "PySide6", "shiboken6", "pyqtgraph"} & tops(loaded)
    assert not {m for m in loaded if m.startswith(("studio.engine", "studio.gui", "studio.services", "studio.cli"))}


@pytest.mark.parametrize("argv", [["--version"], ["methods", "--json"]])
def test_the_command_line_runs_without_qt(argv):
    code = "import sys; sys.modules['PySide6'] = None; from studio.cli import main; raise SystemExit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if argv[0] == "methods":
        assert "simclr" in {m["name"] for m in json.loads(proc.stdout)["methods"]}
    else:
        assert proc.stdout.startswith("ssl-studio ")


# -- the same rules, as import-linter contracts (pyproject's [tool.importlinter]) --------------
def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter on the tree at `root` (PYTHONPATH first, so not the installed copy)."""
    exe = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(exe), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=240, env=env)


def test_the_layer_contracts_hold():
    proc = lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "Contracts: 5 kept, 0 broken." in proc.stdout


def test_the_layer_contracts_catch_a_wrong_import(tmp_path):
    shutil.copytree(ROOT / "studio", tmp_path / "studio", ignore=shutil.ignore_patterns("__pycache__", "resources"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    models = tmp_path / "studio" / "store" / "models.py"
    models.write_text(models.read_text() + "\n\ndef _wrong():\n    import studio.gui.widgets  # noqa: F401\n")
    proc = lint_imports(tmp_path)
    assert proc.returncode != 0
    assert "studio.store is not allowed to import studio.gui" in proc.stdout, proc.stdout[-4000:]
    assert "studio.store is not allowed to import PySide6" in proc.stdout  # through the GUI module
