"""Tables of syncd.  SQLAlchemy Core: capture inserts thousands of rows a second in bulk.

Idempotence lives in the unique constraints: ``records.key`` (one record per message
or meeting across every mailbox), ``provenance`` (mailbox, folder, UIDVALIDITY, UID),
``participants`` (record, address, role).  Inserts use ON CONFLICT DO NOTHING, so a
batch replayed after a crash, or by a second daemon, changes nothing.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from syncd.schema.types import UtcDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

customers = Table(
    "customers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(300), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    # Set when a mirrored directory no longer lists the customer: its history stays, it
    # matches no new mail and is never suggested.  Cleared when a later file lists it again.
    Column("archived_at", UtcDateTime, nullable=True),
)

customer_domains = Table(
    "customer_domains",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("customer_id", Integer, ForeignKey("customers.id", ondelete="CASCADE"), nullable=False),
    # Not unique: two customers claiming one domain is a fact to report, not to hide.
    Column("domain", String(255), nullable=False, index=True),
    UniqueConstraint("customer_id", "domain"),
)

contacts = Table(
    "contacts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("customer_id", Integer, ForeignKey("customers.id", ondelete="SET NULL"), index=True),
    Column("name", String(300), nullable=False, default=""),
    Column("created_at", UtcDateTime, nullable=False),
    Column("archived_at", UtcDateTime, nullable=True),  # as customers.archived_at
)

contact_addresses = Table(
    "contact_addresses",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "contact_id",
        Integer,
        ForeignKey("contacts.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("address", String(320), nullable=False, unique=True),
)

records = Table(
    "records",
    metadata,
    Column("id", Integer, primary_key=True),
    # "email:<Message-ID>" (later "meeting:<UID>|<RECURRENCE-ID>"): the identity across mailboxes.
    Column("key", String(1100), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("direction", String(16), nullable=False),
    Column("subject", Text, nullable=False, default=""),
    Column("snippet", Text),
    Column("body", Text),  # only with [capture] store = "full"
    Column("occurred_at", UtcDateTime, nullable=False, index=True),
    Column("message_id", String(1000), index=True),
    Column("thread_key", String(1000), index=True),
    Column("created_at", UtcDateTime, nullable=False),
    # Meetings only: one record per occurrence, identified by (ical_uid, recurrence_id).
    Column("status", String(16)),  # scheduled | cancelled | declined ("held" is derived)
    Column("starts_at", UtcDateTime),
    Column("ends_at", UtcDateTime, index=True),  # the outbox's sweep for meetings now held
    Column("ical_uid", String(1000), index=True),
    Column("recurrence_id", String(32)),
    Column("organizer", String(320)),
    Column("sequence", Integer),
    Column("fingerprint", String(64)),
    # Logged records (call, visit, note), written by people or imported; null on captured ones.
    Column("owner", String(320), index=True),  # the rep who logged it
    Column("origin", String(16)),  # cli | import | api | ...
    Column("external_id", String(300)),  # the id in the system it came from
    Column("duration_seconds", Integer),  # calls and visits
    Column("outcome", String(16)),  # calls: connected | no_answer | voicemail | busy | wrong_number
    Column("location", String(500)),  # visits
    Column("updated_at", UtcDateTime),
    # Each email's first reply: every thread's emails in order, from the index alone.
    Index(
        "ix_records_thread_key_occurred_at_id_direction",
        "thread_key",
        "occurred_at",
        "id",
        "direction",
    ),
)

participants = Table(
    "participants",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("record_id", Integer, ForeignKey("records.id", ondelete="CASCADE"), nullable=False),
    Column("address", String(320), nullable=False, index=True),
    Column("name", String(300), nullable=False, default=""),
    Column("role", String(16), nullable=False),
    Column("external", Integer, nullable=False, default=1),
    Column("contact_id", Integer, ForeignKey("contacts.id", ondelete="SET NULL"), index=True),
    UniqueConstraint("record_id", "address", "role"),
)

record_customers = Table(
    "record_customers",
    metadata,
    Column("record_id", Integer, ForeignKey("records.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "customer_id", Integer, ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("link", String(16), nullable=False),  # contact | domain | manual
    # A copy of records.occurred_at, kept by the database (triggers of migration 0031: set
    # on insert, moved with the record's), so that a customer's page newest first is a
    # range of the index below, not a sort of every record the customer has.  Null only
    # between an SQLite insert and its trigger, within the statement.
    Column("occurred_at", UtcDateTime, nullable=True),
    # A customer's records without a table lookup (customers list, reports, gone_quiet).
    Index("ix_record_customers_customer_id_record_id", "customer_id", "record_id"),
    # A customer's page: (occurred_at, record_id) descending is this index read backwards.
    Index(
        "ix_record_customers_customer_id_occurred_at_record_id",
        "customer_id",
        "occurred_at",
        "record_id",
    ),
)

# A record's provenance: each mailbox, folder and UID it was read from (one row per copy).
provenance = Table(
    "provenance",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "record_id",
        Integer,
        ForeignKey("records.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("mailbox", String(200), nullable=False),
    Column("folder", String(1000), nullable=False),
    Column("uidvalidity", BigInteger, nullable=False),
    Column("uid", BigInteger, nullable=False),
    UniqueConstraint("mailbox", "folder", "uidvalidity", "uid"),
    # A record's mailboxes (whose rep received it) without a table lookup.
    Index("ix_provenance_record_id_id_mailbox", "record_id", "id", "mailbox"),
)

# Where a folder's sync stands (the IMAP connector's checkpoint, not the folder's health,
# which is in source_states): UIDVALIDITY, the last UID read and the HIGHESTMODSEQ seen.
folder_cursors = Table(
    "folder_cursors",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("mailbox", String(200), nullable=False),
    Column("folder", String(1000), nullable=False),
    Column("uidvalidity", BigInteger),
    Column("last_uid", BigInteger, nullable=False, default=0),
    Column("highestmodseq", BigInteger),
    UniqueConstraint("mailbox", "folder"),
)

# How every source and each of its places last synced, whatever the kind: one row per
# (kind, source) with place "" for the account (login, discovery), and one per folder or
# calendar.  `syncd status` reads only this table and `quarantine` for health.
source_states = Table(
    "source_states",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(20), nullable=False),  # mailbox | calendar
    Column("source", String(200), nullable=False),
    Column("place", String(2000), nullable=False),  # "" | folder name | calendar URL
    Column("last_attempt_at", UtcDateTime),
    Column("last_success_at", UtcDateTime),
    Column("last_error", Text),
    Column("last_error_kind", String(32)),  # errors.RemoteError.kind
    Column("last_error_at", UtcDateTime),
    Column("captured", Integer, nullable=False, default=0),  # records made, ever
    Column("skipped", Integer, nullable=False, default=0),  # items a capture rule skipped
    UniqueConstraint("kind", "source", "place"),
)

unmatched_addresses = Table(
    "unmatched_addresses",
    metadata,
    Column("address", String(320), primary_key=True),
    Column("name", String(300), nullable=False, default=""),
    Column("count", Integer, nullable=False, default=0),
    Column("first_seen", UtcDateTime, nullable=False),
    Column("last_seen", UtcDateTime, nullable=False),
)

# Items no reader could take, of every kind: a message (item = UID, version = UIDVALIDITY)
# or a calendar object (item = href, version = ETag).  Not read again until the version
# changes; `syncd status` lists them.
quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(20), nullable=False),  # mailbox | calendar
    Column("source", String(200), nullable=False),
    Column("place", String(2000), nullable=False),  # folder name | calendar URL
    Column("item", String(2000), nullable=False),
    Column("version", String(300), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("kind", "source", "place", "item", "version"),
)

# One row per (unknown address, message, mailbox): the queue's counts, dates and mailboxes are
# derived from it, so replays and the same message in two mailboxes never count twice.
unmatched_sightings = Table(
    "unmatched_sightings",
    metadata,
    Column("address", String(320), primary_key=True),
    Column("message_key", String(1100), primary_key=True),
    Column("mailbox", String(200), primary_key=True),
    Column("occurred_at", UtcDateTime, nullable=False),
)

exclusions = Table(
    "exclusions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("entry", String(330), nullable=False, unique=True),  # address or @domain
    Column("created_at", UtcDateTime, nullable=False),
)

# A person removed a link: no later rule may put it back.
record_unlinks = Table(
    "record_unlinks",
    metadata,
    Column("record_id", Integer, ForeignKey("records.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "customer_id", Integer, ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("created_at", UtcDateTime, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", UtcDateTime, nullable=False, index=True),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", Text, nullable=False),
    Column("detail", Text, nullable=False, default=""),
)

# Where a calendar collection's sync stands (the CalDAV connector's checkpoint; health is in
# source_states): its sync token, and when the account's calendars were last discovered.
calendar_cursors = Table(
    "calendar_cursors",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("calendar", String(200), nullable=False),
    Column("url", String(2000), nullable=False),
    Column("display_name", String(300), nullable=False, default=""),
    Column("sync_token", Text),
    Column("discovered_at", UtcDateTime),
    UniqueConstraint("calendar", "url"),
)

# What we last saw of each calendar resource, for ETag comparison and deletions.
calendar_objects = Table(
    "calendar_objects",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("calendar", String(200), nullable=False),
    Column("url", String(2000), nullable=False),
    Column("href", String(2000), nullable=False),
    Column("etag", String(300), nullable=False),
    # The object's first occurrence after the capture window: when the window reaches it,
    # the object is read again though it did not change (a series' next occurrences, a
    # meeting booked months ahead).  None: nothing more to come.
    Column("next_start_at", UtcDateTime, nullable=True),
    UniqueConstraint("calendar", "url", "href"),
    Index("ix_calendar_objects_calendar_url_next_start_at", "calendar", "url", "next_start_at"),
)

# Which calendar resources a meeting record came from (one per rep's calendar).
meeting_sources = Table(
    "meeting_sources",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "record_id",
        Integer,
        ForeignKey("records.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("calendar", String(200), nullable=False),
    Column("url", String(2000), nullable=False),
    Column("href", String(2000), nullable=False),
    UniqueConstraint("record_id", "calendar", "url", "href"),
    Index("ix_meeting_sources_calendar_url_href", "calendar", "url", "href"),
)

# Running daemons: a heartbeat for `syncd status`, and the owner id of source leases.
daemons = Table(
    "daemons",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("host", String(300), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("heartbeat_at", UtcDateTime, nullable=False),
    Column("stopped_at", UtcDateTime, nullable=True),
    Column("summary", Text, nullable=False, default=""),
)

# What the daemon knows about each mailbox and calendar right now, and which daemon holds it
# (a lease, so that daemons sharing one PostgreSQL never sync the same source at once).
source_health = Table(
    "source_health",
    metadata,
    Column("kind", String(20), primary_key=True),  # mailbox | calendar
    Column("name", String(200), primary_key=True),
    Column("state", String(20), nullable=False),  # ok | syncing | backoff | attention
    Column("reason", Text, nullable=True),
    Column("retry_at", UtcDateTime, nullable=True),
    Column("failures", Integer, nullable=False, default=0),
    Column("daemon_id", String(64), nullable=True),
    Column("lease_until", UtcDateTime, nullable=True),
    # Moves each time the lease passes to a daemon that did not hold it: a sync fences its
    # writes with the epoch it began under, so a holder that lost the lease and got it
    # back (paused, then the rendezvous owner again) cannot commit a batch from before.
    Column("lease_epoch", Integer, nullable=False, default=0, server_default="0"),
    Column("updated_at", UtcDateTime, nullable=False),
)

# Follow-up tasks: made by the rules (one per rule and triggering record) or by a person.
tasks = Table(
    "tasks",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("rule", String(40), nullable=True),  # None: added by a person
    Column("record_id", Integer, ForeignKey("records.id", ondelete="SET NULL"), nullable=True),
    Column("title", Text, nullable=False),
    Column("owner", String(320), nullable=False, index=True),
    Column("customer_id", Integer, ForeignKey("customers.id", ondelete="SET NULL")),
    Column("due_at", UtcDateTime, nullable=False),
    Column("status", String(16), nullable=False),  # open | done | dismissed | snoozed
    Column("snoozed_until", UtcDateTime, nullable=True),
    Column("closed_by_record_id", Integer, ForeignKey("records.id", ondelete="SET NULL")),
    Column("closed_at", UtcDateTime, nullable=True),
    Column("closed_by", String(16), nullable=True),  # rule | person | calendar
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # Where the task lives as a VTODO in the owner's CalDAV task list, if anywhere.
    Column("vtodo_href", String(2000), nullable=True),
    Column("vtodo_etag", String(300), nullable=True),
    Column("vtodo_synced_at", UtcDateTime, nullable=True),  # when the VTODO last matched
    Column(
        "type", String(8), nullable=False, default="todo", server_default="todo"
    ),  # call | email | visit | todo
    Column(
        "priority", String(8), nullable=False, default="normal", server_default="normal"
    ),  # low | normal | high
    UniqueConstraint("rule", "record_id"),
    Index("ix_tasks_status_due_at", "status", "due_at"),
    Index("ix_tasks_customer_id_status", "customer_id", "status"),
)

# One row per installation-wide setting; ``installation_secret`` keys the HMAC fingerprints of
# forgotten addresses, so that a copy of the table alone cannot be reversed with a list of
# guessed addresses.  Made on first use, never printed.
settings = Table(
    "settings",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# Refresh tokens an OAuth2 endpoint rotated (store/refresh_tokens.py): the newest one for
# each configured one, so that a restart or another daemon does not send a spent token.
# ``origin`` is HMAC-SHA256(installation secret, the configured token); ``sealed`` the newest
# token, AES-GCM encrypted with a key made from the installation secret.
refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("origin", String(64), primary_key=True),
    Column("sealed", Text, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# Forgotten addresses, kept only as HMAC-SHA256(installation secret, match key): mail and
# meetings naming one of them never store it again (see domain/matching.py).
suppressions = Table(
    "suppressions",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("created_at", UtcDateTime, nullable=False),
)

# Which message of a folder a capture rule skipped, and by which rule: `syncd verify` accounts
# for every UID the server lists, and "skipped" must name the rule, not be a bare count.
skipped_messages = Table(
    "skipped_messages",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("mailbox", String(200), nullable=False),
    Column("folder", String(1000), nullable=False),
    Column("uidvalidity", BigInteger, nullable=False),
    Column("uid", BigInteger, nullable=False),
    Column("rule", String(40), nullable=False),  # bulk | internal | auto-submitted | ...
    UniqueConstraint("mailbox", "folder", "uidvalidity", "uid"),
)

# The last clean `syncd verify` of a folder or calendar: what the server and the store looked
# like then (``fingerprint``) and what was counted.  While both still look the same, the
# listing is skipped and these counts are reported again.
verify_states = Table(
    "verify_states",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(20), nullable=False),  # mailbox | calendar
    Column("source", String(200), nullable=False),
    Column("place", String(2000), nullable=False),  # folder name or calendar URL
    Column("fingerprint", Text, nullable=False),
    Column("counts", Text, nullable=False),  # JSON
    Column("verified_at", UtcDateTime, nullable=False),
    UniqueConstraint("kind", "source", "place"),
)

# The transactional outbox: every change to a record or task, and every forgotten contact,
# written in the transaction that makes the change (so neither can commit without the other).
# ``id`` orders the feed and the delivery (writers serialise on a lock from their first event
# to their commit, so ids become visible in order); ``data`` is the JSON object
# `records list --json` or `tasks list --json` prints for the subject after the change.
events = Table(
    "events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("type", String(40), nullable=False),  # record.created | task.updated | ...
    Column("subject", String(80), nullable=False),  # record:<id> | task:<id> | contact:<digest>
    Column("occurred_at", UtcDateTime, nullable=True),  # the record's own time (`since`)
    Column("created_at", UtcDateTime, nullable=False),
    Column("data", Text, nullable=False),
    Index("ix_events_subject_id", "subject", "id"),
    # Never reuse an id on SQLite (its rowids restart above the largest one left, and
    # retention may delete the largest): an id is a webhook-id and a feed position.
    sqlite_autoincrement=True,
)

# Webhook delivery (syncd/webhooks/): per endpoint a cursor into `events`, and one row per
# event taken from the outbox and not yet delivered.  Delivered rows are deleted.
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("name", String(100), primary_key=True),
    # The last event id taken into webhook_deliveries (moved in the same transaction).
    Column(
        "last_event_id", BigInteger().with_variant(Integer, "sqlite"), nullable=False, default=0
    ),
    Column("state", String(20), nullable=False, default="active"),  # active | disabled
    Column("reason", Text, nullable=True),  # why disabled
    Column("config_hash", String(64), nullable=True),  # a config change re-enables it
    Column("delivered", BigInteger().with_variant(Integer, "sqlite"), nullable=False, default=0),
    Column("last_success_at", UtcDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("last_error_at", UtcDateTime, nullable=True),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("endpoint", String(100), primary_key=True),
    Column("event_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("subject", String(80), nullable=False),  # per-subject order
    Column("state", String(20), nullable=False),  # pending | failed
    # 1 on the oldest pending delivery of its subject, the only one that may be sent.
    Column("ready", Integer, nullable=False, default=0),
    Column("queued_at", UtcDateTime, nullable=False),  # retry_for counts from here
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("claimed_by", String(64), nullable=True),  # the daemon sending it now
    Column("claimed_until", UtcDateTime, nullable=True),
    # Raised by every claim: the holder and this are the claim's fencing token (queue.py).
    Column("claim_epoch", Integer, nullable=False, default=0, server_default="0"),
    Index("ix_webhook_deliveries_ready", "endpoint", "state", "ready", "event_id"),
    Index("ix_webhook_deliveries_subject", "endpoint", "subject", "event_id"),
)

# CRM connectors (syncd/crm/): per [[crm]] a cursor into `events`, one delivery row per record
# or task whose CRM copy is behind (the event only says "changed": the push sends the subject as
# it is then, so a subject's changes reach the CRM in order), and the map of syncd's objects to
# the CRM's ids.
crm_endpoints = Table(
    "crm_endpoints",
    metadata,
    Column("name", String(100), primary_key=True),
    Column(
        "last_event_id", BigInteger().with_variant(Integer, "sqlite"), nullable=False, default=0
    ),
    Column("pushed", BigInteger().with_variant(Integer, "sqlite"), nullable=False, default=0),
    Column("pulled", BigInteger().with_variant(Integer, "sqlite"), nullable=False, default=0),
    Column("last_success_at", UtcDateTime, nullable=True),
    Column("last_pull_at", UtcDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("last_error_at", UtcDateTime, nullable=True),
)

crm_deliveries = Table(
    "crm_deliveries",
    metadata,
    Column("crm", String(100), primary_key=True),
    Column("subject", String(80), primary_key=True),  # record:<id> | task:<id>
    Column("state", String(20), nullable=False),  # pending | failed
    # The newest outbox event about the subject: pushed when no newer one came meanwhile.
    Column("event_id", BigInteger().with_variant(Integer, "sqlite"), nullable=False),
    Column("queued_at", UtcDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("claimed_by", String(64), nullable=True),
    Column("claimed_until", UtcDateTime, nullable=True),  # the database's clock
    # The fencing token: every claim takes the next one, and only its holder may finish.
    Column("epoch", Integer, nullable=False, default=0),
    Index("ix_crm_deliveries_due", "crm", "state", "next_attempt_at"),
)

crm_objects = Table(
    "crm_objects",
    metadata,
    Column("crm", String(100), primary_key=True),
    # record:<id> | task:<id> (what syncd created there) | customer:<id> | contact:<id> (pulled)
    Column("subject", String(80), primary_key=True),
    Column("crm_type", String(40), nullable=False),  # interaction | task | account | contact
    Column("crm_id", String(100), nullable=False),
    Column("remote_state", String(40), nullable=True),  # a task's status as last seen there
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_crm_objects_crm_id", "crm", "crm_type", "crm_id"),
)

# Bearer tokens of the HTTP API (syncd/api/): only the SHA-256 of a token is kept, so a
# copy of the database lets nobody in.  ``rep``: the token sees only that rep's records.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("scope", String(8), nullable=False),  # read | write | admin
    Column("rep", String(320), nullable=True),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("last_used_at", UtcDateTime, nullable=True),
)

# What the last directory mirror applied, per customer of the file (store/directory_mirror.py):
# a digest of the customer's rows and one of the directory they must give.  A later file with
# the same rows for a customer whose stored state still has that digest skips the customer
# unread.  Only digests: nothing here is read as the directory.
directory_fingerprints = Table(
    "directory_fingerprints",
    metadata,
    Column("customer_key", String(300), primary_key=True),
    Column("customer_id", Integer, nullable=False),
    Column("rows_digest", String(64), nullable=False),
    Column("state_digest", String(64), nullable=False),
    Column("contacts", Integer, nullable=False),
    Column("domains", Integer, nullable=False),
)
