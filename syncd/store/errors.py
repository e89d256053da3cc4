"""What a person asked for that the store cannot do, as data: which kind of thing was not
found, which address is on a free-mail domain.  The CLI words the hint (naming the command
that helps, syncd/cli/present/hints.py); the store knows nothing of commands."""

from __future__ import annotations

from syncd.errors import UserError


class NotFound(UserError):
    """No ``what`` (record, task, customer) is known by ``key``."""

    def __init__(self, what: str, key: int | str) -> None:
        super().__init__(f"no {what} {key!r}" if isinstance(key, str) else f"no {what} {key}")
        self.what = what
        self.key = key


class FreeMailDomain(UserError):
    """A customer cannot own a free-mail domain; the person can still become a contact."""

    def __init__(self, address: str, domain: str) -> None:
        super().__init__(f"{domain} is a free-mail domain: it cannot belong to a customer")
        self.address = address
        self.domain = domain


class CapturedRecord(UserError):
    """An email or meeting: it belongs to its mailbox or calendar, not to a person's edit."""

    def __init__(self, record_id: int, kind: str) -> None:
        where = "mailbox" if kind == "email" else "calendar"
        super().__init__(f"record {record_id} is a captured {kind}: it belongs to its {where}")
        self.record_id = record_id
        self.kind = kind


class KeyTaken(UserError):
    """Another logged record has this external id."""

    def __init__(self, external_id: str, record_id: int) -> None:
        super().__init__(f"record {record_id} already has the external id {external_id!r}")
        self.external_id = external_id
        self.record_id = record_id
