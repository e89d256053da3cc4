"""`syncd sync --repair`: fetch what `syncd verify` found missing, through the normal capture path.

Mail: the missing UIDs are read, decided and saved exactly as a sync pass would (the cursor
never moves backwards).  Calendars: the calendar's sync token is forgotten, so the next sync
lists every ETag and reads each object it does not know: the one path that captures events.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine

from syncd.config import Config
from syncd.engine.calendar_sync import CalendarSync
from syncd.engine.imap.mail_sync import MailSync, SessionOpener, open_imap
from syncd.engine.verify import SourceReport, Verifier
from syncd.errors import RemoteError
from syncd.store import verify as store


@dataclass(slots=True)
class Repaired:
    source: str
    place: str
    asked: int
    captured: int = 0
    skipped: int = 0
    quarantined: int = 0
    errors: list[str] = field(default_factory=list)


def repair(
    engine: Engine,
    config: Config,
    reports: list[SourceReport],
    *,
    opener: SessionOpener = open_imap,
) -> list[Repaired]:
    out: list[Repaired] = []
    mail = MailSync(engine, config, opener=opener)
    verifier = Verifier(engine, config, opener=opener)
    for report in reports:
        places = [p for p in report.places if p.missing]
        if not places:
            continue
        if report.kind == "mailbox":
            box = config.mailbox_named(report.source)
            done = [Repaired(report.source, p.place, len(p.missing)) for p in places]
            try:
                session = opener(box, config.capture.max_message_bytes)
                try:
                    for place, item in zip(places, done, strict=True):
                        assert place.uidvalidity is not None
                        result = mail.repair_folder(
                            session,
                            box,
                            place.place,
                            place.uidvalidity,
                            [int(u) for u in place.missing],
                            verifier.directory(),
                        )
                        item.captured, item.skipped = result.captured, result.skipped
                        item.quarantined = result.quarantined
                finally:
                    session.close()
            except RemoteError as err:
                for item in done:
                    item.errors.append(err.message)
            out += done
        else:
            with engine.begin() as conn:
                for place in places:
                    assert place.url is not None
                    store.forget_sync_token(conn, report.source, place.url)
            synced = CalendarSync(engine, config).run_once([report.source])[0]
            for place in places:
                counts = synced.calendars.get(place.place, {})
                item = Repaired(report.source, place.place, len(place.missing))
                item.captured = counts.get("created", 0) + counts.get("updated", 0)
                item.quarantined = counts.get("quarantined", 0)
                item.errors += list(synced.errors.values())
                out.append(item)
    return out
