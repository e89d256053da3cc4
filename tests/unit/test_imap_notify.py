"""What each line a NOTIFY server sends means for the folders it covers (connectors/imap_notify.py):
news wakes the mailbox, doubt ends the cover, an expunge is nothing to capture."""

from __future__ import annotations

from syncd.connectors.imap_notify import Notified


def _covering(folders: list[str], *answers: bytes, began: float = 10.0) -> Notified:
    notified = Notified(folders)
    notified.begin_set()
    for line in answers:
        assert notified.line(line) is False  # a NOTIFY SET's own STATUS answers are no news
    assert notified.end_set(began) is False  # nothing was covered before: nothing to compare
    return notified


def test_the_command_names_every_folder_but_inbox_as_the_server_spells_it() -> None:
    notified = Notified(["INBOX", "Sent", 'Gesendet "alt"', "Entwürfe", "Sent"])
    assert notified.folders == ["Sent", 'Gesendet "alt"', "Entwürfe"]
    assert notified.set_command() == (
        b'NOTIFY SET STATUS (selected (MessageNew MessageExpunge)) (mailboxes ("Sent" '
        b'"Gesendet \\"alt\\"" "Entw&APw-rfe") (MessageNew MessageExpunge MailboxName))'
    )


def test_new_mail_is_news_an_expunge_or_a_repeat_is_not() -> None:
    notified = _covering(
        ["INBOX", "Sent", "Gesendete Objekte"],
        b"* STATUS Sent (MESSAGES 3 UIDNEXT 4 UIDVALIDITY 7 UNSEEN 0)\r\n",
        b'* STATUS "Gesendete Objekte" (MESSAGES 0 UIDNEXT 1 UIDVALIDITY 8)\r\n',
    )
    assert notified.covered == {"Sent": 10.0, "Gesendete Objekte": 10.0}
    assert notified.line(b"* STATUS Sent (MESSAGES 2 UIDNEXT 4)\r\n") is False  # expunged
    assert notified.line(b"* STATUS Sent (MESSAGES 2 UIDNEXT 4 UNSEEN 0)\r\n") is False
    assert notified.line(b"* STATUS Sent (MESSAGES 3 UIDNEXT 5)\r\n") is True
    assert notified.line(b'* STATUS "Gesendete Objekte" (MESSAGES 1 UIDNEXT 2)\r\n') is True
    # A folder made anew under its name: its UIDNEXT starts again, below the known one.
    assert notified.line(b"* STATUS Sent (MESSAGES 1 UIDNEXT 2)\r\n") is True
    assert notified.line(b"* STATUS Sent (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 9)\r\n") is True
    assert notified.line(b"* 4 EXISTS\r\n") is False  # INBOX's: IDLE's own reading
    assert notified.covered == {"Sent": 10.0, "Gesendete Objekte": 10.0}


def test_what_cannot_be_read_for_sure_is_news() -> None:
    notified = _covering(
        ["INBOX", "Sent"], b"* STATUS Sent (MESSAGES 0 UIDNEXT 1 UIDVALIDITY 7)\r\n"
    )
    assert notified.line(b"* STATUS {4}\r\n") is True  # the name in a literal
    assert notified.line(b"* STATUS Drafts (MESSAGES 0 UIDNEXT 1)\r\n") is True  # not asked
    assert notified.line(b"* STATUS Sent (MESSAGES 1)\r\n") is True  # no UIDNEXT
    assert notified.covered == {"Sent": 10.0}


def test_overflow_or_a_folder_renamed_ends_the_cover_until_the_next_notify_set() -> None:
    # Overflow: events were lost, a poll must run.  A LIST: no mail in itself (a folder
    # renamed has none, one made anew is asked by the next poll), but nothing is trusted.
    for line, news in (
        (b"* OK [NOTIFICATIONOVERFLOW] too many\r\n", True),
        (b'* LIST () "/" Sent\r\n', False),
    ):
        notified = _covering(["INBOX", "Sent"], b"* STATUS Sent (UIDNEXT 4 UIDVALIDITY 7)\r\n")
        assert notified.line(line) is news
        assert notified.covered == {}
        # NOTIFY set again: covered from then, not from before the doubt.
        notified.begin_set()
        notified.line(b"* STATUS Sent (UIDNEXT 4 UIDVALIDITY 7)\r\n")
        assert notified.end_set(20.0) is False
        assert notified.covered == {"Sent": 20.0}


def test_a_notify_set_again_keeps_the_cover_and_reports_mail_nobody_announced() -> None:
    notified = _covering(["INBOX", "Sent"], b"* STATUS Sent (UIDNEXT 4 UIDVALIDITY 7)\r\n")
    # A renewal: unchanged, the cover goes on from its first NOTIFY SET.
    notified.begin_set()
    notified.line(b"* STATUS Sent (UIDNEXT 4 UIDVALIDITY 7)\r\n")
    assert notified.end_set(30.0) is False and notified.covered == {"Sent": 10.0}
    # Mail written past the server (no event), or while NOTIFY was off for a poll: news.
    notified.begin_set()
    notified.line(b"* STATUS Sent (UIDNEXT 5 UIDVALIDITY 7)\r\n")
    assert notified.end_set(40.0) is True and notified.covered == {"Sent": 10.0}
    # A poll that read the folder past it (``seen``): the poll has it, no news.
    notified.begin_set()
    notified.line(b"* STATUS Sent (UIDNEXT 6 UIDVALIDITY 7)\r\n")
    assert notified.end_set(50.0, {"Sent": 6}) is False
    # A folder gone (renamed, deleted) answers nothing: no longer covered, polls ask it.
    notified.begin_set()
    assert notified.end_set(60.0) is False and notified.covered == {}


def test_a_folder_whose_status_has_no_uidnext_is_never_covered() -> None:
    notified = Notified(["INBOX", "Sent"])
    notified.begin_set()
    notified.line(b"* STATUS Sent (MESSAGES 3)\r\n")
    assert notified.end_set(10.0) is False and notified.covered == {}
    notified = _covering(["INBOX", "Sent"], b"* STATUS Sent (UIDNEXT 4)\r\n")
    notified.drop()  # refused, or NOTIFY NONE for good: nothing covered
    assert notified.covered == {}


def test_a_notify_set_answer_for_a_folder_not_asked_about_is_ignored() -> None:
    # Asked for Sent only, a lenient server answers Drafts too, or a name in a literal or
    # spelt otherwise: as news each would wake a pass at every give-back, endlessly.
    notified = _covering(
        ["INBOX", "Sent"],
        b"* STATUS Sent (MESSAGES 0 UIDNEXT 1 UIDVALIDITY 7)\r\n",
        b"* STATUS Drafts (MESSAGES 0 UIDNEXT 1 UIDVALIDITY 8)\r\n",
        b"* STATUS {4}\r\n",
        b"* STATUS inbox.Sent (MESSAGES 0 UIDNEXT 1)\r\n",
    )
    assert notified.covered == {"Sent": 10.0}
    notified.begin_set()
    assert notified.line(b"* STATUS Drafts (MESSAGES 1 UIDNEXT 2)\r\n") is False
    assert notified.line(b"* STATUS Sent (MESSAGES 0 UIDNEXT 1 UIDVALIDITY 7)\r\n") is False
    assert notified.end_set(20.0) is False and notified.covered == {"Sent": 10.0}
    # Outside a NOTIFY SET's answer it is an event: news, as before.
    assert notified.line(b"* STATUS Drafts (MESSAGES 1 UIDNEXT 2)\r\n") is True


def test_any_untagged_no_or_bad_while_notifying_is_events_lost() -> None:
    # Dovecot 2.3.19's way of saying it, without NOTIFICATIONOVERFLOW.
    for line in (
        b"* NO NOTIFY error, some events may have got lost\r\n",
        b"* BAD something went wrong\r\n",
    ):
        notified = _covering(["INBOX", "Sent"], b"* STATUS Sent (UIDNEXT 4 UIDVALIDITY 7)\r\n")
        assert notified.line(line) is True
        assert notified.covered == {}
    # During a NOTIFY SET: its answers are the new baseline, so nothing to wake for; but
    # it covers nothing (a poll asks), and the next one covers again.
    notified = _covering(["INBOX", "Sent"], b"* STATUS Sent (UIDNEXT 4 UIDVALIDITY 7)\r\n")
    notified.begin_set()
    assert notified.line(b"* NO NOTIFY error, some events may have got lost\r\n") is False
    notified.line(b"* STATUS Sent (UIDNEXT 4 UIDVALIDITY 7)\r\n")
    assert notified.end_set(20.0) is False and notified.covered == {}
    notified.begin_set()
    notified.line(b"* STATUS Sent (UIDNEXT 4 UIDVALIDITY 7)\r\n")
    assert notified.end_set(30.0) is False and notified.covered == {"Sent": 30.0}


def test_a_first_cover_after_a_poll_compares_with_what_the_poll_read() -> None:
    # The poll read Sent at UIDNEXT 4; a message filed before the NOTIFY SET ran is in its
    # answer (UIDNEXT 5) and no event will follow: news now, or never.
    notified = Notified(["INBOX", "Sent"])
    notified.begin_set()
    notified.line(b"* STATUS Sent (UIDNEXT 5 UIDVALIDITY 7)\r\n")
    assert notified.end_set(10.0, {"Sent": 4}) is True
    assert notified.covered == {"Sent": 10.0}
    notified = Notified(["INBOX", "Sent"])
    notified.begin_set()
    notified.line(b"* STATUS Sent (UIDNEXT 5 UIDVALIDITY 7)\r\n")
    assert notified.end_set(10.0, {"Sent": 5}) is False  # the poll has it


def test_mail_a_renewal_finds_unannounced_ends_the_cover_on_the_connection() -> None:
    # Given back after a poll, NOTIFY was off meanwhile: mail found is news, cover kept.
    notified = _covering(["INBOX", "Sent"], b"* STATUS Sent (UIDNEXT 4 UIDVALIDITY 7)\r\n")
    notified.begin_set()
    notified.line(b"* STATUS Sent (UIDNEXT 5 UIDVALIDITY 7)\r\n")
    assert notified.end_set(20.0) is True and notified.covered == {"Sent": 10.0}
    # A renewal (NOTIFY on all along) finds mail no event announced: written past the
    # server, as it may be again; news, and nothing is covered on this connection again.
    notified.begin_set()
    notified.line(b"* STATUS Sent (UIDNEXT 6 UIDVALIDITY 7)\r\n")
    assert notified.end_set(30.0, announced=True) is True
    assert notified.covered == {} and notified.trusted is False
    for at in (40.0, 50.0):
        notified.begin_set()
        notified.line(b"* STATUS Sent (UIDNEXT 6 UIDVALIDITY 7)\r\n")
        assert notified.end_set(at, announced=True) is False and notified.covered == {}
    # Events still wake the mailbox.
    assert notified.line(b"* STATUS Sent (UIDNEXT 7)\r\n") is True
