#!/usr/bin/env bash
# The quick-start demo: installs what is missing, starts a local Dovecot with two reps'
# sample mail, imports customers, syncs and prints a customer timeline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m syncd.localservers.demo "${1:-demo}"
