"""syncd installed into a virtualenv of its own, as `pip install /path/to/syncd` would leave it,
made without a network from what the running virtualenv already holds.

A service user cannot run the checkout's virtualenv when the checkout lies in a private folder
(a clone under /root, mode 0700 on Debian): the deployment tests run this one instead.  Only the
distributions syncd requires are copied, so a missing dependency in pyproject.toml shows too.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import sys
import tomllib
import venv
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

CHECKOUT = Path(__file__).resolve().parents[1]


def install(target: Path) -> Path:
    """A virtualenv at ``target`` holding syncd and its requirements; returns its bin/syncd."""
    # syncd's own metadata comes from pyproject.toml: the checkout's syncd.egg-info, which
    # importlib.metadata also finds, names the files relative to the checkout.
    project = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())
    # The interpreter the tests run on (a symlink to it, as `python3 -m venv` makes).
    venv.EnvBuilder(with_pip=False, symlinks=True).create(target)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = target / "lib" / version / "site-packages"
    for dist in _required(project["project"]["dependencies"]):
        for file in dist.files or []:
            source = Path(str(dist.locate_file(file)))
            if file.parts[0] != ".." and source.is_file():  # not their scripts
                _place(source, site / file)
    for package in project["tool"]["setuptools"]["packages"]:
        for source in _folder(package).iterdir():
            if source.is_file():
                _place(source, site / package.replace(".", "/") / source.name)
    python = target / "bin" / "python"
    for name, entry in project["project"]["scripts"].items():
        module, _, function = entry.partition(":")
        path = target / "bin" / name
        path.write_text(
            f"#!{python}\nimport sys\nfrom {module} import {function}\nsys.exit({function}())\n"
        )
        path.chmod(0o755)
    return target / "bin" / "syncd"


def _required(specs: list[str]) -> list[importlib.metadata.Distribution]:
    """The distributions ``specs`` name and every one they require, extras followed, markers
    applied."""
    found: dict[str, tuple[importlib.metadata.Distribution, set[str]]] = {}
    todo = [(r.name, set(r.extras)) for r in map(Requirement, specs) if _applies(r, set())]
    while todo:
        wanted, extras = todo.pop()
        key = canonicalize_name(wanted)
        if key in found and extras <= found[key][1]:
            continue
        dist = importlib.metadata.distribution(wanted)
        found.setdefault(key, (dist, set()))[1].update(extras)
        for spec in dist.requires or []:
            requirement = Requirement(spec)
            if _applies(requirement, extras):
                todo.append((requirement.name, set(requirement.extras)))
    return [dist for dist, _ in found.values()]


def _applies(requirement: Requirement, extras: set[str]) -> bool:
    marker = requirement.marker
    return marker is None or any(marker.evaluate({"extra": e}) for e in {"", *extras})


def _folder(package: str) -> Path:
    """Where the modules of one of syncd's packages lie (connectors/ is syncd.connectors)."""
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations, package
    return Path(next(iter(spec.submodule_search_locations)))


def _place(source: Path, target: Path) -> None:
    """A hard link where the file system allows it (instant, no space), else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
