#!/usr/bin/env bash
# Installs everything the demo, the tests and the benchmark need, on Debian, as root:
# Debian packages (Dovecot, mbsync, PostgreSQL, OpenSSL, systemd-analyze, Python venv) and a virtualenv
# in .venv with syncd and its test tools.  Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
# One line before each long step, so that a first run does not look stuck.
step() { echo "bootstrap: $* ($((SECONDS - started)) s so far)"; }

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
  export DEBIAN_FRONTEND=noninteractive
  step "reading the Debian package lists (apt-get update)"
  apt-get update -qq
  # policy-rc.d keeps the packages' own services from starting: the tests run their own.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  step "installing ${#missing[@]} Debian packages and what they need: ${missing[*]} (a minute or two)"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

if [ ! -x .venv/bin/python ]; then
  step "creating the virtualenv .venv"
  python3 -m venv .venv
fi
# Reinstall only when the project's metadata changed since the last install.
stamp=.venv/.syncd-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  direct=$(python3 -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]
print(len(p["dependencies"]) + len(p["optional-dependencies"]["test"]))' 2>/dev/null) &&
    named="the $direct packages it names" || named="the packages it names"
  step "installing syncd, $named and theirs (about 80 in all) into .venv: about a minute"
  # One line per package pip takes: dozens of lines in a minute, never a silent minute.
  .venv/bin/python -m pip install --disable-pip-version-check --progress-bar off -e '.[test]' |
    { grep --line-buffered -E '^(Collecting|Installing collected|Successfully installed)' || true; } |
    sed -u -e 's/^Collecting /  fetching /' -e 's/^Successfully installed .*/  installed/' \
      -e 's/^Installing collected packages: .*/  installing the packages/'
  touch "$stamp"
  step "ready"
fi

