"""Building raw messages for tests."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime


def make_message(
    *,
    sender: str = "Wile Coyote <wile@acme.com>",
    to: str = "Alice Rep <alice@example.com>",
    cc: str | None = None,
    subject: str = "Quote for 40 seats",
    message_id: str | None = "<q1@acme.com>",
    date: datetime | None = datetime(2024, 6, 3, 9, 0, tzinfo=UTC),
    body: str = "Could you send the updated quote?\r\n",
    headers: dict[str, str] | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
) -> bytes:
    lines = [f"From: {sender}", f"To: {to}", f"Subject: {subject}"]
    if cc:
        lines.append(f"Cc: {cc}")
    if date is not None:
        lines.append(f"Date: {format_datetime(date)}")
    if message_id is not None:
        lines.append(f"Message-ID: {message_id}")
    if in_reply_to:
        lines.append(f"In-Reply-To: {in_reply_to}")
    if references:
        lines.append(f"References: {references}")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if not any(h.lower().startswith("content-type") for h in headers or {}):
        lines.append("Content-Type: text/plain; charset=utf-8")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode("utf-8")
