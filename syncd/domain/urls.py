"""URLs as syncd shows them: without what may be a secret.  Pure: no I/O.

A webhook URL often carries its credential: a ``?token=...`` the receiver checks, or a
``user:password@`` sent as Basic authentication.  Every output (lists, `status --json`,
config errors, logs) shows the URL through ``shown_url``: the scheme, host, port and path,
each query parameter's name with its value replaced, and ``***@`` for any user info.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

HIDDEN = "***"


def shown_url(url: str) -> str:
    """``url`` without query values, user name, password or fragment."""
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError on a port that is not a number
    except ValueError:
        return HIDDEN  # not even a URL: it may be anything, a secret pasted by mistake
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    netloc = host + (f":{port}" if port is not None else "")
    if "@" in parts.netloc:
        netloc = f"{HIDDEN}@{netloc}"
    query = "&".join(
        f"{field.split('=', 1)[0]}={HIDDEN}" if "=" in field else HIDDEN
        for field in parts.query.split("&")
        if field
    )
    path = parts.path if "@" not in parts.path else HIDDEN
    return urlunsplit((parts.scheme, netloc, path, query, ""))
