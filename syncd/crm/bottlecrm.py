"""BottleCRM: syncd's records and tasks as its interactions and tasks, field by field.

docs/crm.md has the table.  Decisions that follow from what BottleCRM's API allows:

- An interaction hangs on exactly one record, fixed at creation: the first participant that
  is a contact there, else the first linked customer's account.  When that choice changes
  (a link added or removed), the old interaction is deleted and a new one made.
- A visit is a ``meeting`` (BottleCRM has no visit kind) whose body starts with its
  location.  A note has no interaction kind there (each kind is a conversation: call,
  meeting, email, sms...), so it is a comment on the same contact or account, as a rep
  writes one in the CRM: ``Note: subject``, when, the text and the marker (a comment has no
  date or subject of its own).  Its crm_type says where it hangs (``contact-comment`` or
  ``account-comment``): comments are edited and deleted under their record's path.
- BottleCRM refuses an interaction more than five minutes in the future: a meeting planned
  later is pushed when it starts (``NotYet``).
- A dismissed task is ``Completed`` there (it is closed, not lost); a task syncd no longer
  has (erased by ``forget``) is deleted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from syncd.config import CrmConfig
from syncd.connectors.bottlecrm import BottleCrmApi, comments_in
from syncd.connectors.crm_http import Answer, JsonHttp
from syncd.crm.base import DirectoryEntry, NotYet, Pushed, Refused, Target
from syncd.domain.addresses import domain_of
from syncd.errors import RemoteError, describe
from syncd.secret_sources import read_from

KINDS = {"email": "email", "meeting": "meeting", "call": "call", "visit": "meeting"}
PRIORITY = {"low": "Low", "normal": "Medium", "high": "High"}
BODY_MAX = 10_000
SUBJECT_MAX = 200
FUTURE_SLACK = 240  # seconds: BottleCRM allows five minutes
COMMENT_MAX = 10_000  # BottleCRM's COMMENT_MAX_LENGTH
COMMENT_TYPES = {"contact": "contact-comment", "account": "account-comment"}
COMMENT_HOMES = {"contact-comment": "contacts", "account-comment": "accounts"}


def _refuse_unless_ok(answer: Answer) -> Answer:
    if answer.ok:
        return answer
    raise Refused(answer.status, answer.said())


def marker_line(marker: str) -> str:
    return f"[{marker}]"


def interaction_fields(record: dict[str, Any], marker: str) -> dict[str, Any]:
    """The interaction's fields for a record (its record link aside).  Pure."""
    kind = KINDS.get(record["kind"])
    if kind is None:
        raise Refused(0, f"BottleCRM has no interaction kind for a {record['kind']}")
    body_parts = []
    if record["kind"] == "visit" and record.get("location"):
        body_parts.append(f"Location: {record['location']}")
    text = record.get("body") or record.get("snippet") or ""
    if text:
        body_parts.append(text)
    tail = "\n\n" + marker_line(marker)
    body = "\n\n".join(body_parts)[: BODY_MAX - len(tail)] + tail
    duration = record.get("duration_seconds")
    if record["kind"] == "meeting" and record.get("starts_at") and record.get("ends_at"):
        span = _time(record["ends_at"]) - _time(record["starts_at"])
        duration = max(0, int(span.total_seconds()))
    subject = record.get("subject") or ""
    if record["kind"] == "meeting" and record.get("status") == "cancelled":
        subject = "Cancelled: " + subject
    fields: dict[str, Any] = {
        "kind": kind,
        "direction": "inbound" if record.get("direction") == "inbound" else "outbound",
        "occurred_at": record["occurred_at"],
        "subject": subject[:SUBJECT_MAX],
        "body": body,
        "duration_seconds": duration,
    }
    if kind == "call":
        fields["outcome"] = record.get("outcome") or ""
    return fields


def comment_text(record: dict[str, Any], marker: str) -> str:
    """A note as a comment: what it is about, when, its text, the marker.  Pure."""
    when = _time(record["occurred_at"]).strftime("%Y-%m-%d %H:%M UTC")
    head = f"Note: {record.get('subject') or ''}".rstrip()
    owner = f" by {record['owner']}" if record.get("owner") else ""
    text = record.get("body") or record.get("snippet") or ""
    tail = "\n\n" + marker_line(marker)
    whole = f"{head[:SUBJECT_MAX]}\n{when}{owner}" + (f"\n\n{text}" if text else "")
    return whole[: COMMENT_MAX - len(tail)] + tail


def task_fields(task: dict[str, Any], marker: str, account: str | None) -> dict[str, Any]:
    """The task's fields there.  Pure."""
    due = task["due_at"]
    status = "Completed" if task["status"] in ("done", "dismissed") else "New"
    description = f"{task.get('type') or 'todo'} for {task['owner']}\n\n{marker_line(marker)}"
    fields: dict[str, Any] = {
        "title": (task["title"] or "")[:200],
        "status": status,
        "priority": PRIORITY.get(task.get("priority") or "normal", "Medium"),
        "due_date": (due if isinstance(due, datetime) else _time(due)).date().isoformat(),
        "description": description,
    }
    if account:
        fields["account"] = account
    return fields


def _time(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _home(target: Target) -> tuple[str, str] | None:
    if target.contact:
        return ("contact", target.contact)
    if target.account:
        return ("account", target.account)
    return None


class BottleCrm:
    """The ``Crm`` of crm/base.py for BottleCRM."""

    def __init__(self, config: CrmConfig, api: BottleCrmApi) -> None:
        self.name = config.name
        self.config = config
        self.api = api

    @classmethod
    def open(cls, config: CrmConfig) -> BottleCrm:
        token = read_from(
            what=f"crm {config.name}",
            file=config.token_file,
            env=config.token_env,
            command=config.token_command,
            key="token",
        ).strip()
        http = JsonHttp(
            config.url,
            token,
            timeout=config.timeout,
            ca_file=config.ca_file,
            what=f"crm {config.name}",
        )
        return cls(config, BottleCrmApi(http))

    def close(self) -> None:
        self.api.close()

    def check(self) -> list[str]:
        problems: list[str] = []
        try:
            # The interactions API came with BottleCRM 1.35: older ones answer 404 here.
            if not self.api.http.once("OPTIONS", "/api/interactions/").ok:
                problems.append(
                    "the CRM has no /api/interactions/ (fix: upgrade BottleCRM to 1.35 or later)"
                )
            for path, what in (("/api/tasks/", "tasks"), ("/api/contacts/", "contacts")):
                if not self.api.http.get(path, {"limit": 1}).ok:
                    problems.append(
                        f"the token may not list {what} (fix: give its user sales access)"
                    )
        except RemoteError as err:
            problems.append(describe(err))
        return problems

    # --- lookups ------------------------------------------------------------------------------

    def find_contact(self, address: str) -> str | None:
        for row in self.api.contacts_by_email(address):
            if str(row.get("email") or "").lower() == address.lower():
                return str(row["id"])
        return None

    def find_account(self, name: str) -> str | None:
        for row in self.api.accounts_named(name):
            if str(row.get("name") or "").strip().lower() == name.strip().lower():
                return str(row["id"])
        return None

    def find_copy(self, crm_type: str, marker: str, target: Target, title: str = "") -> str | None:
        line = marker_line(marker)
        if crm_type == "task":
            for row in self.api.tasks_titled(title):
                if line in str(row.get("description") or ""):
                    return str(row["id"])
            return None
        home = _home(target)
        if home is None:
            return None
        if crm_type == "note":
            for row in self.api.comments_of(home[0] + "s", home[1]):
                if line in str(row.get("comment") or ""):
                    return str(row["id"])
            return None
        for row in self.api.interactions_of(*home):
            if line in str(row.get("body") or ""):
                return str(row["id"])
        return None

    # --- push ---------------------------------------------------------------------------------

    def push_record(
        self, record: dict[str, Any], target: Target, marker: str, known: Pushed | None
    ) -> Pushed:
        if record["kind"] == "note":
            return self._push_note(record, target, marker, known)
        if known is not None and known.crm_type != "interaction":
            self.delete(known.crm_type, known.crm_id)  # a note that became a call, say
            known = None
        fields = interaction_fields(record, marker)
        when = _time(record["occurred_at"])
        ahead = (when - datetime.now(UTC)).total_seconds()
        if ahead > FUTURE_SLACK:
            raise NotYet(ahead - FUTURE_SLACK + 1)
        home = _home(target)
        if home is None:
            raise Refused(0, "no contact or account in the CRM for this record's people")
        where = f"{home[0]}:{home[1]}"
        if known is not None and known.state not in (None, where):
            self.api.delete_interaction(known.crm_id)  # its record cannot change: made anew
            known = None
        if known is not None:
            answer = self.api.update_interaction(known.crm_id, fields)
            if answer.status != 404:
                _refuse_unless_ok(answer)
                return Pushed("interaction", known.crm_id, where)
        answer = _refuse_unless_ok(self.api.create_interaction({**fields, home[0]: home[1]}))
        assert isinstance(answer.body, dict)
        return Pushed("interaction", str(answer.body["id"]), where)

    def _push_note(
        self, record: dict[str, Any], target: Target, marker: str, known: Pushed | None
    ) -> Pushed:
        home = _home(target)
        if home is None:
            raise Refused(0, "no contact or account in the CRM for this record's people")
        where = f"{home[0]}:{home[1]}"
        crm_type = COMMENT_TYPES[home[0]]
        text = comment_text(record, marker)
        if known is not None and (
            known.crm_type not in (crm_type, "note") or known.state not in (None, where)
        ):
            # An interaction before (the record was another kind), or a comment on another
            # record: a comment cannot move either, so it is made anew.
            self.delete(known.crm_type, known.crm_id)
            known = None
        if known is not None:
            answer = self.api.update_comment(home[0] + "s", known.crm_id, text)
            if answer.status != 404:
                _refuse_unless_ok(answer)
                return Pushed(crm_type, known.crm_id, where)
        answer = _refuse_unless_ok(self.api.create_comment(home[0] + "s", home[1], text))
        # The answer lists the record's comments without saying which is new: the marker does.
        line = marker_line(marker)
        for row in comments_in(answer):
            if line in str(row.get("comment") or ""):
                return Pushed(crm_type, str(row["id"]), where)
        raise Refused(0, "the CRM answered the comment's creation but does not list it")

    def push_task(
        self, task: dict[str, Any], target: Target, marker: str, known: Pushed | None
    ) -> Pushed:
        fields = task_fields(task, marker, target.account)
        if known is not None:
            answer = self.api.update_task(known.crm_id, fields)
            if answer.status == 404:  # deleted there: the pull makes it dismissed here
                return known
            _refuse_unless_ok(answer)
            return Pushed("task", known.crm_id, fields["status"])
        _refuse_unless_ok(self.api.create_task(fields))
        # The answer carries no id: the new task is found by its title and marker.
        found = self.find_copy("task", marker, target, fields["title"])
        if found is None:
            raise Refused(0, "the CRM answered the task's creation but does not list it")
        return Pushed("task", found, fields["status"])

    def delete(self, crm_type: str, crm_id: str) -> None:
        if crm_type == "task":
            answer = self.api.delete_task(crm_id)
        elif crm_type in COMMENT_HOMES:
            answer = self.api.delete_comment(COMMENT_HOMES[crm_type], crm_id)
        else:
            answer = self.api.delete_interaction(crm_id)
        if answer.status != 404:
            _refuse_unless_ok(answer)

    def task_states(self, crm_ids: list[str]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for crm_id in crm_ids:
            answer = self.api.get_task(crm_id)
            if answer.status == 404:
                out[crm_id] = None
                continue
            _refuse_unless_ok(answer)
            body = answer.body if isinstance(answer.body, dict) else {}
            task = body.get("task_obj") or body
            out[crm_id] = "done" if task.get("status") == "Completed" else "open"
        return out

    # --- directory ----------------------------------------------------------------------------

    def directory(self) -> list[DirectoryEntry]:
        contacts_by_account: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {}
        for row in self.api.all_contacts():
            if row.get("is_active") is False or not row.get("email"):
                continue
            account = row.get("account")
            account_id = str(account.get("id") if isinstance(account, dict) else account or "")
            name = " ".join(part for part in (row.get("first_name"), row.get("last_name")) if part)
            contacts_by_account.setdefault(account_id, []).append(
                (str(row["id"]), name, (str(row["email"]).lower(),))
            )
        out = []
        for row in self.api.all_accounts():
            if row.get("is_active") is False:
                continue
            domains = sorted(
                {
                    d
                    for d in (
                        _website_domain(row.get("website")),
                        domain_of(str(row.get("email") or "")) if row.get("email") else None,
                    )
                    if d
                }
            )
            out.append(
                DirectoryEntry(
                    str(row["id"]),
                    str(row["name"]),
                    tuple(domains),
                    tuple(contacts_by_account.get(str(row["id"]), ())),
                )
            )
        return out


def _website_domain(website: Any) -> str | None:
    if not website:
        return None
    text = str(website).strip().lower()
    for prefix in ("https://", "http://"):
        text = text.removeprefix(prefix)
    host = text.split("/", 1)[0].split(":", 1)[0].removeprefix("www.")
    return host or None
