"""No process-wide mutable state that one module switches for another (issue #20): what a
collaborator needs is passed in.  A ``global`` statement is how a module rebinds its own
state, so the package has none."""

from __future__ import annotations

import ast
from pathlib import Path

import syncd

PACKAGE = Path(syncd.__file__).parent


def _global_statements() -> list[str]:
    found: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Global):
                names = ", ".join(node.names)
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: global {names}")
    return found


def test_the_package_is_scanned() -> None:
    modules = list(PACKAGE.rglob("*.py"))
    assert len(modules) > 50  # the whole package, not an empty folder
    assert any(p.name == "daemon.py" for p in modules)


def test_no_module_rebinds_its_state_with_global() -> None:
    assert _global_statements() == []


def test_the_scan_sees_a_global_statement() -> None:
    # The scan itself: the shape it looks for is what Python parses a ``global`` into.
    tree = ast.parse("counter = 0\ndef bump():\n    global counter\n    counter += 1\n")
    assert [n.names for n in ast.walk(tree) if isinstance(n, ast.Global)] == [["counter"]]
