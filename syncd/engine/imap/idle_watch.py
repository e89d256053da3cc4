"""One mailbox's IDLE as the daemon holds it (``Watch``), and the words its states are told in.

A watch is a handle: the daemon stops it, asks whether it is ``alive`` or why it ``ended``,
and a poll borrows its connection (``lend``, ``give_back``) and asks since when it has
covered the mailbox's folders.  Every one of those is the hub's business, under the hub's
lock (engine/imap/idle_hub.py); the watch only carries the state the hub keeps for it, so
that the daemon's side never sees a socket or a thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from syncd.config import MailboxConfig
from syncd.connectors.imap import ImapSession
from syncd.connectors.imap_idle import IdleConnection

OPEN = ("idle", "renewing", "lending", "lent")  # states with a connection logged in


class Hub(Protocol):
    """What a watch asks of the hub that holds it (``IdleHub``)."""

    @property
    def running(self) -> bool: ...

    def unwatch(self, watch: Watch) -> None: ...

    def lend(self, watch: Watch, wait: float) -> ImapSession | None: ...

    def give_back(
        self,
        watch: Watch,
        usable: bool,
        inbox_uidnext: int | None,
        seen: Mapping[str, int | None] | None = None,
    ) -> None: ...

    def covered_since(self, watch: Watch) -> float | None: ...

    def folders_covered(self, watch: Watch) -> dict[str, float]: ...


@dataclass(eq=False)
class Watch:
    """One mailbox's IDLE, as the daemon holds it: ``stop()``, ``alive``, ``ended``."""

    box: MailboxConfig
    on_new_mail: Callable[[str], None]
    _hub: Hub
    # Called once, after the first login, with INBOX's (UIDVALIDITY, UIDNEXT) then.
    on_open: Callable[[tuple[int | None, int | None]], None] | None = None
    # queued (for a login) | connecting | idle | renewing | waiting (to reconnect) | ended,
    # or lending (to leave the selector) | lent (to a poll, out of IDLE)
    state: str = "queued"
    ended: str | None = None  # why it ended on purpose: stopped, login refused, no IDLE
    dead: bool = False  # killed by something no handler catches: the daemon starts it again
    supported: bool | None = None  # the server has IDLE; unknown until the first login
    renewals: int = 0  # IDLE left and entered again with a NOOP in between
    crashes: int = 0  # connections dropped after an unexpected exception
    failures: int = 0  # in a row, for the reconnect backoff
    connected_at: float = 0.0
    due: float = 0.0  # monotonic time of the next renewal (idle) or reconnect (waiting)
    connection: IdleConnection | None = None
    reconnecting: bool = False  # mail may have come while away: wake the source once back
    _done: threading.Event = field(default_factory=threading.Event)
    _handed: threading.Event = field(default_factory=threading.Event)  # out of the selector

    def stop(self) -> None:
        self._hub.unwatch(self)

    def lend(self, wait: float) -> ImapSession | None:
        """The watch's logged-in session, out of IDLE, for one poll; None when it has none
        to lend now (connecting, reconnecting, renewing, lent already)."""
        return self._hub.lend(self, wait)

    def give_back(
        self, usable: bool, inbox_uidnext: int | None, seen: Mapping[str, int | None] | None = None
    ) -> None:
        """The poll is over: IDLE again (or, when ``usable`` is False, log in anew).
        ``seen``: the UIDNEXT the poll read of each folder, for the folders under NOTIFY."""
        self._hub.give_back(self, usable, inbox_uidnext, seen)

    def inbox_covered_since(self) -> float | None:
        """Since when (time.monotonic()) this watch's connection has kept INBOX covered
        without a break: in IDLE from then on, every new message there is reported
        (``on_new_mail``), also one that came while the connection was lent, renewed or
        lost (a reconnect reports once back).  None while it has no connection."""
        return self._hub.covered_since(self)

    def folders_covered_since(self) -> dict[str, float]:
        """``inbox_covered_since`` for every folder the connection covers: INBOX in IDLE,
        the others by NOTIFY (each since its NOTIFY SET answered for it).  Empty while it
        has no connection."""
        return self._hub.folders_covered(self)

    def join(self, timeout: float) -> None:
        self._done.wait(timeout)

    @property
    def alive(self) -> bool:
        return self.ended is None and not self.dead and self._hub.running

    @property
    def name(self) -> str:
        return self.box.name


def gone(watch: Watch) -> bool:
    """Stopped, or dead with the selector thread that held it (the daemon starts a new
    watch for it): either way its connection must be closed, never registered or reopened."""
    return watch.ended is not None or watch.dead
