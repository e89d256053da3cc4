"""The IMAP pieces a daemon keeps for its mailboxes, built together because they share: the
mailbox groups' XOAUTH2 token caches (whatever logs in), the sessions kept from one poll of
a mailbox to the next, and the IDLE hub, whose logins count in syncd_imap_logins_total
beside the polls'.  The daemon hands them to its sources and watchers; none of them knows
the daemon.
"""

from __future__ import annotations

from syncd.config import SyncConfig
from syncd.engine.imap.idle_hub import IdleHub
from syncd.engine.imap.sessions import DaemonSessions
from syncd.engine.imap.unchanged import imap_opener
from syncd.group_tokens import TokenCaches
from syncd.metrics import Metrics


class ImapKit:
    def __init__(self, sync: SyncConfig, metrics: Metrics) -> None:
        self.tokens = TokenCaches()
        self.sessions = DaemonSessions(sync, metrics, imap_opener(self.tokens))
        # One selector thread for every watch, whatever their number.
        self.hub = IdleHub(
            on_login=self.sessions.observe_login, tokens=self.tokens, notify=sync.notify
        )
