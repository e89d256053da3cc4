"""Caps on what one message may cost: mail is written by strangers.

Every reader of untrusted mail is linear in its input, and these caps bound the
input itself, so no message holds a worker for long or fills memory.  What a cap
cuts is reported on the parsed message (``ParsedMessage.cuts``) and logged.
The README ("Limits on hostile mail") lists the same values.
"""

from __future__ import annotations

# The header section is read up to here; fields past it are ignored.  Four times
# the largest legitimate headers seen (long DKIM/ARC chains, big recipient lists).
MAX_HEADER_BYTES = 256 * 1024
# One field's value, unfolded (RFC 5322 allows folding a field over any number of lines).
MAX_FIELD_BYTES = 16 * 1024
# Occurrences of one field that are read (To: may legitimately repeat; 10,000 times may not).
MAX_FIELD_REPEATS = 50
# Addresses kept per message, over From, Sender, To, Cc and Bcc in that order.
MAX_ADDRESSES = 500
# RFC 5321 4.5.3.1.3: a path holds at most 256 octets, brackets included.  Longer is not
# an address anyone can write back to; it is counted, and the store leaves it out.
MAX_ADDRESS_CHARS = 254
# Display names are cut here (the schema holds 300).
MAX_NAME_CHARS = 200
# Subjects are cut here, after decoding.
MAX_SUBJECT_CHARS = 1_000
# Message-IDs kept from References: the thread's root and the nearest ancestors.
MAX_REFERENCES = 100
# Bytes of a message read for its body text (the fetch brings 64 KB; this bounds any caller).
MAX_BODY_BYTES = 128 * 1024


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit].rstrip()
