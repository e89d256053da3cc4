"""`syncd sync --repair`: fetch what `syncd verify` found missing, through the normal capture
path, each source in its own way (``Source.repair``, engine/sources.py).

Mail: the missing UIDs are read, decided and saved exactly as a sync pass would (the cursor
never moves backwards).  Calendars: the calendar's sync token is forgotten, so the next sync
lists every ETag and reads each object it does not know: the one path that captures events.
"""

from __future__ import annotations

from collections.abc import Sequence

from syncd.domain.matching import Directory
from syncd.engine.sources import Repaired, Source
from syncd.engine.verify import SourceReport


def repair(
    sources: Sequence[Source], reports: list[SourceReport], directory: Directory
) -> list[Repaired]:
    by_key: dict[tuple[str, str], Source] = {(s.kind, s.name): s for s in sources}
    out: list[Repaired] = []
    for report in reports:
        if any(place.missing for place in report.places):
            out += by_key[(report.kind, report.source)].repair(report, directory)
    return out
