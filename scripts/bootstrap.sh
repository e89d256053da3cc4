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
  # The packages' wheels are kept once per machine, under a folder named after what decides
  # them (pyproject.toml, the Python, pip's constraints): a clean clone installs from there
  # without asking the index anything (a third of the time).  SYNCD_WHEEL_CACHE moves it.
  wheels_root="${SYNCD_WHEEL_CACHE:-/var/cache/syncd-test/wheels}"
  key=$(cat pyproject.toml /etc/xdg/pip/constraints.txt 2>/dev/null | { python3 --version; cat; } |
    sha256sum | cut -c1-16)
  wheels="$wheels_root/$key"
  # One line per package pip takes: dozens of lines in a minute, never a silent minute.
  show() {
    { grep --line-buffered -E '^(Collecting|Installing collected|Successfully installed)' || true; } |
      sed -u -e 's/^Collecting /  fetching /' -e 's/^Successfully installed .*/  installed/' \
        -e 's/^Installing collected packages: .*/  installing the packages/'
  }
  pip=(.venv/bin/python -m pip --disable-pip-version-check)
  if [ ! -f "$wheels/complete" ]; then
    step "fetching syncd's $named and theirs (about 80 in all) into $wheels: about a minute"
    mkdir -p "$wheels_root"
    partial=$(mktemp -d "$wheels_root/.partial-XXXXXX")  # another checkout may fetch at once
    # setuptools too: the editable install of syncd builds with it, offline.
    "${pip[@]}" wheel --progress-bar off -w "$partial" '.[test]' 'setuptools>=68' | show
    rm -f "$partial"/syncd-*.whl  # the checkout is installed editable, never from here
    touch "$partial/complete"
    if [ -f "$wheels/complete" ]; then rm -rf "$partial"; else rm -rf "$wheels" && mv "$partial" "$wheels"; fi
  fi
  step "installing syncd and its packages into .venv from $wheels"
  "${pip[@]}" install --progress-bar off --no-index --find-links "$wheels" -e '.[test]' | show
  touch "$stamp"
  step "ready"
fi

