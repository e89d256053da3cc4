#!/usr/bin/env bash
# The test command: lint, type-check and the whole test suite against real servers
# (Dovecot, PostgreSQL) that the suite starts itself.  Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check syncd connectors schema tests bench
.venv/bin/ruff format --check syncd connectors schema tests bench
bash scripts/typecheck.sh
exec .venv/bin/pytest "$@"
