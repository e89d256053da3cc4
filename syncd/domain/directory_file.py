"""The customer directory file (CSV) as the CRM exports it, read into what it asks for.  No I/O.

Header ``customer,domains,contact_name,contact_email`` (more columns are ignored); ``domains``
separated by ``;``; a row may name only a customer.  A customer is its name, compared
case-insensitively; its domains are every domain its rows give.  A contact is the set of rows
with the same customer and the same (non-empty) name, as people keep one person with several
addresses in a CRM; a row without a name is a contact of its own.

Every bad row is reported, with its line, and a file with any bad row yields nothing: a half
applied directory would archive customers the broken rows meant to keep.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple, TextIO

from syncd.domain.addresses import normalize_address, normalize_domain, registrable_domain
from syncd.domain.bounds import ADDRESS_MAX, NAME_MAX
from syncd.errors import UserError

CSV_HEADER = ("customer", "domains", "contact_name", "contact_email")
MAX_FILE_BYTES = 64 * 1024 * 1024  # a CRM export of a few hundred thousand contacts fits
DOMAIN_MAX = 255  # customer_domains.domain
SHOWN_PROBLEMS = 200  # a file of garbage is not echoed whole
KEPT_PROBLEMS = 1000
# Rows of one customer hashed in one call: few calls, and memory that stays small for a
# customer of a million rows.
_RUN_FLUSH = 1000
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


class BadDirectoryFile(UserError):
    """The file cannot be applied; ``problems`` lists every bad row (``line N: ...``)."""

    def __init__(self, where: str, problems: list[str], total: int | None = None) -> None:
        total = len(problems) if total is None else total
        shown = problems[:SHOWN_PROBLEMS]
        more = total - len(shown)
        super().__init__(
            f"{where}: nothing imported, {total} bad row(s):\n  "
            + "\n  ".join(shown)
            + (f"\n  ... and {more} more" if more else ""),
            hint="fix these rows and import again",
        )
        self.problems = problems


class BadValue(ValueError):
    """A value the file cannot hold.  ``str()`` quotes it, for a person who typed it;
    ``unquoted`` says the same without it, for an error about a file: a [directory] file
    pointed by mistake at a secret file must not have its content printed into the log,
    ``source_states`` and `syncd status` (nor a contact's address kept there after forget)."""

    def __init__(self, quoted: str, unquoted: str) -> None:
        super().__init__(quoted)
        self.unquoted = unquoted


class _Problems(list[str]):
    """Bad rows: every one counted, the first ``KEPT_PROBLEMS`` kept (a 64 MB file of garbage
    must not become a million messages in memory)."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def append(self, problem: str) -> None:
        self.total += 1
        if len(self) < KEPT_PROBLEMS:
            super().append(problem)


# A valid data row as a plain tuple: ``FileRow``'s fields.
Row = tuple[int, str, str, tuple[str, ...], str, str | None]


class FileRow(NamedTuple):
    """One valid data row, its values cleaned (a tuple: a million of them are made)."""

    line: int
    key: str  # ``customer_key`` of the customer
    customer: str  # as the row spells it (tidied)
    domains: tuple[str, ...]  # normalised, as the row gives them
    contact_name: str
    address: str | None


@dataclass(frozen=True, slots=True)
class FileCustomer:
    name: str  # as the file spells it (its first row)
    domains: tuple[str, ...]  # normalised, sorted, unique


@dataclass(frozen=True, slots=True)
class FileContact:
    customer: str  # the customer's key (``customer_key``)
    name: str  # "" when the rows give none
    addresses: tuple[str, ...]  # normalised, in file order


@dataclass(frozen=True, slots=True)
class DirectoryFile:
    customers: dict[str, FileCustomer]  # by ``customer_key``, in file order
    contacts: tuple[FileContact, ...]  # in file order
    rows: int
    lines: tuple[FileRow, ...] = ()  # the valid rows it was made of, in file order

    @property
    def empty(self) -> bool:
        return not self.customers


@lru_cache(maxsize=65536)  # a file repeats the customer's name on every contact's row
def customer_key(name: str) -> str:
    """Customers are one when their names differ only in case (as `find_customer` has it),
    in their spacing, or in their Unicode composition: a CRM export with "Acme  Corp" or a
    decomposed "Café" names the stored "Acme Corp" and "Café", not new customers (a mirror
    would otherwise archive the stored one and start an empty twin)."""
    return _tidy(name).lower()


def _tidy(value: str) -> str:
    """``value`` in NFC, every run of whitespace (doubled, no-break) one space."""
    return " ".join(unicodedata.normalize("NFC", value).split())


def _text(value: str, what: str) -> str:
    stripped = value.strip()
    if stripped.isascii() and stripped.isprintable():
        # Most rows: nothing to normalise, and a space is the only whitespace left.
        value = " ".join(stripped.split()) if "  " in stripped else stripped
    else:
        if _CONTROL.search(stripped):  # before _tidy, which would make a line break a space
            raise ValueError(f"{what} holds control characters")
        value = _tidy(value)
    if len(value) > NAME_MAX:
        raise ValueError(f"{what} is longer than {NAME_MAX} characters")
    return value


_PLAIN_DOMAIN = re.compile(r"[a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63})*")


@lru_cache(maxsize=65536)  # a file repeats its customers' domains on every contact's row
def clean_domain(domain: str) -> str:
    """A domain a customer can own, normalised; ValueError saying why not."""
    value = normalize_domain(domain.strip().lstrip("@"))
    if (
        not value
        or len(value) > DOMAIN_MAX
        or not (
            # Lower-cased ASCII (most): the rule below in one match.
            _PLAIN_DOMAIN.fullmatch(value) is not None
            if value.isascii()
            else all(
                0 < len(label) <= 63 and all(c.isalnum() or c == "-" for c in label)
                for label in value.split(".")
            )
        )
    ):
        raise BadValue(f"{domain.strip()[:100]!r} is not a domain", "domains: one is not a domain")
    if registrable_domain(value) is None:
        why = (
            "is not a domain a customer can own (a public suffix such as co.uk is not): give "
            "the customer's own domain, e.g. acme.co.uk"
        )
        raise BadValue(f"{value!r} {why}", f"domains: one {why}")
    return value


# An address with nothing to normalise (plain ASCII, no IDNA label): most of a CRM export.
# Stripped, no longer than ADDRESS_MAX, and with no "xn--" label, an address it matches is
# one ``clean_address`` keeps as it is but for case (the row reader's test checks it).
_PLAIN_ADDRESS = re.compile(r"[!#-'*+\-./-9=?A-Z^-~]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


def clean_address(address: str) -> str:
    value = normalize_address(address)
    if value is None or len(value) > ADDRESS_MAX or _CONTROL.search(value):
        raise BadValue(
            f"{address.strip()!r} is not an email address", "contact_email is not an email address"
        )
    return value


class RowReader:
    """The valid rows of a directory file read from ``stream`` (opened with ``newline=""``),
    one at a time: a file of a million rows is never held whole.  Every data row is
    counted in ``rows``; every bad one lands in ``problems`` (with its line)."""

    def __init__(self, stream: TextIO, where: str = "the directory file") -> None:
        # newline="": a quoted field may hold a line break (then refused as a control
        # character, not silently joined); strict: an unclosed quote is an error, not a
        # field that swallows every row after it.
        self._stream = stream
        self._reader = csv.reader(stream, strict=True)
        self.where = where
        self.rows = 0
        self.problems = _Problems()
        # Keys (``customer_key`` of the customer cell as it is) whose rows are counted but
        # neither checked nor yielded: customers a mirror found unchanged by their digest.
        self.skip: frozenset[str] = frozenset()
        try:
            head = next(self._reader)
        except StopIteration:
            head = []
        except csv.Error:
            head = ["(unreadable)"]
        except UnicodeDecodeError:
            raise _not_utf8(where) from None
        header = tuple(h.strip().lower() for h in head)
        if header and header[0].startswith("\ufeff"):
            header = (header[0][1:], *header[1:])
        if header[: len(CSV_HEADER)] != CSV_HEADER:
            # Not quoted: a file that is no directory (a secret file named by mistake) would be.
            raise UserError(
                f"{where}: the first line is not the directory file's header",
                hint=f"the first line must be: {','.join(CSV_HEADER)}",
            )

    def fingerprints(self) -> dict[str, str] | None:
        """A digest of each customer's rows (by ``customer_key`` of the customer cell as it
        is), their text in file order, read in one pass; the stream is then read again from
        its first row.  None when it cannot be read twice or a row cannot be read: the rows
        then go the ordinary way, which reports them."""
        if not self._stream.seekable():
            return None
        digests: dict[str, Any] = {}
        last: str | None = None
        digest: Any = None
        # The current customer's run of rows, hashed as one text when it ends or grows to
        # ``_RUN_FLUSH`` rows: the same digest as a row at a time, for fewer calls.
        run: list[str] = []
        try:
            for fields in self._reader:
                cell = fields[0] if fields else ""
                if cell != last:
                    if not cell.strip() and not any(f.strip() for f in fields):
                        continue  # a blank line, which the rows skip too
                    if run:
                        digest.update("".join(run).encode())
                        run.clear()
                    last = cell
                    key = customer_key(cell)
                    digest = digests.get(key)
                    if digest is None:
                        digest = digests[key] = hashlib.blake2b(digest_size=16)
                run.append("\x1f".join(fields) + "\n")
                if len(run) >= _RUN_FLUSH:
                    # Hashing is streamed, so a flush keeps the digest: memory then stays
                    # bounded however many rows one customer has.
                    digest.update("".join(run).encode())
                    run.clear()
            if run:
                digest.update("".join(run).encode())
        except (csv.Error, UnicodeDecodeError):
            return None
        finally:
            self.rewind()
        return {key: digest.hexdigest() for key, digest in digests.items()}

    def rewind(self) -> None:
        """Read again from the first row (the stream must be seekable)."""
        self._stream.seek(0)
        self._reader = csv.reader(self._stream, strict=True)
        next(self._reader, None)  # the header, checked already
        self.rows = 0
        self.problems = _Problems()

    def __iter__(self) -> Iterator[FileRow]:
        return map(FileRow._make, self.tuples())

    def tuples(self) -> Iterator[Row]:
        """The rows as ``__iter__`` gives them, as plain tuples (a million are made)."""
        reader, problems, skip = self._reader, self.problems, self.skip
        plain_address = _PLAIN_ADDRESS.fullmatch
        rows = 0  # counted here, kept in ``self.rows`` as the generator ends
        skip_cell: str | None = None
        skipping = False
        # The customer and domains cells of the last plain row and what they gave: an
        # export repeats them on each of a customer's rows, so these are checked once.
        same_customer: str | None = None
        same_given = ""
        name, key = "", ""
        found: tuple[str, ...] = ()
        try:
            while True:
                line = reader.line_num + 1  # a quoted field may take several lines: the first
                try:
                    fields = next(reader)
                except StopIteration:
                    return
                except UnicodeDecodeError:
                    raise _not_utf8(self.where) from None
                except csv.Error as err:
                    problems.append(f"line {line}: {err}")
                    continue
                if len(fields) != 4:
                    if not any(f.strip() for f in fields):
                        continue  # a blank line
                    fields = [*fields, "", "", "", ""][:4]
                customer, given, contact, address = fields
                if skip:
                    if customer != skip_cell:
                        skip_cell, skipping = customer, customer_key(customer) in skip
                    if skipping:
                        rows += 1
                        continue
                contact_name, plain = contact.strip(), address.strip()
                # Most rows of an export: a printable ASCII name with single spaces and a
                # plain address (``_PLAIN_ADDRESS``; inlined: this runs a million times).
                simple = (
                    contact_name.isascii()
                    and contact_name.isprintable()
                    and "  " not in contact_name
                    and len(contact_name) <= NAME_MAX
                    and (
                        not plain
                        or (
                            len(plain) <= ADDRESS_MAX
                            and plain_address(plain) is not None
                            and ("--" not in plain or "xn--" not in plain.lower())
                        )
                    )
                )
                if simple and customer == same_customer and given == same_given:
                    rows += 1
                    yield (line, key, name, found, contact_name, plain.lower() or None)
                    continue
                stripped = customer.strip()
                if (
                    # The same values the general path below gives them.
                    simple
                    and stripped
                    and stripped.isascii()
                    and stripped.isprintable()
                    and "  " not in stripped
                    and len(stripped) <= NAME_MAX
                    and ";" not in given
                ):
                    rows += 1
                    try:
                        found = (clean_domain(given),) if given.strip() else ()
                    except ValueError as err:
                        problems.append(f"line {line}: {_unquoted(err)}")
                        continue
                    same_customer, same_given = customer, given
                    name, key = stripped, customer_key(stripped)
                    yield (line, key, name, found, contact_name, plain.lower() or None)
                    continue
                if not (stripped or any(f.strip() for f in fields)):
                    continue  # a blank line
                rows += 1
                try:
                    tidied = _text(customer, "customer")
                    if not tidied:
                        raise ValueError("customer is empty")
                    domains = tuple(clean_domain(d) for d in given.split(";") if d.strip())
                    contact_name = _text(contact, "contact_name")
                    found_address = clean_address(address) if plain else None
                except ValueError as err:
                    problems.append(f"line {line}: {_unquoted(err)}")
                    continue
                yield (line, customer_key(tidied), tidied, domains, contact_name, found_address)
        finally:
            self.rows += rows

    def refuse(self, more: list[str] | None = None, more_total: int = 0) -> None:
        """BadDirectoryFile when any row was bad: those read here and ``more`` (found by
        the caller, ``more_total`` of them), reported in line order."""
        total = self.problems.total + more_total
        if not total:
            return
        merged = sorted([*self.problems, *(more or [])], key=_line_of)[:KEPT_PROBLEMS]
        raise BadDirectoryFile(self.where, merged, total)


def state_digest(name: str, domains: str, people: list[str]) -> str:
    """A digest of what the directory holds for one customer, the same from the file's rows
    as from the store: its name, its domains (sorted, joined by ``\x1f``: no value holds a
    control character), and its active contacts, each as its name, ``\x1d`` and its sorted
    addresses joined so.  ``\x1d`` sorts before any character of a name, so sorting these
    strings sorts the contacts by name, then addresses; the text is hashed whole."""
    people.sort()
    text = f"{name}\x1e{domains}\x1e" + "\x1e".join(people) if people else f"{name}\x1e{domains}"
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _unquoted(err: ValueError) -> str:
    """A bad value's problem without the value (``_text``'s quote nothing already)."""
    return err.unquoted if isinstance(err, BadValue) else str(err)


def csv_rows(text: str, problems: list[str]) -> Iterator[tuple[int, list[str]]]:
    """(line, fields) of every data row of a small CSV text held whole (the logged-records
    file); a row the CSV reader refuses is a problem."""
    # newline="": a quoted field may hold a line break (then refused as a control
    # character, not silently joined); strict: an unclosed quote is an error, not a field
    # that swallows every row after it.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    while True:
        start = reader.line_num + 1  # a quoted field may take several lines: name the first
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            problems.append(f"line {start}: {err}")
            continue
        if any(f.strip() for f in fields):
            yield start, fields


def _not_utf8(where: str) -> UserError:
    return UserError(f"{where} is not UTF-8 text", hint="save the file as UTF-8 CSV")


def text_stream(data: bytes) -> TextIO:
    """``data`` read as UTF-8 text (a byte-order mark dropped), decoded as it is read: the
    content is never held twice."""
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline="")


def _line_of(problem: str) -> int:
    head = problem.split(":", 1)[0].removeprefix("line ")
    return int(head) if head.isdigit() else 0


def parse_directory(text: str, where: str = "the directory file") -> DirectoryFile:
    """The customers and contacts ``text`` lists; BadDirectoryFile with every bad row.
    (In memory: the store plans a large file from ``RowReader`` in bounded memory.)"""
    if len(text) > MAX_FILE_BYTES:
        raise BadDirectoryFile(where, [f"larger than {MAX_FILE_BYTES // 2**20} MB"])
    reader = RowReader(io.StringIO(text.removeprefix("\ufeff"), newline=""), where)
    customers: dict[str, FileCustomer] = {}
    domains: dict[str, set[str]] = {}
    groups: dict[tuple[str, str, str], list[str]] = {}  # (customer, name, address|"") -> addrs
    seen: dict[str, tuple[int, tuple[str, str, str]]] = {}  # address -> (line, group)
    lines: list[FileRow] = []
    duplicates: list[str] = []
    for row in reader:
        key, address = row.key, row.address
        if address is not None:
            group = (key, row.contact_name, "" if row.contact_name else address)
            earlier = seen.get(address)
            if earlier is not None and earlier[1] != group:
                duplicates.append(
                    f"line {row.line}: its contact_email is also on line {earlier[0]} with another "
                    "customer or contact name"
                )
                continue
        lines.append(row)
        customers.setdefault(key, FileCustomer(row.customer, ()))
        domains.setdefault(key, set()).update(row.domains)
        if address is not None and address not in seen:
            seen[address] = (row.line, group)
            groups.setdefault(group, []).append(address)
    reader.refuse(duplicates[:KEPT_PROBLEMS], len(duplicates))
    return DirectoryFile(
        customers={
            key: FileCustomer(c.name, tuple(sorted(domains[key]))) for key, c in customers.items()
        },
        contacts=tuple(
            FileContact(customer, name, tuple(addresses))
            for (customer, name, _), addresses in groups.items()
        ),
        rows=reader.rows,
        lines=tuple(lines),
    )
