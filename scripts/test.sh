#!/usr/bin/env bash
# The test command: lint, type-check and the whole test suite against real servers
# (Dovecot, PostgreSQL) that the suite starts itself.  Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# The real BottleCRM the CRM connector's tests run against: a Python 3.12 virtualenv under
# /var/cache/syncd-test/bottlecrm and a migrated template database, made once per machine
# (a few minutes the first time; instant while the package version is unchanged).
bash scripts/prepare-bottlecrm.sh
echo "test: ruff (lint and format)"
.venv/bin/ruff check syncd connectors schema tests bench
.venv/bin/ruff format --check syncd connectors schema tests bench
echo "test: mypy (strict; about a minute the first time)"
bash scripts/typecheck.sh
# Three workers on two cores, a test file each at a time (its servers and fixtures stay in
# one process): most tests wait on Dovecot, Radicale, PostgreSQL or a daemon, not on the CPU,
# and a third worker fills those waits.  A test that runs past 15 s is named while it runs;
# the slowest are listed at the end.  Files go to the workers in the order tests/conftest.py
# collects them, the longest first (xdist's own order, files with the most tests first, left
# two long files of one or two tests to start last and run alone at the end).
echo "test: pytest, the whole suite against real servers (about 10 minutes on 2 cores)"
exec .venv/bin/pytest -n 3 --dist loadfile --no-loadscope-reorder --durations=10 "$@"
