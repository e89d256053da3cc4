#!/usr/bin/env bash
# Installs everything the demo, the tests and the benchmark need, on Debian, as root:
# Debian packages (Dovecot, mbsync, PostgreSQL, OpenSSL, systemd-analyze, Python venv) and a virtualenv
# in .venv with syncd and its test tools.  Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have python3 || missing+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
have dovecot || missing+=(dovecot-imapd)
have mbsync || missing+=(isync)
have openssl || missing+=(openssl)
have systemd-analyze || missing+=(systemd)  # the unit file is checked by the tests
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || have initdb || missing+=(postgresql)

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "bootstrap: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps the packages' own services from starting: the tests run their own.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# Reinstall only when the project's metadata changed since the last install.
stamp=.venv/.syncd-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
  touch "$stamp"
fi

# The real BottleCRM the CRM connector's tests run against: a Python 3.12 virtualenv under
# /var/cache/syncd-test/bottlecrm and a migrated template database, made once per machine
# (a few minutes the first time; instant while the package version is unchanged).
bash scripts/prepare-bottlecrm.sh
