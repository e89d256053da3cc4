"""Sample customers and mail: realistic enough to exercise every capture rule.

Deterministic for a given seed, so the demo, the tests and the benchmark see the same data.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

CUSTOMERS_CSV = """\
customer,domains,contact_name,contact_email
Acme Corp,acme.com;acme-corp.de,Wile Coyote,wile@acme.com
Acme Corp,acme.com;acme-corp.de,Road Runner,road.runner@acme.com
Globex,globex.co.uk,Hank Scorpio,hank@globex.co.uk
Initech,initech.io,,
Umbrella,,Albert Wesker,albert.wesker@gmail.com
"""

REPS = {"alice@example.com": "Alice Rep", "bob@example.com": "Bob Rep"}
EXTERNALS = [
    ("wile@acme.com", "Wile Coyote"),
    ("road.runner@acme.com", "Road Runner"),
    ("sales@eu.acme-corp.de", "Acme Europe"),
    ("hank@globex.co.uk", "Hank Scorpio"),
    ("peter@initech.io", "Peter Gibbons"),
    ("albert.wesker@gmail.com", "Albert Wesker"),
    ("stranger@unknown-startup.com", "Sam Stranger"),
]
_TOPICS = [
    "Renewal of the annual licence",
    "Quote for 40 seats",
    "Onboarding call next week",
    "Invoice 2024-117",
    "Security questionnaire",
    "Pilot results",
    "Contract redlines",
    "Pricing for the enterprise tier",
]
_WORDS = [
    "thanks",
    "for",
    "the",
    "quick",
    "answer",
    "we",
    "reviewed",
    "the",
    "proposal",
    "with",
    "the",
    "team",
    "and",
    "would",
    "like",
    "to",
    "move",
    "forward",
    "next",
    "quarter",
    "could",
    "you",
    "send",
    "the",
    "updated",
    "figures",
    "and",
    "the",
    "draft",
    "agreement",
    "our",
    "legal",
    "department",
    "needs",
    "two",
    "more",
    "weeks",
    "please",
    "confirm",
    "the",
    "delivery",
    "dates",
]
_FILLER = (
    "This message and any attachments are confidential and intended solely for the addressee. "
    "If you received it in error, please notify the sender and delete it. "
)


@dataclass(frozen=True)
class SampleMessage:
    raw: bytes
    folder: str  # INBOX or Sent
    owner: str


def _body(rng: random.Random, quote: str | None, size: int) -> str:
    text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(20, 60))).capitalize() + "."
    lines = [text, "", "Best regards", "-- ", "Sent from the office", _FILLER * 2]
    if quote:
        lines += [
            "",
            "On Mon, 3 Jun 2024 at 10:00, Someone <someone@example.com> wrote:",
            f"> {quote}",
        ]
    body = "\r\n".join(lines)
    while len(body) < size:
        body += "\r\n> " + " ".join(rng.choice(_WORDS) for _ in range(14))
    return body


def _message(
    *,
    sender: tuple[str, str],
    to: tuple[str, str],
    subject: str,
    when: datetime,
    msgid: str,
    refs: list[str],
    body: str,
    extra: str = "",
) -> bytes:
    headers = [
        f"From: {sender[1]} <{sender[0]}>",
        f"To: {to[1]} <{to[0]}>",
        f"Subject: {subject}",
        f"Date: {format_datetime(when)}",
        f"Message-ID: <{msgid}>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]
    if refs:
        headers.append(f"In-Reply-To: <{refs[-1]}>")
        headers.append("References: " + " ".join(f"<{r}>" for r in refs))
    if extra:
        headers.append(extra)
    return ("\r\n".join(headers) + "\r\n\r\n" + body + "\r\n").encode("utf-8")


def generate(
    count: int, *, seed: int = 7, size: int = 3300, start: datetime | None = None
) -> list[SampleMessage]:
    """``count`` messages over the two reps' INBOX and Sent folders, in threads.

    About 1 in 12 is a newsletter and 1 in 15 internal mail (both skipped by capture).
    """
    rng = random.Random(seed)
    start = start or datetime(2024, 6, 3, 9, 0, tzinfo=UTC)
    out: list[SampleMessage] = []
    threads: list[
        tuple[str, list[str], str, tuple[str, str], str]
    ] = []  # subject, refs, rep, ext, last text
    for n in range(count):
        when = start + timedelta(minutes=7 * n)
        rep = rng.choice(list(REPS))
        rep_pair = (rep, REPS[rep])
        msgid = f"{n}.{seed}@{'mail.example.com' if n % 2 else 'mx.sample.test'}"
        roll = rng.random()
        if roll < 1 / 12:
            raw = _message(
                sender=("news@vendor-news.com", "Vendor News"),
                to=rep_pair,
                subject="This week's digest",
                when=when,
                msgid=msgid,
                refs=[],
                body=_body(rng, None, size),
                extra="List-Id: <digest.vendor-news.com>\r\nList-Unsubscribe: <mailto:leave@vendor-news.com>",
            )
            out.append(SampleMessage(raw, "INBOX", rep))
            continue
        if roll < 1 / 12 + 1 / 15:
            other = next(r for r in REPS if r != rep)
            raw = _message(
                sender=rep_pair,
                to=(other, REPS[other]),
                subject="Lunch?",
                when=when,
                msgid=msgid,
                refs=[],
                body=_body(rng, None, size),
            )
            out.append(SampleMessage(raw, "Sent", rep))
            continue
        if threads and rng.random() < 0.6:
            subject, refs, rep, ext, last = rng.choice(threads)
            rep_pair = (rep, REPS[rep])
            inbound = rng.random() < 0.5
            raw = _message(
                sender=ext if inbound else rep_pair,
                to=rep_pair if inbound else ext,
                subject=f"Re: {subject}",
                when=when,
                msgid=msgid,
                refs=refs[-5:],
                body=_body(rng, last, size),
            )
            refs.append(msgid)
            out.append(SampleMessage(raw, "INBOX" if inbound else "Sent", rep))
            continue
        ext = rng.choice(EXTERNALS)
        subject = rng.choice(_TOPICS)
        inbound = rng.random() < 0.6
        body = _body(rng, None, size)
        raw = _message(
            sender=ext if inbound else rep_pair,
            to=rep_pair if inbound else ext,
            subject=subject,
            when=when,
            msgid=msgid,
            refs=[],
            body=body,
        )
        threads.append((subject, [msgid], rep, ext, body.split("\r\n", 1)[0][:80]))
        out.append(SampleMessage(raw, "INBOX" if inbound else "Sent", rep))
    return out
