#!/usr/bin/env bash
# mypy --strict over the package as it installs, and over the test servers (tests/servers).
#
# Why a tree of links: connectors/ and schema/ install as syncd.connectors and syncd.schema
# through setuptools' package-dir, and the editable install serves that mapping from an
# import hook.  mypy finds modules by walking folders (its mypy_path, the current folder,
# site-packages) and can neither run import hooks nor map a package name to another folder,
# so no configuration makes `syncd.connectors` resolve to connectors/.  We lay the installed
# tree out with symlinks, from pyproject.toml's own package-dir table (so it cannot drift),
# check that, and print mypy's paths as the checkout's (connectors/imap.py, not
# syncd/connectors/imap.py) so that editors can jump to them.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=build/typecheck
rm -rf "$tree" && mkdir -p "$tree"
# One "<link> <target>" pair per line, then one "s#^link/#target/#" sed rule per mapping.
mapfile -t plan < <(.venv/bin/python - <<'EOF'
import tomllib
from pathlib import Path

mapping = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
# A mapping implied by its parent's (schema/migrations under schema) needs no link of its own.
own = {
    package: folder
    for package, folder in mapping.items()
    if "." not in package
    or mapping.get(package.rsplit(".", 1)[0], "\0") + "/" + package.rsplit(".", 1)[1] != folder
}
for package, folder in own.items():
    link = package.replace(".", "/")
    nested = [p for p in own if p.startswith(package + ".")]
    if nested:  # a real folder whose entries are linked one by one, the nested packages beside
        for entry in sorted(Path(folder).iterdir()):
            if entry.name != "__pycache__":
                print(f"link {link}/{entry.name} {entry}")
    else:
        print(f"link {link} {folder}")
    if link != folder:
        print(f"path {link} {folder}")
EOF
)
rules=()
for line in "${plan[@]}"; do
  read -r kind link target <<<"$line"
  if [ "$kind" = link ]; then
    mkdir -p "$(dirname "$tree/$link")" && ln -s "$PWD/$target" "$tree/$link"
  else
    rules+=(-e "s#^$link/#$target/#")
  fi
done
# The test servers are typed like the package (the demo, the tests and the benchmark use them).
mkdir -p "$tree/tests" && ln -s "$PWD/tests/__init__.py" "$PWD/tests/servers" "$tree/tests/"
# mypy's cache is kept once per machine, outside the checkout (a clean clone checks in
# seconds, not a minute): mypy trusts a cached module only if its file's content hash is the
# same, and drops the whole cache when mypy's version or options change.
# SYNCD_MYPY_CACHE moves it (a checkout's own .mypy_cache, say).
cache="${SYNCD_MYPY_CACHE:-/var/cache/syncd-test/mypy}"
mkdir -p "$cache"
cd "$tree"
../../.venv/bin/mypy --config-file ../../pyproject.toml --cache-dir "$cache" \
  -p syncd -p tests.servers | sed "${rules[@]}"
