"""syncd.connectors.imap_package gives imapclient the ``imapclient.version`` it would make
itself, without importlib.metadata (issue #20)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from syncd.connectors import imap_package

PROBE = """
import json, sys
{first}
import imapclient, imapclient.version as v
print(json.dumps({{
    "version": v.version, "version_info": list(v.version_info),
    "dunder": [imapclient.__version__, list(imapclient.version_info)],
    "attribute": imapclient.version is v,
    "metadata_loaded": "importlib.metadata" in sys.modules,
}}))
"""


def _probe(first: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(first=first)],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded: dict[str, object] = json.loads(done.stdout)
    return loaded


def test_imapclient_reads_the_same_version_as_through_importlib_metadata() -> None:
    own = _probe("")
    ours = _probe("import syncd.connectors.imap_package")
    assert own["metadata_loaded"] and not ours["metadata_loaded"]
    del own["metadata_loaded"], ours["metadata_loaded"]
    assert ours == own
    assert own["attribute"] is True


def test_imapclient_takes_no_other_name_from_its_version_module() -> None:
    """A new imapclient that takes more from ``.version`` than the module gives fails here,
    not at a customer's start."""
    init = Path(imap_package.PathFinder.find_spec("imapclient").origin or "")  # type: ignore[union-attr]
    taken = {
        alias.name
        for node in ast.walk(ast.parse(init.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.module == "version" and node.level == 1
        for alias in node.names
    }
    module = imap_package.version_module("4.1.0")
    assert module is not None
    assert taken and taken <= set(vars(module))


def test_a_version_imapclient_would_refuse_is_left_to_imapclient() -> None:
    assert imap_package.version_module("4.2.0rc1") is None
    assert imap_package.version_module("5.0") is None
