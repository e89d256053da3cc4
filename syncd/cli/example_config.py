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
# Lengths of time are a number and a unit: "45s", "30m", "36h", "90d", "12w" (or "90 days").
# A bare number of seconds (interval = 60), the old form, is still read.
# `syncd run`: how long between polls of each mailbox and calendar (IDLE brings INBOX mail sooner).
interval = "60s"
jitter = 0.1                            # each poll moves by up to this fraction of the interval
concurrency = 8                         # sources synced at once
idle = true                             # IMAP IDLE on INBOX where the server offers it
max_backoff = "30m"                     # the longest wait after transient failures
verify_interval = "1d"                  # between `syncd verify` runs of each source ("0s": never)
keep_connections = 1000                 # IMAP sessions kept open between polls (0: log in every poll)
connection_idle_timeout = "10m"         # how long an unused kept session stays open (< 30 min)
deliver_timeout = "30s"                 # how long `syncd sync` waits for pending webhook deliveries

# [metrics]
# listen = "127.0.0.1:9464"             # Prometheus /metrics and /healthz

# The HTTP API (`syncd tokens create NAME --scope read` for a token; docs at /api/docs).
# [api]
# listen = "127.0.0.1:8780"
# tls_cert = "/etc/syncd/api.pem"      # with tls_key: required off loopback, unless
# tls_key = "/etc/syncd/api.key"
# allow_plaintext = true               # behind a proxy that terminates TLS
# rate_limit = 50                      # requests a second per token
# workers = 1                          # `syncd serve` only (<= 16): each process enforces
#                                      # rate_limit / workers per token, so 429 may come sooner

# The customer directory, kept in step with the CRM: customers and contacts the export no
# longer lists are archived (history kept), returning ones restored. Same CSV as
# `syncd customers import`. Write the file atomically (to a temporary name, then rename).
# [directory]
# file = "customers.csv"                # relative to this file; or:
# command = ["/usr/local/bin/crm-export", "--csv"]   # prints the CSV; run without a shell
# interval = "60s"                      # between checks (a command runs each time)
# timeout = "60s"                       # how long the command may take
# allow_empty = false                   # true: a file with no customer, contact or domain may empty them

[tasks]
lookback_days = 14                      # only records this recent create follow-up tasks
interval = "5m"                         # between rule evaluations in the daemon

[events]
# The event feed (`syncd events list`): every change to a record or task, oldest first.
# keep = "90d"                          # prune older events (default: keep everything)
keep_forgotten = "7d"                   # contact.forgotten, when no [[webhook]] delivers it

# The follow-up rules unanswered_inbound (1 business day), no_response (3 business days),
# after_meeting (1 business day) and gone_quiet (30 days) are on; an entry tunes or switches
# one off:
# [[followup]]
# rule = "no_response"
# after = "2 business days"             # a length in days or hours ("2d", "48h"), "business" counts working time
# enabled = true
# [[followup]]
# rule = "gone_quiet"                   # no record with a customer for `after`...
# min_records = 3                       # ...though it had this many...
# lookback = "90 days"                  # ...in this period before

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
# timeout = "30s"                       # for every socket operation

# Many reps on one server with one service credential: each member becomes a mailbox
# named after its owner address (e.g. "alice@example.com"), like a [[mailbox]].
# [[mailbox_group]]
# name = "sales"
# host = "imap.example.com"
# port = 993
# security = "tls"
# folders = ["INBOX", "Sent"]
# members_file = "reps.csv"             # header owner[,username]; relative to this file
# # members = ["bob@example.com", { owner = "carol@example.com", username = "carol" }]
# # A master user (Dovecot: "rep*master", with auth_master_user_separator = *):
# login_user = "%u*syncd"               # %u: the member's username (default: its owner)
# password_file = "imap-master"         # or password_env, password_command, password
# # Or XOAUTH2 with tokens syncd gets itself (Microsoft 365 app-only: client_credentials):
# # token_url = "https://login.microsoftonline.com/TENANT/oauth2/v2.0/token"
# # client_id = "00000000-0000-0000-0000-000000000000"
# # client_secret_file = "m365-secret"  # or client_secret_env, client_secret_command
# # scope = "https://outlook.office365.com/.default"
# # grant = "client_credentials"        # or "refresh_token" (a refresh_token_file column per rep)

# One [[calendar]] per rep (CalDAV); calendars are discovered from the URL.
# [[calendar]]
# name = "alice-cal"
# owner = "alice@example.com"
# url = "https://dav.example.com/"
# username = "alice"
# password_file = "alice-dav"
# calendars = ["Work"]                  # optional: display names; default every event calendar
# tasks_calendar = "Follow-ups"         # optional: the owner's follow-up tasks as VTODOs there

# Webhooks: every captured change POSTed as a signed JSON event (Standard Webhooks).
# [[webhook]]
# name = "crm"                          # unique
# url = "https://crm.example.com/hooks/syncd"   # https; http only on loopback or with allow_plaintext = true
# secret_file = "crm-webhook"           # or secret_env, secret_command, secret: "whsec_<base64>"
# events = ["record.created", "record.updated"]   # optional; default every type
# since = 2026-01-01                    # optional: skip events about records that occurred earlier
# timeout = "10s"                       # per request
# retry_for = "24h"                     # retries (backoff with jitter) before a delivery is marked failed
# ca_file = "/etc/ssl/private-ca.pem"   # optional private CA, trusted besides the system's

# A CRM syncd writes its records and tasks into, through its REST API (docs/crm.md).
# [[crm]]
# name = "bottle"                       # unique
# kind = "bottlecrm"
# url = "https://crm.example.com"       # https; http only on loopback or with allow_plaintext = true
# token_file = "bottle-token"           # or token_env, token_command: a personal access token
# push = ["records", "tasks"]           # what syncd writes into the CRM
# directory = true                      # the CRM's accounts and contacts are the customer directory
# since = 2026-01-01                    # optional: records that occurred earlier are not pushed
# interval = "5m"                       # between pulls of the directory and task states
"""
