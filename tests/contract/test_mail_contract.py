"""The MailSession contract, on the in-memory fake and on Dovecot alike.

Every assertion here is something the engine relies on; that both backends pass them is
what makes the engine tests on the fake (test_engine_edges.py) worth their speed.
"""

from __future__ import annotations

from typing import Any

import pytest

from syncd.domain.headers import parse_message_ids, split_header_section
from syncd.errors import RemoteConfigError, TransientError
from tests.contract.conftest import MailBackend
from tests.mail import make_message


def _msg(n: int, **kwargs: Any) -> bytes:
    return make_message(message_id=f"<m{n}@acme.com>", subject=f"Message {n}", **kwargs)


def _ids(raw_by_uid: dict[int, bytes]) -> dict[int, str]:
    return {
        uid: parse_message_ids((split_header_section(raw).get("message-id") or [""])[0])[0]
        for uid, raw in raw_by_uid.items()
    }


class TestMailContract:
    def test_folders_and_defaults(self, mail: MailBackend) -> None:
        mail.make_folder("Projects")
        session = mail.open()
        try:
            folders = {f.name: f.flags for f in session.folders()}
            assert {"INBOX", "Sent", "Projects"} <= set(folders)
            assert "\\Sent" in folders["Sent"] and "\\Sent" not in folders["Projects"]
            assert session.default_folders() == ["INBOX", "Sent"]
            assert "IMAP4REV1" in session.capabilities()
        finally:
            session.close()

    def test_examine_counts_and_cursors(self, mail: MailBackend) -> None:
        session = mail.open()
        empty = session.examine("INBOX")
        session.close()
        assert empty.uidvalidity > 0 and empty.exists == 0 and empty.uidnext == 1
        for n in range(3):
            mail.deliver(_msg(n))
        session = mail.open()
        try:
            status = session.examine("INBOX")
            assert (status.exists, status.uidnext) == (3, 4)
            assert status.uidvalidity == empty.uidvalidity
            assert status.highestmodseq is not None and empty.highestmodseq is not None
            assert status.highestmodseq > empty.highestmodseq
            assert session.uids_from(1) == [1, 2, 3]
        finally:
            session.close()

    def test_uids_ascend_with_gaps_after_expunge(self, mail: MailBackend) -> None:
        for n in range(6):
            mail.deliver(_msg(n))
        mail.expunge("INBOX", "<m1@acme.com>")
        mail.expunge("INBOX", "<m5@acme.com>")  # the last: UIDNEXT does not go back
        session = mail.open()
        try:
            status = session.examine("INBOX")
            assert (status.exists, status.uidnext) == (4, 7)
            assert session.uids_from(1) == [1, 3, 4, 5]
            assert session.uids_from(2, 4) == [3, 4]
            assert session.uids_from(6) == []  # "6:*" matches the highest UID on a server
            assert session.uids_from(7, 100) == []
            # An expunged UID is left out of a fetch, the rest come in the order asked.
            fetched = session.fetch([1, 2, 3])
            assert [m.uid for m in fetched] == [1, 3]
            assert _ids({m.uid: m.raw for m in fetched}) == {1: "m0@acme.com", 3: "m2@acme.com"}
        finally:
            session.close()

    def test_fetch_header_and_truncated_body(self, mail: MailBackend) -> None:
        mail.deliver(_msg(1, body="short body\r\n"))
        mail.deliver(_msg(2, body="x" * 100 + "\r\n" + "long line\r\n" * 10_000))
        mail.deliver(_msg(3, date=None))
        session = mail.open(max_bytes=5_000)
        try:
            session.examine("INBOX")
            small, big, undated = session.fetch([1, 2, 3])
        finally:
            session.close()
        assert small.raw.endswith(b"\r\n\r\nshort body\r\n") and not small.headers_only
        assert small.size == len(_msg(1, body="short body\r\n"))
        assert small.internal_date is None  # a Date header is there: INTERNALDATE not asked
        # Over max_bytes: the header section only, and the size says how big it was.
        assert big.headers_only and big.size > 100_000
        assert big.raw.endswith(b"\r\n\r\n") and b"long line" not in big.raw
        assert b"Subject: Message 2" in big.raw
        assert undated.internal_date is not None and undated.internal_date.tzinfo is not None

    def test_body_is_cut_at_the_prefix(self, mail: MailBackend) -> None:
        from syncd.connectors.imap import PREFIX_BYTES

        raw = _msg(1, body="y" * (PREFIX_BYTES * 2))
        mail.deliver(raw)
        session = mail.open()
        try:
            session.examine("INBOX")
            (message,) = session.fetch([1])
        finally:
            session.close()
        assert message.size == len(raw) and not message.headers_only
        assert message.raw == raw[:PREFIX_BYTES]

    def test_message_ids_without_bodies(self, mail: MailBackend) -> None:
        for n in range(3):
            mail.deliver(_msg(n))
        session = mail.open()
        try:
            session.examine("INBOX")
            found = session.fetch_message_ids([1, 2, 3, 9])
        finally:
            session.close()
        assert _ids(found) == {1: "m0@acme.com", 2: "m1@acme.com", 3: "m2@acme.com"}
        assert all(b"Subject" not in raw for raw in found.values())

    def test_rebuilt_folder_renumbers_under_a_new_uidvalidity(self, mail: MailBackend) -> None:
        for n in range(4):
            mail.deliver(_msg(n))
        mail.expunge("INBOX", "<m1@acme.com>")
        session = mail.open()
        before = session.examine("INBOX")
        session.close()
        mail.reset_uidvalidity("INBOX")
        session = mail.open()
        try:
            after = session.examine("INBOX")
            assert after.uidvalidity != before.uidvalidity
            assert (after.exists, after.uidnext) == (3, 4)
            uids = session.uids_from(1)
            assert uids == [1, 2, 3]  # the gap is gone: numbered again from 1
            assert set(_ids(session.fetch_message_ids(uids)).values()) == {
                "m0@acme.com",
                "m2@acme.com",
                "m3@acme.com",
            }
        finally:
            session.close()

    def test_a_missing_folder_is_a_config_error(self, mail: MailBackend) -> None:
        mail.make_folder("Old")
        mail.remove_folder("Old")
        session = mail.open()
        try:
            with pytest.raises(RemoteConfigError) as err:
                session.examine("Old")
            assert err.value.hint and "syncd check" in err.value.hint
            assert "Old" not in [f.name for f in session.folders()]
            assert session.examine("INBOX").exists == 0  # the session is still usable
        finally:
            session.close()

    def test_a_dropped_connection_is_transient_and_stays_dropped(self, mail: MailBackend) -> None:
        mail.deliver(_msg(1))
        session = mail.open()
        try:
            session.examine("INBOX")
            mail.interrupt_next_fetch()
            with pytest.raises(TransientError):
                session.fetch([1])
            with pytest.raises(TransientError):
                session.examine("INBOX")
        finally:
            session.close()
        session = mail.open()  # a new session reads it again
        try:
            session.examine("INBOX")
            assert [m.uid for m in session.fetch([1])] == [1]
        finally:
            session.close()
