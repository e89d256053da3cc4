"""h-verify review: a `syncd run` whose loop crashed must exit non-zero (systemd's
Restart=on-failure restarts it); with the hard limit armed at every stop and never
disarmed, a crash whose teardown waits for a sync stuck on a dead server exits 0.

The IMAP server is a loopback listener that never answers (a sync's login hangs until its
timeout); the crash is a bug injected in the loop, in a real `syncd run` process."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

INJECT = textwrap.dedent(
    """
    import sys, time
    from syncd.engine import daemon as d
    original = d.Daemon._apply_recovered
    began = time.monotonic()

    def crash(self):
        if time.monotonic() - began > 3 and self._pool.busy():
            raise RuntimeError("a bug in the loop (injected)")
        return original(self)

    d.Daemon._apply_recovered = crash
    from syncd.cli.main import main
    sys.argv = ["syncd", "--config", sys.argv[1], "run"]
    main()
    """
)


def test_a_crashed_daemon_exits_non_zero(tmp_path: Path) -> None:
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead.listen(16)  # connections complete, nothing ever answers
    try:
        (tmp_path / "alice.pass").write_text("secret")
        config = tmp_path / "syncd.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{tmp_path / "syncd.db"}"\n\n'
            '[organization]\ninternal_domains = ["example.com"]\n\n'
            "[[mailbox]]\n"
            'name = "alice"\nowner = "alice@example.com"\nhost = "127.0.0.1"\n'
            f'port = {dead.getsockname()[1]}\nsecurity = "plain"\nusername = "alice"\n'
            f'password_file = "{tmp_path / "alice.pass"}"\ntimeout = 25\n'
        )
        began = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-c", INJECT, str(config)],
            capture_output=True,
            timeout=90,
            cwd=tmp_path,
        )
        took = time.monotonic() - began
    finally:
        dead.close()
    err = proc.stderr.decode()
    assert "injected" in err, err[-3000:]
    assert proc.returncode != 0, f"exit {proc.returncode} after {took:.1f} s:\n" + "\n".join(
        line for line in err.splitlines() if "overran" in line or "stopped" in line
    )
