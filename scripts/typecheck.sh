#!/usr/bin/env bash
# mypy --strict over the package as it installs (connectors/ and schema/ become
# syncd.connectors and syncd.schema): mypy cannot follow setuptools' editable finder,
# so we lay the installed tree out with symlinks and check that.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=build/typecheck
rm -rf "$tree" && mkdir -p "$tree/syncd"
for entry in syncd/*; do
  case "$(basename "$entry")" in __pycache__) ;; *) ln -s "$PWD/$entry" "$tree/syncd/" ;; esac
done
ln -s "$PWD/connectors" "$tree/syncd/connectors"
ln -s "$PWD/schema" "$tree/syncd/schema"
cd "$tree" && exec ../../.venv/bin/mypy --config-file ../../pyproject.toml -p syncd
