"""A throw-away Dovecot on loopback with its own users and Maildirs.

Used by the test suite, the benchmark and the demo.  Mail is seeded by writing
files into the Maildirs (much faster than APPEND) before or between logins.
Needs Debian's ``dovecot-imapd`` (``scripts/bootstrap.sh`` installs it).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers.ports import free_port, wait_listening

DOVECOT = shutil.which("dovecot", path="/usr/sbin:/usr/bin:" + os.environ.get("PATH", ""))

_CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
listen = 127.0.0.1
protocols = imap
default_login_user = {login_user}
default_internal_user = {internal_user}
default_internal_group = {internal_group}
first_valid_uid = 1
disable_plaintext_auth = no
auth_mechanisms = plain login{oauth2_mechanisms}
auth_failure_delay = 0
mail_location = maildir:{root}/mail/%u/Maildir
mail_fsync = never
# IDLE learns of new mail by inotify; where the machine's inotify instances run out (many
# Dovecots of parallel tests under one uid), it checks this often instead of every 30 s.
mailbox_idle_check_interval = 1 secs
ssl = {ssl}
{ssl_files}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
{oauth2_passdb}userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={root}/mail/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \\Sent
    auto = create
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = {tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
{extra}{many}"""

# For thousands of connections (the push tests and bench/push.py): the defaults allow 100
# imap processes and 10 connections per user and address.  An imap process serves many
# connections: every process costs an inotify instance of the mail uid, and the kernel
# allows 128 per uid (shared with every other Dovecot of that uid), past which Dovecot
# notices new mail by polling every 30 s instead of at once.
_MANY = """\
default_process_limit = {n}
default_client_limit = {n}
mail_max_userip_connections = 100
service imap {{
  client_limit = {per_process}
  service_count = 0
  process_limit = {processes}
  vsz_limit = {vsz}
}}
service imap-login {{
  service_count = 0
  client_limit = {n}
  process_limit = 8
}}
service anvil {{
  client_limit = {anvil}
}}
service auth {{
  client_limit = {anvil}
}}
"""


# Dovecot 2.3's capabilities after login, less NOTIFY: a server that does not offer it
# (``Dovecot(capabilities=...)``), for the tests and benchmarks that compare.
WITHOUT_NOTIFY = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT UNSELECT CHILDREN NAMESPACE "
    "UIDPLUS LIST-EXTENDED CONDSTORE QRESYNC ESEARCH LIST-STATUS BINARY MOVE LITERAL+ "
    "SPECIAL-USE"
)


def _unused_uid() -> int:
    """A uid no account has, different for each process (a Dovecot's mail owner)."""
    uid = 61000 + os.getpid() % 3000
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
        uid += 1


def _raise_open_files() -> None:
    """Before exec: Dovecot refuses client limits above the open-file limit."""
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def _alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (killed, not yet reaped) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


@dataclass
class Dovecot:
    """One Dovecot instance under ``root``; ``port`` is plain IMAP, ``tls_port`` implicit TLS."""

    root: Path
    users: dict[str, str]
    tls: bool = False
    # An OAuth2 token introspection endpoint (RFC 7662): XOAUTH2 and OAUTHBEARER logins are
    # then checked there, as Gmail- and Microsoft-365-style deployments do.
    oauth2_introspection_url: str | None = None
    # How the oauth2 passdb compares the login name with the introspected "username"
    # (Dovecot's username_format, applied to both): "%d" accepts a token of any user of the
    # login's domain, as an app-only (client-credentials) token is valid for a tenant.
    oauth2_username_format: str | None = None
    # Master users (name: password): "rep*master" logs in to rep's mailbox with master's
    # password (a passwd-file passdb with master = yes; Dovecot's separator "*").
    master_users: dict[str, str] | None = None
    # Connections to allow at once; 0 keeps Dovecot's defaults (about 100).
    max_connections: int = 0
    # The capabilities announced after login instead of Dovecot's own (imap_capability):
    # a server without NOTIFY, say.
    capabilities: str | None = None
    # With ``max_connections``: connections one imap process serves.  Each process costs an
    # inotify instance of the mail uid (128 per uid by default); 10,000 connections at 50 a
    # process would be 200 processes, and those past the 128th notice new mail only by
    # polling (mailbox_idle_check_interval).  bench/fleet.py raises it for its largest fleets.
    clients_per_process: int = 50
    port: int = 0
    tls_port: int = 0
    cert_file: Path | None = None
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        if DOVECOT is None:
            raise RuntimeError(
                "dovecot is not installed: run scripts/bootstrap.sh (apt-get install dovecot-imapd)"
            )
        self.root = self.root.resolve()
        if os.geteuid() == 0:
            mail = pwd.getpwnam("mail")
            self._mail_uid, self._mail_gid = mail.pw_uid, mail.pw_gid
            if self.max_connections:
                # A uid of its own: the kernel's 128 inotify instances per uid are shared by
                # every Dovecot of the uid "mail" on the machine; past them mail in IDLE is
                # noticed by a poll every 30 s instead of at once.
                self._mail_uid = self._mail_gid = _unused_uid()
            self._login_user, self._internal_user, self._internal_group = (
                "dovenull",
                "dovecot",
                "dovecot",
            )
        else:  # an unprivileged developer: everything runs as themselves
            me = pwd.getpwuid(os.geteuid())
            self._mail_uid, self._mail_gid = me.pw_uid, me.pw_gid
            name = me.pw_name
            self._login_user = self._internal_user = name
            self._internal_group = name

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> Dovecot:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir(exist_ok=True)
        (self.root / "passwd").write_text(
            "".join(f"{user}:{{PLAIN}}{password}\n" for user, password in self.users.items())
        )
        for user in self.users:
            self.maildir(user)  # created now so the mail uid owns it
        self.port = self.port or free_port()
        self.tls_port = self.tls_port or free_port()
        ssl_files = ""
        if self.tls:
            self.cert_file, key = self._self_signed()
            ssl_files = f"ssl_cert = <{self.cert_file}\nssl_key = <{key}\nssl_dh = </usr/share/dovecot/dh.pem"
        oauth2_passdb = ""
        if self.oauth2_introspection_url:
            (self.root / "oauth2.conf").write_text(
                "introspection_mode = post\n"
                f"introspection_url = {self.oauth2_introspection_url}\n"
                "force_introspection = yes\n"
                "username_attribute = username\n"
                "active_attribute = active\n"
                "active_value = true\n"
                + (
                    f"username_format = {self.oauth2_username_format}\n"
                    if self.oauth2_username_format
                    else ""
                )
            )
            oauth2_passdb = (
                f"passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                f"  args = {self.root}/oauth2.conf\n}}\n"
            )
        if self.master_users:
            (self.root / "master-passwd").write_text(
                "".join(f"{u}:{{PLAIN}}{p}\n" for u, p in self.master_users.items())
            )
            oauth2_passdb = (
                "auth_master_user_separator = *\n"
                f"passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u "
                f"{self.root}/master-passwd\n  master = yes\n  pass = yes\n}}\n" + oauth2_passdb
            )
        conf = self.root / "dovecot.conf"
        conf.write_text(
            _CONFIG.format(
                root=self.root,
                port=self.port,
                tls_port=self.tls_port,
                ssl="yes" if self.tls else "no",
                ssl_files=ssl_files,
                mail_uid=self._mail_uid,
                mail_gid=self._mail_gid,
                login_user=self._login_user,
                internal_user=self._internal_user,
                internal_group=self._internal_group,
                oauth2_mechanisms=" xoauth2 oauthbearer" if self.oauth2_introspection_url else "",
                oauth2_passdb=oauth2_passdb,
                extra=(f"imap_capability = {self.capabilities}\n" if self.capabilities else ""),
                many=_MANY.format(
                    n=self.max_connections,
                    per_process=self.clients_per_process,
                    processes=self.max_connections // self.clients_per_process + 10,
                    # Dovecot's default (256M) up to 50 a process; above, 5 MB of address
                    # space a connection, far above what an idle one maps.
                    vsz=f"{max(256, self.clients_per_process * 5)}M",
                    anvil=2 * self.max_connections + 100,
                )
                if self.max_connections
                else "",
            )
        )
        log = (self.root / "start.log").open("ab")
        # The master daemonises but keeps our stdout: send it to a file or we would wait forever.
        subprocess.run(
            [str(DOVECOT), "-c", str(conf)],
            stdout=log,
            stderr=log,
            check=True,
            preexec_fn=_raise_open_files if self.max_connections else None,
        )
        log.close()
        wait_listening(self.port)
        if self.tls:
            wait_listening(self.tls_port)
        return self

    def stop(self) -> None:
        pid_file = self.root / "run" / "master.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pid_file.unlink(missing_ok=True)
            return
        # The master lingers for seconds waiting on its log process; nothing here is worth
        # a graceful wait, so after a moment the whole process group goes.
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.02)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        wait_listening(self.port, up=False, timeout=10)
        # A killed master may linger as a zombie whose pid Dovecot would take for a running
        # instance: the pid file goes, so the same folder can be started again.
        pid_file.unlink(missing_ok=True)

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_user(self, user: str, password: str) -> None:
        """Add a login while running.

        Dovecot looks at its passwd-file at most once a second, so this waits a second
        for the change to be seen; create users up front in ``users`` where speed matters.
        """
        self.users[user] = password
        passwd = self.root / "passwd"
        tmp = passwd.with_suffix(".tmp")
        tmp.write_text("".join(f"{u}:{{PLAIN}}{p}\n" for u, p in self.users.items()))
        tmp.rename(passwd)
        self.maildir(user)
        time.sleep(1.1)

    def connections(self) -> int:
        """IMAP connections established to this server now (its side of each, from the kernel)."""
        ports = {f"{self.port:04X}", f"{self.tls_port:04X}"}
        found = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(OSError):
                for line in Path(table).read_text().splitlines()[1:]:
                    fields = line.split()
                    if fields[3] == "01" and fields[1].rsplit(":", 1)[1] in ports:
                        found += 1
        return found

    # --- mail ---------------------------------------------------------------------------------

    def maildir(self, user: str, folder: str = "INBOX") -> Path:
        base = self.root / "mail" / user / "Maildir"
        path = base if folder == "INBOX" else base / f".{folder.replace('/', '.')}"
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        self._own(self.root / "mail" / user)
        return path

    def deliver(self, user: str, raw: bytes, *, folder: str = "INBOX", seen: bool = False) -> Path:
        """Put one message into a folder, as unread unless ``seen``."""
        return self.deliver_many(user, [raw], folder=folder, seen=seen)[0]

    def deliver_many(
        self, user: str, messages: list[bytes], *, folder: str = "INBOX", seen: bool = False
    ) -> list[Path]:
        target = self.maildir(user, folder)
        uid, gid = self._mail_uid, self._mail_gid
        flags = "S" if seen else ""
        stamp = int(time.time())
        out: list[Path] = []
        for raw in messages:
            name = f"{stamp}.M{next(self._counter)}P{os.getpid()}.syncd:2,{flags}"
            tmp = target / "tmp" / name
            tmp.write_bytes(raw)
            os.chown(tmp, uid, gid)
            final = target / "cur" / name
            tmp.rename(final)  # atomic: Dovecot never sees half a message
            out.append(final)
        return out

    def reset_uidvalidity(self, user: str, folder: str = "INBOX") -> None:
        """Make Dovecot assign a new UIDVALIDITY, as a server rebuild or migration does."""
        target = self.maildir(user, folder)
        for name in (
            "dovecot-uidlist",
            "dovecot.index",
            "dovecot.index.cache",
            "dovecot.index.log",
        ):
            (target / name).unlink(missing_ok=True)

    def _own(self, path: Path) -> None:
        uid, gid = self._mail_uid, self._mail_gid
        for dirpath, _dirs, filenames in os.walk(path):
            os.chown(dirpath, uid, gid)
            for name in filenames:
                os.chown(Path(dirpath) / name, uid, gid)

    def _self_signed(self) -> tuple[Path, Path]:
        cert, key = self.root / "cert.pem", self.root / "key.pem"
        if not cert.exists():
            subprocess.run(
                [
                    "openssl",
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-keyout",
                    str(key),
                    "-out",
                    str(cert),
                    "-subj",
                    "/CN=localhost",
                    "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1",
                ],
                check=True,
                capture_output=True,
            )
            key.chmod(0o600)
        return cert, key
