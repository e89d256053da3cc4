"""imapclient, imported without ``importlib.metadata`` (issue #20).

imapclient's ``__init__`` reads its own version through ``importlib.metadata.version``:
importing importlib.metadata (email, zipfile, csv behind it) and searching every path entry
for the distribution was about 0.011 s of CPU of an unchanged `syncd sync`, as much as the
rest of imapclient.  Before the first import of imapclient, this module gives it its
``imapclient.version`` made from the same field of the same file (``Version`` in the
METADATA of the distribution installed beside the package); when that file is not found
exactly as expected, imapclient imports as it does on its own.
tests/unit/test_imap_package.py holds the two modules to the same values.
"""

from __future__ import annotations

import sys
import types
from importlib.machinery import PathFinder
from pathlib import Path

NAME = "imapclient"


def installed_version() -> str | None:
    """``Version`` of the one ``imapclient-*.dist-info`` beside the imapclient package on
    ``sys.path``; None when there is not exactly one, or it cannot be read."""
    spec = PathFinder.find_spec(NAME)
    if spec is None or not spec.submodule_search_locations:
        return None
    (package, *more) = spec.submodule_search_locations
    if more:
        return None
    try:
        found = [
            entry
            for entry in Path(package).parent.iterdir()
            if entry.name.lower().startswith(NAME + "-") and entry.name.endswith(".dist-info")
        ]
        if len(found) != 1:
            return None
        with (found[0] / "METADATA").open(encoding="utf-8") as metadata:
            for line in metadata:
                if not line.strip():
                    break  # the headers end
                field, colon, value = line.partition(":")
                if colon and field.lower() == "version":
                    return value.strip() or None
    except OSError:
        return None
    return None


def version_module(version: str) -> types.ModuleType | None:
    """What imapclient/version.py makes of ``version``; None when it would fail (then it
    fails there, as it would without this module)."""
    try:
        major, minor, micro = version.split(".")
        info = (int(major), int(minor), int(micro), "final")
    except ValueError:
        return None
    module = types.ModuleType(
        f"{NAME}.version", "imapclient's version (syncd.connectors.imap_package)"
    )
    module.version = version  # type: ignore[attr-defined]
    module.version_info = info  # type: ignore[attr-defined]
    return module


def _preset() -> types.ModuleType | None:
    if NAME in sys.modules or f"{NAME}.version" in sys.modules:
        return None
    version = installed_version()
    module = version_module(version) if version is not None else None
    if module is not None:
        sys.modules[f"{NAME}.version"] = module
    return module


_PRESET = _preset()

import imapclient  # noqa: E402
from imapclient.exceptions import CapabilityError, IMAPClientError, LoginError  # noqa: E402

if _PRESET is not None:
    imapclient.version = _PRESET  # as the import system sets a submodule on its package

__all__ = ["CapabilityError", "IMAPClientError", "LoginError", "imapclient"]
