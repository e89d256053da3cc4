"""The runtime package is what pyproject.toml lists, and nothing of the dev tree leaks into it.

The test servers, sample data and demo live in tests/servers/: an installed syncd must not
carry them, and no runtime module may import ``tests`` (it is not installed, so such an
import would work in a checkout and break in production).  The packages list is explicit
(setuptools' ``package-dir`` maps connectors/ and schema/ under ``syncd``), so a new
subpackage that is not listed would be silently left out of the wheel: that is checked too.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _setuptools() -> tuple[list[str], dict[str, str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return list(config["packages"]), dict(config["package-dir"])


def _folder(package: str, package_dir: dict[str, str]) -> Path:
    """Where setuptools reads ``package`` from: the longest mapped prefix, then subfolders."""
    prefix = max(
        (name for name in package_dir if package == name or package.startswith(name + ".")),
        key=len,
    )
    rest = [part for part in package[len(prefix) :].split(".") if part]
    return ROOT.joinpath(package_dir[prefix], *rest)


def _runtime_modules() -> dict[str, Path]:
    """Every module the wheel installs, by import name."""
    packages, package_dir = _setuptools()
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted(_folder(package, package_dir).glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            modules[name] = path
    return modules


def test_the_runtime_package_lists_every_subpackage_and_no_dev_code(tmp_path: Path) -> None:
    packages, package_dir = _setuptools()
    assert not [p for p in packages if "localservers" in p or p.split(".")[0] == "tests"]
    listed = {_folder(package, package_dir).resolve() for package in packages}
    on_disk = {
        init.parent.resolve()
        for top in set(package_dir.values())
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert on_disk - listed == set(), "a package folder that the wheel would leave out"
    assert not (ROOT / "syncd" / "localservers").exists()
    # The installed syncd (editable here), seen from outside the checkout, has none either.
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "import importlib.util as u; print(u.find_spec('syncd.localservers'))",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.strip() == "None"


def test_no_runtime_module_imports_the_tests_tree() -> None:
    modules = _runtime_modules()
    assert {"syncd", "syncd.cli.main", "syncd.connectors.imap", "syncd.schema.tables"} <= set(
        modules
    )
    # Statically: lazy imports inside functions count too.
    offenders = []
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            offenders += [(name, t) for t in targets if t.split(".")[0] == "tests"]
    assert offenders == []
    # And at import time, from the checkout's root where ``tests`` *is* importable: importing
    # every runtime module must not pull it in.  Alembic's env.py is a script that Alembic
    # runs inside a migration context (it migrates when executed), not a module to import.
    importable = sorted(name for name in modules if name != "syncd.schema.migrations.env")
    script = (
        "import importlib, json, sys\n"
        f"for name in {importable!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'tests')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout) == []
