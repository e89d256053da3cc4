#!/usr/bin/env bash
# The quick-start demo: installs what is missing, starts a local Dovecot with two reps'
# sample mail, imports customers, syncs and prints a customer timeline.  The demo's code
# (tests/servers/demo.py) is dev-only, beside the test servers: it runs from this checkout,
# and drives the installed `syncd` command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m tests.servers.demo "${1:-demo}"
