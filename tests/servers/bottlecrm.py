"""A real BottleCRM (the ``django-crm`` package) for the CRM connector's tests.

``scripts/prepare-bottlecrm.sh`` installs it once per machine (a Python 3.12 virtualenv under
/var/cache/syncd-test/bottlecrm) and migrates a template database; a test session copies the
template (``CREATE DATABASE ... TEMPLATE``, about a second instead of minutes of migrations),
makes a user, an organisation, a profile and an API token from a Django shell, and starts
gunicorn on a free loopback port.  ``stop`` drops it all.  ``pause``/``resume`` take the
server away and bring it back on the same port (a CRM that is down for a while).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

from syncd.connectors.crm_http import JsonHttp
from tests.servers.ports import free_port, stop_process, wait_listening

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("SYNCD_BOTTLECRM_CACHE", "/var/cache/syncd-test/bottlecrm"))
TEMPLATE = "bottlecrm_template"
REDIS_DB = 13  # BottleCRM's Celery broker: a Redis database of its own

# Run in BottleCRM's Django shell: a user, an organisation, an admin profile and a token.
_MAKE_ACCOUNT = """
import sys
from common.models import Org, Profile, User, PersonalAccessToken
user = User.objects.create(email="admin@example.com", is_active=True)
user.set_password("unused-" + sys.argv[-1] if len(sys.argv) > 1 else "unused")
user.save()
org = Org.objects.create(name="Syncd Test Org")
profile = Profile.objects.create(
    user=user, org=org, role="ADMIN", is_organization_admin=True, has_sales_access=True,
    has_marketing_access=True, is_active=True,
)
made = PersonalAccessToken.generate(profile, "syncd-tests")
raw = made[0] if isinstance(made, tuple) else made
print("TOKEN=" + str(raw))
"""


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qAt",
         "-v", "ON_ERROR_STOP=1", "-c", sql],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


def prepare() -> float:
    """Run the preparation script (instant when the template is current); its seconds."""
    start = time.monotonic()
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "prepare-bottlecrm.sh")],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"prepare-bottlecrm.sh failed:\n{done.stdout}\n{done.stderr}")
    return time.monotonic() - start


class BottleCrm:
    def __init__(self) -> None:
        self.database = f"bottlecrm_test_{os.getpid()}_{secrets.token_hex(3)}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.log = CACHE / f"{self.database}.log"
        self.started_in = 0.0

    def _env(self) -> dict[str, str]:
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))},
            "DJANGO_SETTINGS_MODULE": "crm.settings",
            "DBNAME": self.database,
            "DBUSER": "postgres",
            "DBPASSWORD": "",
            "DBHOST": "127.0.0.1",
            "DBPORT": "5432",
            "SECRET_KEY": "test-" + secrets.token_hex(32),
            "ENV_TYPE": "dev",
            "DEBUG": "False",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
            "CELERY_RESULT_BACKEND": f"redis://127.0.0.1:6379/{REDIS_DB}",
            "ALLOWED_HOSTS": "*",
        }

    def start(self) -> BottleCrm:
        start = time.monotonic()
        _psql(f"CREATE DATABASE {self.database} TEMPLATE {TEMPLATE}")
        done = subprocess.run(
            [str(CACHE / "venv" / "bin" / "django-admin"), "shell", "-c", _MAKE_ACCOUNT],
            capture_output=True,
            text=True,
            env=self._env(),
            cwd=CACHE,
            timeout=300,
            check=False,
        )
        tokens = [line[6:] for line in done.stdout.splitlines() if line.startswith("TOKEN=")]
        if done.returncode != 0 or not tokens:
            self.stop()
            raise RuntimeError(f"BottleCRM account set-up failed:\n{done.stdout}\n{done.stderr}")
        self.token = tokens[0]
        self._serve()
        self.started_in = time.monotonic() - start
        return self

    def _serve(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(CACHE / "venv" / "bin" / "gunicorn"), "crm.wsgi:application",
                 "--bind", f"127.0.0.1:{self.port}", "--workers", "1", "--threads", "4",
                 "--timeout", "60"],
                stdout=out, stderr=subprocess.STDOUT, env=self._env(), cwd=CACHE,
            )  # fmt: skip
        wait_listening(self.port, timeout=120)
        if self.token:
            # The worker imports most of Django on its first request: take that here, so a
            # test's first request is answered as fast as the rest.
            http = JsonHttp(self.url, self.token, timeout=120, what="bottlecrm")
            try:
                http.once("OPTIONS", "/api/interactions/")
            finally:
                http.close()

    def pause(self) -> None:
        """The CRM goes away: connections to its port are refused."""
        stop_process(self.process)
        self.process = None
        wait_listening(self.port, up=False)

    def resume(self) -> None:
        self._serve()

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None
        try:
            _psql(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
        finally:
            self.log.unlink(missing_ok=True)

    # --- looking at what arrived, as a person would in the CRM -------------------------------

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """A request as the CRM's own API user; the parsed answer, AssertionError unless 2xx."""
        http = JsonHttp(self.url, self.token, timeout=30, what="bottlecrm")
        try:
            answer = http.once(method, path, body=body)
        finally:
            http.close()
        assert answer.ok, f"{method} {path}: {answer.said()}"
        return answer.body
