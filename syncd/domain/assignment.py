"""Which daemon syncs which source: rendezvous (highest-random-weight) hashing.

Every daemon computes the same answer from the same two lists (the sources, the live
daemons in the heartbeat table) without talking to the others: a source belongs to the
live daemon whose hash of (source, daemon) is highest.  Each of K daemons gets about N/K
sources, and when a daemon joins or leaves only the sources it gains or loses move (about
N/K of them), not the whole fleet, so every other watcher and connection stays put.

Pure: strings in, strings out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def source_key(kind: str, name: str) -> str:
    """One string per source: kinds share a namespace of names only in their own kind."""
    return f"{kind}:{name}"


def weight(key: str, daemon_id: str) -> int:
    """The source's weight for one daemon: a stable 64-bit hash, the same on every host and
    in every Python process (``hash()`` is salted per process, so it would not do)."""
    digest = hashlib.blake2b(
        f"{key}\x00{daemon_id}".encode(), digest_size=8, person=b"syncd-hrw"
    ).digest()
    return int.from_bytes(digest, "big")


def owner(key: str, daemon_ids: Iterable[str]) -> str | None:
    """The daemon that should hold ``key``; None when no daemon is live.  Ties (never seen
    in 64 bits, but possible) go to the greater id, so every daemon still agrees."""
    best: tuple[int, str] | None = None
    for daemon_id in daemon_ids:
        candidate = (weight(key, daemon_id), daemon_id)
        if best is None or candidate > best:
            best = candidate
    return None if best is None else best[1]


def share(keys: Iterable[str], daemon_ids: Iterable[str], me: str) -> set[str]:
    """The keys ``me`` should hold among ``daemon_ids`` (``me`` counts as live: a daemon
    deciding what to claim is running, whatever its last heartbeat says)."""
    fleet = sorted({*daemon_ids, me})
    return {key for key in keys if owner(key, fleet) == me}


def assign(keys: Iterable[str], daemon_ids: Iterable[str]) -> dict[str, list[str]]:
    """Every daemon's keys, for reports and tests; daemons with none are listed too."""
    fleet = sorted(set(daemon_ids))
    out: dict[str, list[str]] = {daemon_id: [] for daemon_id in fleet}
    for key in keys:
        found = owner(key, fleet)
        if found is not None:
            out[found].append(key)
    return out
