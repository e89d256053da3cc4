"""A file of calls, visits and notes (CSV), as a phone system or another CRM exports it.  No I/O.

Header ``kind,occurred_at,owner,customer,contact_email,direction,duration_seconds,outcome,
location,subject,body,external_id`` (more columns are ignored); ``contact_email`` may hold
several addresses separated by ``;``; a row names a customer, a contact or both.  Every bad
row is reported with its line, and a file with any bad row yields nothing: half an import
would make a re-import of the fixed file guess which rows are already in.

Customers are names here; the store resolves them and reports the unknown ones by line too.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime

from syncd.domain.bounds import NAME_MAX
from syncd.domain.directory_file import (
    KEPT_PROBLEMS,
    MAX_FILE_BYTES,
    BadDirectoryFile,
    csv_rows,
)
from syncd.domain.logged import BadDraft, LoggedDraft, RawFields, draft_from, row_hash
from syncd.errors import UserError

CSV_HEADER = (
    "kind", "occurred_at", "owner", "customer", "contact_email", "direction",
    "duration_seconds", "outcome", "location", "subject", "body", "external_id",
)  # fmt: skip


class BadRecordsFile(BadDirectoryFile):
    """The file cannot be imported; ``problems`` lists every bad row (``line N: ...``)."""


@dataclass(frozen=True, slots=True)
class FileRow:
    """One row, with what is wrong with it but its customer (a name the store looks up)."""

    line: int
    raw: RawFields
    customer: str | None
    row_hash: str
    problems: tuple[str, ...] = ()
    checked: LoggedDraft | None = None  # the draft, when the row has no problem

    def draft(self, customer_ids: tuple[int, ...]) -> LoggedDraft:
        if self.checked is not None:
            return replace(self.checked, customer_ids=tuple(dict.fromkeys(customer_ids)))
        return draft_from(self.raw, customer_ids=customer_ids, origin="import")


@dataclass(frozen=True, slots=True)
class RecordsFile:
    """The rows of a file and the problems that are no row's (an unreadable line)."""

    where: str
    rows: list[FileRow]
    problems: list[str]

    def fail(self, found: dict[int, list[str]]) -> None:
        """BadRecordsFile listing every bad row, by line: the rows' own problems, those the
        store found (``found``: line -> problems) and the unreadable lines."""
        by_line: dict[int, list[str]] = {}
        for row in self.rows:
            if row.problems:
                by_line.setdefault(row.line, []).extend(row.problems)
        for line, problems in found.items():
            by_line.setdefault(line, []).extend(problems)
        listed = [f"line {line}: " + "; ".join(by_line[line]) for line in sorted(by_line)]
        listed += self.problems
        if listed:
            raise BadRecordsFile(self.where, listed[:KEPT_PROBLEMS], len(listed))


def utf8_text(data: bytes, where: str) -> str:
    """A file's bytes as text (a byte-order mark dropped); UserError if it is not UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{where} is not UTF-8 text", hint="save the file as UTF-8 CSV") from None


def parse_time(text: str) -> datetime:
    """An ISO 8601 date or time, UTC unless it says otherwise; ValueError if not one."""
    text = text.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise ValueError(f"occurred_at {text[:60]!r} is not an ISO 8601 time") from None
        parsed = datetime(day.year, day.month, day.day)
    try:
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"occurred_at {text[:60]!r} is out of range") from None


def parse_records_file(text: str, where: str = "the records file") -> RecordsFile:
    """The rows ``text`` lists, each with its problems (the caller adds the database's and
    calls ``fail``); UserError at once for a file that is no such file at all."""
    if len(text) > MAX_FILE_BYTES:
        raise BadRecordsFile(where, [f"larger than {MAX_FILE_BYTES // 2**20} MB"])
    text = text.removeprefix("\ufeff")
    head = next(csv.reader(io.StringIO(text.partition("\n")[0], newline="")), [])
    header = tuple(h.strip().lower() for h in head)
    if header[: len(CSV_HEADER)] != CSV_HEADER:
        raise UserError(
            f"{where}: the header is {','.join(header)[:300] or '(empty)'}",
            hint=f"the first line must be: {','.join(CSV_HEADER)}",
        )
    problems: list[str] = []
    out: list[FileRow] = []
    seen: dict[str, tuple[int, str]] = {}  # external id -> (line, row hash)
    lines = csv_rows(text, problems)
    next(lines, None)  # the header, checked above
    for line, fields in lines:
        fields = [*fields, *[""] * len(CSV_HEADER)][: len(CSV_HEADER)]
        values = dict(zip(CSV_HEADER, fields, strict=True))
        found: list[str] = []
        try:
            when = parse_time(values["occurred_at"])
        except ValueError as err:
            found.append(str(err))
            when = datetime(1970, 1, 1, tzinfo=UTC)
        customer = " ".join(values["customer"].split()) or None
        if customer is not None and len(customer) > NAME_MAX:
            found.append(f"customer is longer than {NAME_MAX} characters")
            customer = None
        raw = RawFields(
            kind=values["kind"],
            owner=values["owner"],
            subject=values["subject"],
            occurred_at=when,
            contacts=[a for a in values["contact_email"].split(";") if a.strip()],
            direction=values["direction"],
            body=values["body"],
            duration=values["duration_seconds"],
            outcome=values["outcome"],
            location=values["location"],
            external_id=values["external_id"],
            has_customer=bool(values["customer"].strip()),
            problems=found,
        )
        digest = row_hash(fields)
        checked: LoggedDraft | None = None
        try:
            checked = draft_from(raw, origin="import")  # every check but the customer's
        except BadDraft as err:
            found = err.problems
        external = values["external_id"].strip()
        if external and not found:
            earlier = seen.get(external)
            if earlier is not None and earlier[1] != digest:
                found = [f"external_id {external[:100]!r} is also on line {earlier[0]} "
                         "with other values"]  # fmt: skip
            seen.setdefault(external, (line, digest))
        out.append(FileRow(line, raw, customer, digest, tuple(found), None if found else checked))
    return RecordsFile(where, out, problems)
