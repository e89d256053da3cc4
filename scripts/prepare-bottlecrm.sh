#!/usr/bin/env bash
# Prepares the real BottleCRM (the `django-crm` package) that the CRM connector's tests run against,
# once per machine: a Python 3.12 virtualenv under a cache folder and a migrated PostgreSQL template
# database, which each test session copies (migrating takes minutes; a copy takes a second).
# Safe to run again: it redoes only what a changed package version (or a missing piece) needs.
#
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth) and Redis on 127.0.0.1:6379, both
# started here when missing.  SYNCD_BOTTLECRM_CACHE overrides the cache folder.
set -euo pipefail

version="1.35.*"
cache="${SYNCD_BOTTLECRM_CACHE:-/var/cache/syncd-test/bottlecrm}"
template=bottlecrm_template
venv="$cache/venv"
stamp="$cache/template.stamp"
mkdir -p "$cache"

# Python 3.12: django-crm 1.35 requires it (on 3.11 pip quietly picks a years-old release).
find_python() {
  for candidate in "${SYNCD_BOTTLECRM_PYTHON:-}" "$(command -v python3.12 || true)" \
    "$(pyenv root 2>/dev/null || echo /nonexistent)/versions/3.12"*/bin/python3.12; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c 'import sys, venv; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}
python=$(find_python || true)
if [ -z "$python" ]; then
  if command -v pyenv >/dev/null 2>&1; then
    echo "prepare-bottlecrm: installing Python 3.12 with pyenv"
    pyenv install -s 3.12
  else
    echo "prepare-bottlecrm: installing Debian's python3.12"
    apt-get install -y -qq --no-install-recommends python3.12 python3.12-venv >/dev/null
  fi
  python=$(find_python)
fi

if [ ! -x "$venv/bin/gunicorn" ] || [ ! -f "$cache/installed" ]; then
  echo "prepare-bottlecrm: installing django-crm $version into $venv"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  # `packaging` is imported by the package but not declared by it.
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "django-crm==$version" packaging gunicorn
  touch "$cache/installed"
fi
installed=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("django-crm"))')

# Redis: BottleCRM's settings name a Celery broker; the tests give it a database number of its own.
if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  echo "prepare-bottlecrm: starting redis-server on 127.0.0.1:6379"
  command -v redis-server >/dev/null || apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no --daemonize yes >/dev/null
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  echo "prepare-bottlecrm: PostgreSQL is not listening on 127.0.0.1:5432" >&2
  exit 1
fi

psql_() { psql -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt "$@"; }
exists=$(psql_ -c "SELECT 1 FROM pg_database WHERE datname = '$template'")
if [ "$exists" = 1 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$installed" ]; then
  exit 0
fi

echo "prepare-bottlecrm: migrating the template database $template for django-crm $installed (a few minutes)"
started=$(date +%s)
psql_ -c "UPDATE pg_database SET datistemplate = false WHERE datname = '$template'" >/dev/null
psql_ -c "DROP DATABASE IF EXISTS $template" >/dev/null
psql_ -c "DROP DATABASE IF EXISTS ${template}_building" >/dev/null
psql_ -c "CREATE DATABASE ${template}_building" >/dev/null
(
  cd "$cache"
  DJANGO_SETTINGS_MODULE=crm.settings DBNAME=${template}_building DBUSER=postgres DBPASSWORD= \
    DBHOST=127.0.0.1 DBPORT=5432 SECRET_KEY="prepare-only-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
    ENV_TYPE=dev DEBUG=False CELERY_BROKER_URL=redis://127.0.0.1:6379/13 \
    CELERY_RESULT_BACKEND=redis://127.0.0.1:6379/13 \
    "$venv/bin/django-admin" migrate --noinput >"$cache/migrate.log" 2>&1
)
# Built under another name and renamed at the end: an interrupted run never leaves a half template.
psql_ -c "ALTER DATABASE ${template}_building RENAME TO $template" >/dev/null
psql_ -c "UPDATE pg_database SET datistemplate = true WHERE datname = '$template'" >/dev/null
echo "$installed" >"$stamp"
echo "prepare-bottlecrm: template ready in $(($(date +%s) - started)) s"
