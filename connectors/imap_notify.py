"""IMAP NOTIFY (RFC 5465) on a watch's connection: the folders other than INBOX, covered.

A watch holds INBOX in IDLE.  Where the server offers NOTIFY, the same connection also asks
to hear about the mailbox's other captured folders (the Sent one): the server then answers
a new message there with an untagged STATUS, even in IDLE, and a poll needs no STATUS of
its own for a folder covered that way.  This module is the bookkeeping of one connection:
the command, what each untagged line means, and since when each folder is covered.  The
folders are named one by one, not ``personal``: mail moved about in folders we do not
capture (Drafts, Trash) would wake the mailbox for nothing.

Safety first: a folder counts as covered only from the answer of a NOTIFY SET whose STATUS
named it, until anything puts that in doubt.  An event that cannot be read for sure (a name
in a literal, a folder we did not ask about) is news, and news wakes the mailbox, whose next
poll is then a full pass; in a NOTIFY SET's answer such a STATUS is ignored (that folder is
simply not covered).  Lost events (NOTIFICATIONOVERFLOW, or any untagged NO or BAD: news) or
a LIST (a folder created, renamed or deleted) end every folder's cover until the next NOTIFY
SET.  Mail a renewal finds that no event announced ends the cover for good on that
connection: something writes into the folder behind the server's back.  Dovecot
2.3 sends no LIST for a rename: a folder gone loses its cover at the next NOTIFY SET (the
watch's renewal, every few minutes), which names no folder it could not find; until then
no mail can come into it anyway.  Nothing here relies on the order of NOTIFY's responses
and IDLE's: each line is judged on its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from imapclient.imap_utf7 import encode as utf7

INBOX = "INBOX"
# Events per folder: new messages are what a poll looks for; RFC 5465 5.2 wants MessageExpunge
# wherever MessageNew is asked; MailboxName reports a folder renamed or deleted (a LIST).
_EVENTS = b"(MessageNew MessageExpunge)"
_MAILBOX_EVENTS = b"(MessageNew MessageExpunge MailboxName)"

_STATUS = re.compile(
    rb'^\* STATUS (?P<name>"(?:[^"\\\r\n]|\\["\\])*"|[^\s(){"]+) \((?P<items>[^()]*)\)\s*$',
    re.IGNORECASE,
)
_ANY_STATUS = re.compile(rb"^\* STATUS\b", re.IGNORECASE)
_LIST = re.compile(rb"^\* (?:X?LIST|LSUB)\b", re.IGNORECASE)
_OVERFLOW = re.compile(rb"^\* (?:OK|NO|BAD) \[NOTIFICATIONOVERFLOW\]", re.IGNORECASE)
# Dovecot 2.3 says events were lost with a plain "* NO NOTIFY error, some events may have got
# lost", no response code: any untagged NO or BAD while NOTIFY is on is taken as that.
_TROUBLE = re.compile(rb"^\* (?:NO|BAD)\b", re.IGNORECASE)

Seen = tuple[int | None, int | None]  # (UIDVALIDITY, UIDNEXT) as last heard


def _quoted(name: bytes) -> bytes:
    return b'"' + name.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def _unquoted(name: bytes) -> bytes:
    if name.startswith(b'"'):
        return re.sub(rb"\\(.)", rb"\1", name[1:-1])
    return name


def _items(text: bytes) -> dict[bytes, int]:
    words = text.split()
    out: dict[bytes, int] = {}
    for key, value in zip(words[::2], words[1::2], strict=False):
        if value.isdigit():
            out[key.upper()] = int(value)
    return out


class Notified:
    """NOTIFY's view of one connection's folders other than INBOX.

    Used by one thread at a time (the hub hands the connection around); ``covered`` is
    replaced, never changed in place, so another thread may read it without a lock."""

    def __init__(self, folders: list[str]) -> None:
        others = [f for f in dict.fromkeys(folders) if f.upper() != INBOX]
        self._wire = {utf7(f): f for f in others}  # as the server names them
        self._heard: dict[str, Seen] = {}  # what the last STATUS of each folder said
        self._answers: dict[str, Seen] | None = None  # STATUS answers of a NOTIFY SET
        # Folder: since when (time.monotonic()) every new message there is reported.
        self.covered: Mapping[str, float] = {}
        # False once a NOTIFY SET found mail that no event announced although NOTIFY was on
        # all along (written behind the server's back): the server's events are not the whole
        # story on this connection, so nothing is covered on it again (polls ask STATUS).
        self.trusted = True
        self._doubt = False  # an untagged NO or BAD during a NOTIFY SET: it covers nothing

    @property
    def folders(self) -> list[str]:
        return list(self._wire.values())

    # --- commands --------------------------------------------------------------------------

    def set_command(self) -> bytes:
        """NOTIFY SET STATUS: INBOX (selected) announced as in IDLE, the other folders by
        STATUS, and a STATUS of each now, the baseline for what comes later."""
        names = b" ".join(_quoted(name) for name in self._wire)
        return (
            b"NOTIFY SET STATUS (selected " + _EVENTS + b") (mailboxes (" + names + b") "
            + _MAILBOX_EVENTS + b")"
        )  # fmt: skip

    def begin_set(self) -> None:
        self._answers = {}
        self._doubt = False

    def end_set(
        self,
        answered: float,
        seen: Mapping[str, int | None] | None = None,
        *,
        announced: bool = False,
    ) -> bool:
        """The NOTIFY SET was accepted at ``answered`` (time.monotonic() once its tagged OK
        came: its STATUS answers may count mail a poll begun before then did not see); True
        when a folder has mail that neither its events nor the poll that just ended
        (``seen``: the UIDNEXT a lent poll read per folder) can account for.  ``announced``:
        NOTIFY was on since the last SET (a renewal), so any such mail was written behind
        the server's back and the cover is not trusted again.  A folder without a STATUS
        answer (gone, renamed) is no longer covered: a poll asks it again, and reports it
        if refused."""
        answers, self._answers = self._answers or {}, None
        seen = seen or {}
        news = False
        unannounced = False
        covered: dict[str, float] = {}
        for folder, (validity, uidnext) in answers.items():
            if uidnext is None:
                continue  # nothing to compare later events with: not covered
            since = self.covered.get(folder)
            known = self._heard.get(folder, (None, None))
            if since is not None:
                before = known
                if seen.get(folder) is not None:
                    before = (before[0], seen[folder])
                moved = _moved(before, (validity, uidnext))
                news |= moved
                unannounced |= moved and announced
            elif seen.get(folder) is not None:
                # A first cover after a poll that read the folder: mail filed between that
                # read and this answer is in the baseline, and no event will ever tell.
                news |= _moved((known[0], seen[folder]), (validity, uidnext))
            covered[folder] = answered if since is None else since
            self._heard[folder] = (validity or known[0], uidnext)
        if unannounced:
            self.trusted = False
        self.covered = covered if self.trusted and not self._doubt else {}
        return news

    def drop(self) -> None:
        """NOTIFY is off (refused, NONE sent, the connection lost): nothing is covered."""
        self._answers = None
        self.covered = {}

    # --- what the server says --------------------------------------------------------------

    def line(self, line: bytes) -> bool:
        """One untagged line while NOTIFY may be on; True when it is NOTIFY's and says a
        folder may have new mail."""
        if _OVERFLOW.match(line) or _TROUBLE.match(line):  # events were lost: ask
            self.covered = {}
            if self._answers is not None:
                # During a NOTIFY SET: its STATUS answers are the new baseline, so what was
                # lost before is found by comparing with them; but this SET covers nothing,
                # and wakes nothing either (a server saying so at every SET would otherwise
                # make every give-back wake a pass, whose give-back wakes the next).
                self._doubt = True
                return False
            return True
        if _LIST.match(line):
            # A folder made, renamed or deleted (Dovecot announces Sent made on first use):
            # no new message in itself, but the next poll asks every folder again.
            self.covered = {}
            return False
        if not _ANY_STATUS.match(line):
            return False
        found = _STATUS.match(line)
        folder = self._wire.get(_unquoted(found["name"])) if found else None
        if found is None or folder is None:
            # Answering a NOTIFY SET: a folder not asked for, or named so that it cannot be
            # read for sure (a literal, another spelling), is simply not covered, and polls
            # ask it; as news it would wake a pass at every give-back, endlessly.  An event:
            # assume the worst.
            return self._answers is None
        items = _items(found["items"])
        heard = (items.get(b"UIDVALIDITY"), items.get(b"UIDNEXT"))
        if self._answers is not None:
            self._answers[folder] = heard
            return False
        before = self._heard.get(folder, (None, None))
        self._heard[folder] = (heard[0] or before[0], heard[1] or before[1])
        return _moved(before, heard)


def _moved(before: Seen, now: Seen) -> bool:
    """A folder may have mail past what was known: a new UIDVALIDITY, a UIDNEXT other than
    the one known (below it: the folder was made anew under its name, and Dovecot's events
    leave UIDVALIDITY out), or either unknown.  The same UIDNEXT: an expunge, a repeat."""
    validity, uidnext = now
    if uidnext is None or before[1] is None:
        return True
    if validity is not None and before[0] is not None and validity != before[0]:
        return True
    return uidnext != before[1]
