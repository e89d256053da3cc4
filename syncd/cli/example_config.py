"""The commented example that ``syncd init`` writes."""

EXAMPLE = """\
# syncd configuration.  Every key is documented in README.md.

[database]
# Any SQLAlchemy URL.  A relative SQLite path is relative to this file.
# PostgreSQL: "postgresql+psycopg://syncd@127.0.0.1/syncd"
url = "sqlite:///syncd.db"

[organization]
# Mail only among these domains is internal and never captured.
internal_domains = ["example.com"]
# The zone of floating times and all-day events in calendars, and of working hours.
timezone = "UTC"
# Business time for follow-up deadlines; a [[mailbox]] may override all three for its owner.
workdays = ["mon", "tue", "wed", "thu", "fri"]
hours = "09:00-17:00"
# holidays = [2026-12-24, 2026-12-25]

[sync]
# `syncd run`: seconds between polls of each mailbox and calendar (IDLE brings INBOX mail sooner).
interval = 60
jitter = 0.1                            # each poll moves by up to this fraction of the interval
concurrency = 8                         # sources synced at once
idle = true                             # IMAP IDLE on INBOX where the server offers it
max_backoff = 1800                      # seconds: the longest wait after transient failures
verify_interval = 86400                 # seconds between `syncd verify` runs of each source (0: never)

# [metrics]
# listen = "127.0.0.1:9464"             # Prometheus /metrics and /healthz

[tasks]
lookback_days = 14                      # only records this recent create follow-up tasks
interval = 300                          # seconds between rule evaluations in the daemon

# The follow-up rules unanswered_inbound (1 business day), no_response (3 business days) and
# after_meeting (1 business day) are on; an entry tunes or switches one off:
# [[followup]]
# rule = "no_response"
# after = "2 business days"             # "N business days|hours" or "N days|hours"
# enabled = true

[capture]
# Messages larger than this are captured from their headers only.
max_message_bytes = 26214400
# Messages per transaction; each batch commits with the folder's cursor.
batch_size = 500
# What of a message body is kept: "metadata", "snippet" (first 500 characters of new text) or "full".
store = "snippet"
# true: keep no record of mail with no customer link (its unknown addresses are still queued).
only_matched = false
# jo+crm@acme.com is jo@acme.com.
plus_addressing = true
# Addresses and @domains (subdomains included) never linked, queued, or captured alone.
exclude = []
# Meeting occurrences kept: from now - past_days to now + future_days.
past_days = 90
future_days = 30

# One [[mailbox]] per rep.
[[mailbox]]
name = "alice"                          # unique
owner = "alice@example.com"             # the rep who owns the mailbox
host = "imap.example.com"
port = 993
security = "tls"                        # tls | starttls | plain (plain only on loopback or with allow_plaintext = true)
# ca_file = "/etc/ssl/private-ca.pem"   # optional private CA, trusted besides the system's; always verified
# ca_only = true                        # trust ca_file alone, not the system's CAs
username = "alice@example.com"
# Exactly one of password_file, password_env, password_command, password.
# A relative password_file is read from $CREDENTIALS_DIRECTORY (systemd LoadCredential=).
password_file = "/run/credentials/syncd.service/alice"
# folders = ["INBOX", "Sent"]           # default: INBOX and the folder marked \\Sent
# timeout = 30                          # seconds, for every socket operation

# One [[calendar]] per rep (CalDAV); calendars are discovered from the URL.
# [[calendar]]
# name = "alice-cal"
# owner = "alice@example.com"
# url = "https://dav.example.com/"
# username = "alice"
# password_file = "alice-dav"
# calendars = ["Work"]                  # optional: display names; default every event calendar
# tasks_calendar = "Follow-ups"         # optional: the owner's follow-up tasks as VTODOs there
"""
