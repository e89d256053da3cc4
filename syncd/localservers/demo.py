"""The quick-start demo: a local Dovecot with two reps' sample mail, then syncd end to end.

    python -m syncd.localservers.demo [WORKDIR]

Everything stays under WORKDIR (default ./demo) and on 127.0.0.1.  It ends by printing
a customer timeline.
"""

from __future__ import annotations

import shlex
import shutil
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from syncd.cli.main import cli
from syncd.localservers.dovecot import Dovecot
from syncd.localservers.sample import CUSTOMERS_CSV, REPS, generate


def _run(*args: str) -> None:
    print(f"\n$ syncd {shlex.join(args)}", flush=True)
    try:
        cli.main(list(args), prog_name="syncd", standalone_mode=False)
    except SystemExit as done:  # click's Exit for non-zero codes; the demo keeps going
        if done.code:
            print(f"(exit status {done.code})")


def write_config(root: Path, dovecot: Dovecot, passwords: dict[str, Path]) -> Path:
    boxes = "".join(
        f"""
[[mailbox]]
name = "{rep.split("@")[0]}"
owner = "{rep}"
host = "127.0.0.1"
port = {dovecot.port}
security = "plain"
username = "{rep}"
password_file = "{passwords[rep]}"
"""
        for rep in REPS
    )
    config = root / "syncd.toml"
    config.write_text(
        '[database]\nurl = "sqlite:///syncd.db"\n\n[organization]\ninternal_domains = ["example.com"]\n'
        + boxes
    )
    return config


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[0] if argv else "demo").resolve()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    secrets = root / "secrets"
    secrets.mkdir(mode=0o700)
    passwords: dict[str, Path] = {}
    for n, rep in enumerate(REPS):
        passwords[rep] = secrets / rep.split("@")[0]
        passwords[rep].write_text(f"demo-secret-{n}-{rep.split('@')[0]}\n")
        passwords[rep].chmod(0o600)
    # Dovecot's unprivileged users must reach its files: keep them out of a private home folder.
    server_root = Path(tempfile.mkdtemp(prefix="syncd-demo-dovecot-"))
    dovecot = Dovecot(
        server_root, {rep: passwords[rep].read_text().strip() for rep in REPS}
    ).start()
    try:
        mail = generate(400)
        by_box: dict[tuple[str, str], list[bytes]] = defaultdict(list)
        for item in mail:
            by_box[(item.owner, item.folder)].append(item.raw)
        for (owner, folder), raws in by_box.items():
            dovecot.deliver_many(owner, raws, folder=folder)
        print(
            f"Dovecot on 127.0.0.1:{dovecot.port} with {len(mail)} sample messages for {', '.join(REPS)}"
        )
        config = write_config(root, dovecot, passwords)
        (root / "customers.csv").write_text(CUSTOMERS_CSV)
        base = ["--config", str(config)]
        _run(*base, "check")
        _run(*base, "customers", "import", str(root / "customers.csv"))
        _run(*base, "sync")
        _run(*base, "sync")  # nothing new: one EXAMINE per folder
        _run(*base, "status")
        _run(*base, "records", "list", "--customer", "Globex", "--limit", "5")
        _run(*base, "timeline", "Acme Corp", "--limit", "8")
    finally:
        dovecot.stop()
        shutil.rmtree(server_root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
